"""Golden outputs in every artifact: recorded at compile time, recomputed by `loader.check()`.

Each artifact carries `golden.json` (a seeded sample of the task's dev inputs, its outputs on the
build machine, fp32 PyTorch's), listed in the manifest with its sha256; `check()` recomputes
them with the runtime alone (no torch, no transformers, no `tokenizers` for an ids artifact) and
on the build machine reproduces them exactly. Hostile and damaged golden files:
tests/adversarial/test_golden.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bertc.calibration import get_task, load_examples, sample_examples, single_sentences
from bertc.compiler.core.enums import QuantizationMode, TokenizerMode
from bertc.compiler.core.hashing import sha256_file
from bertc.compiler.golden import GOLDEN_EXAMPLES, GOLDEN_FILE, GOLDEN_SEED
from bertc.compiler.pipeline import CompileOptions, compile_model
from bertc.compiler.tokenization import BUILTIN_SINGLES
from bertc.targets import loader
from model_factory import make_checkpoint

REPO = Path(__file__).resolve().parents[2]
# name -> (target, quantization, compile options): the shared builds other tests use too.
BUILDS = {
    "onnx-ids": ("onnx", "dynamic", {}),
    "ort-mobile-ids": ("ort-mobile", "dynamic", {}),
    "openvino-ids": ("openvino", "static", {}),
    "openvino-fused": ("openvino", "static", {"tokenizer": TokenizerMode.FUSED}),
    "openvino-separate": ("openvino", "dynamic", {"tokenizer": TokenizerMode.SEPARATE}),
}
# What an app's device lacks: the compiler, PyTorch, and (as on the emulated ARM Python) the
# `tokenizers` package, so an ids artifact must run its recorded ids.
RUNTIME_ONLY = r"""
import importlib.abc, json, runpy, sys
class Absent(importlib.abc.MetaPathFinder):
    BLOCKED = ("torch", "transformers", "tokenizers", "nncf", "onnx", "sklearn", "scipy")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED or name.startswith(
            ("bertc.compiler", "bertc.calibration")
        ):
            raise ModuleNotFoundError(f"No module named {name!r} (runtime only)", name=name)
        return None
sys.meta_path.insert(0, Absent())
if sys.argv[1] == "script":
    sys.argv = [LOADER, sys.argv[2], "--check", "--json"]
    runpy.run_path(LOADER, run_name="__main__")
else:
    from bertc.targets import loader
    report = loader.check(sys.argv[2], threads=1)
    print(json.dumps({"report": report.to_json(), "modules": sorted(sys.modules)}))
"""


def build(compile_once, tiny_classifier: Path, name: str) -> Path:
    target, quantization, options = BUILDS[name]
    return compile_once(tiny_classifier, target, quantization, **options).artifact_dir


def manifest_of(artifact: Path) -> dict:
    return json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_every_artifact_records_a_listed_golden_set_of_seeded_dev_inputs(
    compile_once, tiny_classifier, glue_data_dir, name: str
) -> None:
    artifact = build(compile_once, tiny_classifier, name)
    manifest = manifest_of(artifact)
    section = manifest["golden"]
    assert section["file"] == GOLDEN_FILE
    assert manifest["files"][GOLDEN_FILE]["sha256"] == sha256_file(artifact / GOLDEN_FILE)
    golden = loader.read_golden(artifact)
    dev = load_examples(get_task("sst2"), "dev", glue_data_dir)
    expected = sample_examples(dev, GOLDEN_EXAMPLES, seed=GOLDEN_SEED)
    assert [e.text for e in golden.examples] == [e.text_a for e in expected]
    assert (golden.task, golden.split, golden.seed) == ("sst2", "dev", GOLDEN_SEED)
    assert section["examples"] == len(golden.examples) == GOLDEN_EXAMPLES
    assert section["tolerance"] == golden.tolerance == loader.GOLDEN_TOLERANCE
    takes_text = manifest["tokenizer"]["mode"] != "none"
    assert golden.inputs == ("text" if takes_text else "token ids")
    assert all((e.ids is None) == takes_text for e in golden.examples)
    assert {len(e.output) for e in golden.examples} == {len(manifest["model"]["labels"])}
    assert all(len(e.batch_output) == len(e.output) for e in golden.examples)
    assert golden.build["machine"] == loader.machine_description()["machine"]


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_check_reproduces_the_golden_outputs_on_the_build_machine(
    compile_once, tiny_classifier, name: str
) -> None:
    artifact = build(compile_once, tiny_classifier, name)
    report = loader.check(artifact)
    assert report.passed, report.problems
    assert report.max_abs_error <= 1e-6 and report.batch_max_abs_error <= 1e-6
    assert report.agreement == 1.0 and report.decided_agreement == 1.0
    assert report.decided > 0  # the trained tiny model decides its examples clearly
    assert report.files_checked == len(manifest_of(artifact)["files"])
    assert report.here == report.build
    # INT8 is not fp32: the reference differs, and check() says by how much.
    assert 0 < report.reference_max_abs_error < 1


def test_the_recorded_ids_and_reference_are_the_builds_own(compile_once, tiny_classifier) -> None:
    """The ids are the HF tokenizer's, and the reference is fp32 PyTorch's on them."""
    import torch
    from bertc.compiler.loading import load_model

    artifact = build(compile_once, tiny_classifier, "ort-mobile-ids")
    golden = loader.read_golden(artifact)
    loaded = load_model(str(tiny_classifier))
    for example in golden.examples:
        encoded = loaded.tokenizer(example.text, truncation=True, return_tensors="np")
        assert example.ids["input_ids"] == tuple(encoded["input_ids"][0].tolist())
        with torch.no_grad():
            tensors = [torch.from_numpy(example.feeds()[name]) for name in loaded.input_names]
            logits = loaded.module(*tensors).numpy()[0]
        np.testing.assert_allclose(example.reference, logits, atol=1e-5)


def test_the_golden_file_is_the_same_bytes_on_every_compile(
    compile_once, tiny_classifier, glue_data_dir, tmp_path: Path
) -> None:
    """ort-mobile's model.ort is not byte-stable (test_compile.py); its golden outputs are."""
    for name in ("ort-mobile-ids", "openvino-fused"):
        target, quantization, options = BUILDS[name]
        first = build(compile_once, tiny_classifier, name)
        again = compile_model(
            str(tiny_classifier),
            tmp_path / name,
            CompileOptions(
                target=target,
                task="sst2",
                data_dir=glue_data_dir,
                quantization=QuantizationMode(quantization),
                calibration_samples=16,
                tokenizer=options.get("tokenizer", TokenizerMode.NONE),
            ),
        )
        assert (first / GOLDEN_FILE).read_bytes() == (again.artifact_dir / GOLDEN_FILE).read_bytes()


def test_an_encoder_without_task_data_records_the_builtin_sentences(
    compile_once, tiny_encoder
) -> None:
    artifact = compile_once(tiny_encoder, "ort-mobile", "dynamic", task=None).artifact_dir
    golden = loader.read_golden(artifact)
    assert golden.source == "built-in sentences" and golden.task is None
    assert [e.text for e in golden.examples] == list(BUILTIN_SINGLES)
    assert golden.output == "sentence_embedding"
    report = loader.check(artifact)
    assert report.passed, report.problems
    assert report.agreement_measure == "min cosine similarity"
    assert report.agreement == pytest.approx(1.0, abs=1e-6)
    assert report.decided_agreement is None  # no labels to keep


def test_a_regression_head_records_dev_pairs_and_reports_pearson(
    compile_once, glue_data_dir, tmp_path_factory
) -> None:
    regressor = make_checkpoint(tmp_path_factory.mktemp("stsb"), head="regression")
    artifact = compile_once(regressor, "onnx", "dynamic", task="stsb").artifact_dir
    golden = loader.read_golden(artifact)
    dev = load_examples(get_task("stsb"), "dev", glue_data_dir)
    expected = sample_examples(dev, GOLDEN_EXAMPLES, seed=GOLDEN_SEED)
    assert [(e.text, e.text_pair) for e in golden.examples] == [
        (e.text_a, e.text_b) for e in expected
    ]
    report = loader.check(artifact)
    assert report.passed, report.problems
    assert report.agreement_measure == "Pearson r"
    assert report.agreement == pytest.approx(1.0)


def test_an_encoder_records_each_dev_sentence_alone(
    compile_once, tiny_encoder, glue_data_dir
) -> None:
    artifact = compile_once(tiny_encoder, "onnx", "dynamic", task="stsb").artifact_dir
    golden = loader.read_golden(artifact)
    dev = single_sentences(load_examples(get_task("stsb"), "dev", glue_data_dir))
    expected = sample_examples(dev, GOLDEN_EXAMPLES, seed=GOLDEN_SEED)
    assert [(e.text, e.text_pair) for e in golden.examples] == [(e.text_a, None) for e in expected]


@pytest.mark.parametrize("name", ["openvino-fused", "openvino-ids", "ort-mobile-ids"])
def test_check_runs_with_the_runtime_alone(compile_once, tiny_classifier, name: str) -> None:
    """No torch, transformers, compiler or `tokenizers`: an ids artifact runs its recorded ids
    and says the tokenizer was not checked."""
    artifact = build(compile_once, tiny_classifier, name)
    done = subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY, "api", str(artifact)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["report"]["passed"] is True
    assert result["report"]["max_abs_error"] <= 1e-6
    assert not {"torch", "transformers", "tokenizers"} & {
        m.split(".")[0] for m in result["modules"]
    }
    if name.endswith("-ids"):
        assert result["report"]["tokenizer_ids"].startswith("not checked: no `tokenizers`")


def test_the_loader_script_checks_with_the_runtime_alone(compile_once, tiny_classifier) -> None:
    artifact = build(compile_once, tiny_classifier, "ort-mobile-ids")
    code = RUNTIME_ONLY.replace("LOADER", repr(str(REPO / "targets" / "loader.py")))
    done = subprocess.run(
        [sys.executable, "-c", code, "script", str(artifact)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["passed"] is True


def test_bertc_run_check_prints_the_report_and_exits_0(
    compile_once, tiny_classifier, bertc_cli
) -> None:
    artifact = build(compile_once, tiny_classifier, "openvino-fused")
    done = bertc_cli("run", artifact, "--check")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("golden outputs reproduced: 16 examples")
    assert "vs fp32 PyTorch" in done.stdout
    as_json = bertc_cli("run", artifact, "--check", "--json", "--threads", "1")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["passed"] is True and report["examples"] == GOLDEN_EXAMPLES


def test_bertc_run_check_takes_no_text(compile_once, tiny_classifier, bertc_cli) -> None:
    artifact = build(compile_once, tiny_classifier, "onnx-ids")
    done = bertc_cli("run", artifact, "a text", "--check")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: --check runs the artifact's own golden inputs: give no TEXT or --file"
    )


# ---- what counts as keeping the build's decisions


@pytest.mark.parametrize(
    ("problem_type", "scores", "decisions", "margins"),
    [
        ("single_label_classification", [[1.0, 3.0, 2.5]], [1], [0.5]),
        ("multi_label_classification", [[2.0, -0.5, 0.1]], [(0, 2)], [0.1]),
        ("regression", [[0.7]], None, [0.0]),
    ],
)
def test_decisions_and_margins_follow_the_head(problem_type, scores, decisions, margins) -> None:
    array = np.asarray(scores)
    assert loader._decisions(array, problem_type, 0.5) == decisions
    np.testing.assert_allclose(loader._margins(array, problem_type, 0.5), margins)
