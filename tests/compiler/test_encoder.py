"""A sentence encoder end to end: `bertc run` prints its embeddings and cosine similarities (the
loader's own), `bertc verify` scores it on STS-B by the Spearman of its pairs' cosines against
fp32's, and refuses any other task. The tiny encoder is compiled once per session (conftest)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from bertc.calibration import get_task, load_examples
from bertc.calibration.metrics import METRICS
from bertc.compiler.core.enums import QuantizationMode
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.manifest import read_manifest
from bertc.compiler.pipeline import CompileOptions, compile_model
from bertc.compiler.running import InputLine, run_artifact
from bertc.compiler.verify import verify_artifact
from bertc.targets.loader import load

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["a warm and funny film .", "dull", "the cast is quite brilliant and the music is moving"]
# The same artifact through `run` and through the loader: equal up to JSON's six decimals for
# fp32; INT8 on OpenVINO runs one text on a static bucket and a batch on dynamic shapes.
TOLERANCE = {"fp32": 1e-4, "int8": 2e-2}


@pytest.fixture(scope="module")
def encoders(tiny_encoder: Path, compile_once) -> dict[str, Path]:
    """fp32 ONNX taking token ids, and static INT8 OpenVINO with its tokenizer fused in, calibrated
    on the tiny STS-B's sentences one at a time."""
    fp32 = compile_once(tiny_encoder, "onnx", quantization="none", task=None)
    int8 = compile_once(tiny_encoder, "openvino", task="stsb", tokenizer=None)
    return {"fp32": fp32.artifact_dir, "int8": int8.artifact_dir}


def _cosine(first: np.ndarray, second: np.ndarray) -> float:
    first, second = first.astype(np.float64), second.astype(np.float64)
    return float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))


def test_an_encoder_calibrated_on_a_pair_task_takes_one_text(encoders: dict[str, Path]) -> None:
    manifest = read_manifest(encoders["int8"])
    assert manifest["model"]["head"] == "encoder" and manifest["task"] == "stsb"
    assert manifest["tokenizer"]["pair"] is False
    assert load(encoders["int8"]).pair is False


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_run_prints_the_loaders_embedding(encoders: dict[str, Path], precision: str) -> None:
    artifact = encoders[precision]
    lines = list(
        run_artifact(artifact, [InputLine(0, text) for text in TEXTS], threads=1, as_json=True)
    )
    expected = load(artifact, 1).embed(TEXTS)
    assert [json.loads(line)["text"] for line in lines] == TEXTS
    printed = np.asarray([json.loads(line)["embedding"] for line in lines])
    assert printed.shape == expected.shape == (3, 32)
    np.testing.assert_allclose(printed, expected, atol=TOLERANCE[precision])


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_run_prints_the_cosine_of_two_embeddings(encoders: dict[str, Path], precision: str) -> None:
    artifact = encoders[precision]
    model = load(artifact, 1)
    (line,) = run_artifact(artifact, [InputLine(0, TEXTS[0], TEXTS[2])], threads=1, as_json=True)
    result = json.loads(line)
    assert (result["text"], result["text_pair"]) == (TEXTS[0], TEXTS[2])
    expected = _cosine(model.embed([TEXTS[0]])[0], model.embed([TEXTS[2]])[0])
    assert result["cosine_similarity"] == pytest.approx(expected, abs=TOLERANCE[precision])
    assert result["cosine_similarity"] == pytest.approx(
        model.similarity(TEXTS[0], TEXTS[2]), abs=1e-6
    )


def test_run_command_line_for_an_encoder(
    encoders: dict[str, Path], tmp_path: Path, bertc_cli
) -> None:
    artifact = encoders["fp32"]
    embedding = load(artifact, 1).embed([TEXTS[0]])[0].astype(np.float64)
    human = bertc_cli("run", artifact, TEXTS[0])
    assert human.returncode == 0, human.stderr
    dims, norm, values = human.stdout.strip().split("\t")
    assert dims == "dim 32"
    assert float(norm.removeprefix("norm ")) == pytest.approx(np.linalg.norm(embedding), abs=1e-3)
    assert values.startswith(f"[{embedding[0]:.4f}, ") and values.endswith(", ...]")
    similarity = bertc_cli("run", artifact, TEXTS[0], TEXTS[1])
    assert similarity.returncode == 0, similarity.stderr
    cosine = load(artifact, 1).similarity(TEXTS[0], TEXTS[1])
    assert similarity.stdout.strip() == f"cosine similarity {cosine:.4f}"
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(f"{TEXTS[0]}\t{TEXTS[1]}\n{TEXTS[1]}\t{TEXTS[2]}\n", encoding="utf-8")
    from_file = bertc_cli("run", artifact, "--file", pairs, "--json")
    assert from_file.returncode == 0, from_file.stderr
    rows = [json.loads(line) for line in from_file.stdout.splitlines()]
    assert [row["text_pair"] for row in rows] == [TEXTS[1], TEXTS[2]]
    assert rows[0]["cosine_similarity"] == pytest.approx(cosine, abs=1e-5)
    singles = tmp_path / "singles.txt"
    singles.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    embedded = bertc_cli("run", artifact, "--file", singles, "--json")
    assert embedded.returncode == 0, embedded.stderr
    assert [len(json.loads(line)["embedding"]) for line in embedded.stdout.splitlines()] == [32] * 3


def _fp32_spearman(checkpoint: Path, glue: Path) -> float:
    """STS-B Spearman of mean-pooled BertModel cosines straight through transformers."""
    import torch
    from transformers import AutoTokenizer, BertModel

    examples = load_examples(get_task("stsb"), "dev", glue)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = BertModel.from_pretrained(str(checkpoint), add_pooling_layer=False).eval()

    def embed(text: str) -> np.ndarray:
        encoded = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**encoded).last_hidden_state[0]
        return hidden.mean(dim=0).double().numpy()

    cosines = [_cosine(embed(e.text_a), embed(e.text_b)) for e in examples]
    return METRICS["spearman"](np.asarray(cosines), np.asarray([e.label for e in examples]))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_verify_scores_an_encoder_on_stsb_spearman(
    encoders: dict[str, Path], precision: str, tiny_encoder: Path, glue_data_dir: Path
) -> None:
    artifact = encoders[precision]
    report = verify_artifact(
        artifact, "stsb", data_dir=glue_data_dir, max_drop=100, bootstrap_samples=100, threads=1
    )
    headline = report.headline
    assert report.headline_metric == "spearman" and report.compared_output == "sentence_embedding"
    assert [metric.name for metric in report.metrics] == ["pearson", "spearman"]
    assert headline.reference == pytest.approx(
        _fp32_spearman(tiny_encoder, glue_data_dir), abs=1e-6
    )
    assert -1 <= headline.artifact <= 1
    assert headline.delta_points == pytest.approx((headline.artifact - headline.reference) * 100)
    assert headline.ci_low_points <= headline.ci_high_points
    agreement = report.agreement
    assert agreement.embedded_sentences == 2 * report.examples
    assert -1 <= agreement.embedding_cosine_min <= agreement.embedding_cosine_mean <= 1
    if precision == "fp32":  # the same model on another runtime: the same embeddings
        assert agreement.embedding_cosine_min > 0.99999
        assert abs(headline.delta_points) < 1e-6
    assert report.gate.passed and "stsb spearman" in report.gate.message
    data = json.loads((artifact / "reports/verify-stsb.json").read_text(encoding="utf-8"))
    assert data["agreement"]["embedding_cosine_mean"] == pytest.approx(
        agreement.embedding_cosine_mean
    )
    markdown = (artifact / "reports/verify-stsb.md").read_text(encoding="utf-8")
    assert "embedding cosine vs fp32" in markdown and "**spearman** (headline)" in markdown


def test_verify_gate_judges_the_spearman_drop(
    encoders: dict[str, Path], glue_data_dir: Path
) -> None:
    report = verify_artifact(
        encoders["int8"],
        "stsb",
        data_dir=glue_data_dir,
        max_drop=0,
        bootstrap_samples=20,
        raise_on_gate_failure=False,
    )
    assert report.gate.metric == "spearman"
    assert report.gate.passed == (report.headline.delta_points >= -1e-9)


def test_a_classification_task_on_an_encoder_is_refused(
    encoders: dict[str, Path], glue_data_dir: Path, bertc_cli
) -> None:
    with pytest.raises(UsageError, match="--task stsb"):
        verify_artifact(encoders["fp32"], "sst2", data_dir=glue_data_dir)
    result = bertc_cli("verify", encoders["fp32"], "--task", "sst2", "--data-dir", glue_data_dir)
    assert result.returncode == UsageError.exit_code == 2
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert "stsb" in line and "bare encoder" in line
    assert result.stdout == ""


def _assets() -> Path:
    return Path(os.environ.get("BERTC_ASSETS", REPO_ROOT / ".." / "shared" / "assets")).resolve()


@pytest.mark.slow
def test_real_all_minilm_l6_v2_keeps_its_stsb_spearman(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2, static INT8 on OpenVINO calibrated on STS-B train sentences: the fp32
    Spearman is the model's published level and INT8 keeps it within a point."""
    assets = _assets()
    model, glue = assets / "models" / "all-MiniLM-L6-v2", assets / "glue"
    if not (model / "model.safetensors").is_file() or not (glue / "STS-B" / "dev.tsv").is_file():
        pytest.skip(f"all-MiniLM-L6-v2 or GLUE STS-B not found under {assets}; set BERTC_ASSETS")
    artifact = tmp_path / "enc-ov"
    compile_model(
        str(model),
        artifact,
        CompileOptions(
            target="openvino", task="stsb", data_dir=glue, quantization=QuantizationMode.STATIC
        ),
    )
    report = verify_artifact(artifact, "stsb", data_dir=glue, max_drop=1.0, threads=2)
    assert report.examples == 1500
    assert report.headline.reference > 0.8
    assert report.gate.passed, report.gate.message
    assert report.agreement.embedding_cosine_mean > 0.99
    assert not math.isnan(report.headline.ci_low_points)
    similarity = load(artifact).similarity("A man is playing a guitar.", "A person plays guitar.")
    assert similarity > 0.5
