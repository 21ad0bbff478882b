"""`bertc verify`: integrity first, metrics with a paired CI, a gate that fails when it should.

The fixtures compile tiny seeded BERTs (tests/verify_helpers.py) once per module; tests that
damage an artifact work on a copy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bertc.calibration import get_task, load_examples
from bertc.compiler import verify as verify_module
from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.compiler.core.errors import (
    ArtifactError,
    DataFileMissingError,
    GateFailedError,
    ModelFileError,
    ModelNotFoundError,
    UsageError,
)
from bertc.compiler.core.manifest import check_integrity, read_manifest
from bertc.compiler.pipeline import CompileOptions, compile_model
from bertc.compiler.verify import measure, reference, stage, verify_artifact
from bertc.compiler.verify.render import render_markdown, render_table, report_to_json
from rich.console import Console
from verify_helpers import (
    flip_byte,
    make_classifier,
    make_damaged_copy,
    make_encoder,
    write_pairs,
    write_sst2,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
GATE_MESSAGE = re.compile(
    r"^gate failed: sst2 accuracy dropped (\d+\.\d\d) points \((\d+\.\d\d) → (\d+\.\d\d)\), "
    r"more than --max-drop 0\.5$"
)


# ---- fixtures: one workspace per module, compiled once


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("verify")


@pytest.fixture(scope="module")
def glue_dir(workspace: Path) -> Path:
    return write_sst2(workspace / "glue")


@pytest.fixture(scope="module")
def checkpoint(workspace: Path) -> Path:
    return make_classifier(workspace / "tiny-sst2", steps=100)


def _compile(
    source: Path, out: Path, target: str, data: Path, task: str = "sst2", **options
) -> Path:
    compile_model(
        str(source), out, CompileOptions(target=target, task=task, data_dir=data, **options)
    )
    return out


@pytest.fixture(scope="module")
def onnx_artifact(workspace: Path, checkpoint: Path, glue_dir: Path) -> Path:
    return _compile(checkpoint, workspace / "art-onnx", "onnx", glue_dir)


@pytest.fixture(scope="module")
def openvino_artifact(workspace: Path, checkpoint: Path, glue_dir: Path) -> Path:
    return _compile(checkpoint, workspace / "art-openvino", "openvino", glue_dir)


@pytest.fixture(scope="module")
def damaged_artifact(workspace: Path, checkpoint: Path, glue_dir: Path) -> Path:
    """An artifact that really lost accuracy: compiled from the checkpoint with noisy weights."""
    damaged = make_damaged_copy(checkpoint, workspace / "tiny-sst2-damaged")
    return _compile(damaged, workspace / "art-damaged", "onnx", glue_dir)


@pytest.fixture
def artifact_copy(onnx_artifact: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "artifact"
    shutil.copytree(onnx_artifact, copy, ignore=shutil.ignore_patterns("reports"))
    return copy


def _fp32_accuracy(checkpoint: Path, glue_dir: Path) -> float:
    """Accuracy of the checkpoint straight through transformers, independent of bertc's code."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    examples = load_examples(get_task("sst2"), "dev", glue_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = BertForSequenceClassification.from_pretrained(str(checkpoint)).eval()
    correct = 0
    with torch.no_grad():
        for example in examples:
            logits = model(**tokenizer(example.text_a, return_tensors="pt")).logits
            correct += int(logits.argmax(-1).item() == example.label)
    return correct / len(examples)


# ---- a good artifact passes, and the report says what it measured


@pytest.mark.parametrize("artifact_fixture", ["onnx_artifact", "openvino_artifact"])
def test_good_artifact_passes_and_writes_both_reports(
    artifact_fixture: str, request, checkpoint: Path, glue_dir: Path
) -> None:
    artifact = request.getfixturevalue(artifact_fixture)
    stages: list[str] = []
    report = verify_artifact(
        artifact,
        "sst2",
        data_dir=glue_dir,
        threads=1,
        batch_size=8,
        bootstrap_samples=200,
        progress=stages.append,
    )

    assert report.gate.passed, report.gate.message
    assert stages[0] == "integrity" and stages[-1] == "report"
    headline = report.headline
    assert headline.reference == pytest.approx(_fp32_accuracy(checkpoint, glue_dir))
    assert (
        headline.reference < 1.0
    )  # the dev labels are noisy: the comparison is not trivially 100%
    assert headline.ci_low_points <= headline.delta_points <= headline.ci_high_points
    assert report.agreement.rate >= 0.95
    assert report.output_error.max_abs < 0.5
    assert 0 < report.latency.batch1_median_ms <= report.latency.batch1_p90_ms
    assert report.latency.batch_sentences_per_s > 0
    manifest = read_manifest(artifact)
    assert report.model_bytes == sum(
        manifest["files"][name]["bytes"] for name in report.model_files
    )
    assert report.environment.runtime == manifest["runtime"]["name"]
    assert report.environment.build_host == manifest["host"]
    assert report.environment.verify_host["isa"] is not None

    data = json.loads((artifact / "reports/verify-sst2.json").read_text(encoding="utf-8"))
    assert data["gate"]["passed"] is True
    assert data["metrics"][0]["name"] == "accuracy"
    assert {"delta_points", "ci_low_points", "ci_high_points"} <= set(data["metrics"][0])
    assert data["agreement"]["rate"] == report.agreement.rate
    assert data["latency"]["batch1_median_ms"] > 0
    assert data["environment"]["build_host"]["isa"] == manifest["host"]["isa"]
    markdown = (artifact / "reports/verify-sst2.md").read_text(encoding="utf-8")
    assert report.gate.message in markdown and "95% CI" in markdown
    check_integrity(artifact, manifest)  # the reports live outside the integrity check
    assert not list((artifact / "reports").glob(".*.tmp"))  # no temporary files left behind


def test_openvino_report_names_the_precision_it_ran_in(
    openvino_artifact: Path, glue_dir: Path
) -> None:
    report = verify_artifact(
        openvino_artifact, "sst2", data_dir=glue_dir, threads=1, bootstrap_samples=50
    )
    # The manifest asks for f32; "fp32" IR otherwise runs in bf16 on CPUs with BF16 (FIELD-NOTES).
    assert report.environment.precision == "f32"
    assert report.environment.runtime_threads == 1


def test_rendered_table_shows_metrics_gate_and_machine(onnx_artifact: Path, glue_dir: Path) -> None:
    report = verify_artifact(onnx_artifact, "sst2", data_dir=glue_dir, bootstrap_samples=50)
    console = Console(width=200, record=True)
    console.print(render_table(report))
    text = console.export_text()
    for expected in (
        "accuracy (headline)",
        "95% CI",
        "prediction agreement",
        "batch-1 latency",
        "this machine ISA",
        report.gate.message,
    ):
        assert expected in text
    assert render_markdown(report).startswith("# bertc verify: sst2")
    json.dumps(report_to_json(report), allow_nan=False)


# ---- the gate


def test_gate_fails_on_an_artifact_that_lost_accuracy(
    damaged_artifact: Path, checkpoint: Path, glue_dir: Path
) -> None:
    with pytest.raises(GateFailedError) as failure:
        verify_artifact(
            damaged_artifact,
            "sst2",
            data_dir=glue_dir,
            reference=str(checkpoint),
            bootstrap_samples=200,
        )
    message = str(failure.value)
    match = GATE_MESSAGE.match(message)
    assert match, message
    assert failure.value.exit_code == 12

    data = json.loads((damaged_artifact / "reports/verify-sst2.json").read_text(encoding="utf-8"))
    assert data["gate"]["passed"] is False and data["gate"]["message"] == message
    delta = data["metrics"][0]["delta_points"]
    assert delta < -0.5
    assert float(match.group(1)) == pytest.approx(-delta, abs=0.005)
    assert data["metrics"][0]["ci_high_points"] < 0  # a real loss, not dev-set noise
    assert any("weights differ" in note for note in data["notes"])
    assert message in (damaged_artifact / "reports/verify-sst2.md").read_text(encoding="utf-8")


def test_gate_is_relative_to_the_reference(damaged_artifact: Path, glue_dir: Path) -> None:
    """The same artifact against its own (damaged) source lost nothing to compilation."""
    report = verify_artifact(damaged_artifact, "sst2", data_dir=glue_dir, bootstrap_samples=50)
    assert report.gate.passed, report.gate.message
    assert report.notes == ()


def test_gate_failure_can_be_left_to_the_caller(
    damaged_artifact: Path, checkpoint: Path, glue_dir: Path
) -> None:
    report = verify_artifact(
        damaged_artifact,
        "sst2",
        data_dir=glue_dir,
        reference=str(checkpoint),
        bootstrap_samples=50,
        raise_on_gate_failure=False,
    )
    assert not report.gate.passed
    with pytest.raises(GateFailedError, match="^gate failed"):
        verify_module.raise_if_gate_failed(report)


@pytest.mark.parametrize("max_drop", [-0.5, math.nan, math.inf])
def test_max_drop_must_be_a_finite_non_negative_number(
    max_drop: float, onnx_artifact: Path, glue_dir: Path
) -> None:
    with pytest.raises(UsageError, match="--max-drop"):
        verify_artifact(onnx_artifact, "sst2", data_dir=glue_dir, max_drop=max_drop)


# ---- threads: --threads is the runtime's; the fp32 reference keeps its own


def test_runtime_threads_do_not_set_the_reference_threads(
    onnx_artifact: Path, glue_dir: Path, monkeypatch
) -> None:
    """Issue: `--threads 2` also set PyTorch's threads for the untimed reference, 4-5x slower."""
    seen: list[int] = []
    load_model = reference.load_model

    def load_watched(*args, **kwargs):
        loaded = load_model(*args, **kwargs)

        def module(*tensors):
            seen.append(torch.get_num_threads())
            return loaded.module(*tensors)

        return dataclasses.replace(loaded, module=module)

    monkeypatch.setattr(reference, "load_model", load_watched)
    before = torch.get_num_threads()
    report = verify_artifact(
        onnx_artifact, "sst2", data_dir=glue_dir, threads=2, bootstrap_samples=20
    )
    assert seen and set(seen) == {reference.DEFAULT_REFERENCE_THREADS}
    assert report.environment.threads_requested == 2
    assert report.environment.reference_threads == reference.DEFAULT_REFERENCE_THREADS
    assert f"{reference.DEFAULT_REFERENCE_THREADS} thread(s), batch 1" in render_markdown(report)
    assert torch.get_num_threads() == before

    seen.clear()
    report = verify_artifact(
        onnx_artifact,
        "sst2",
        data_dir=glue_dir,
        threads=1,
        reference_threads=2,
        bootstrap_samples=20,
    )
    assert set(seen) == {2}
    assert report.environment.threads_requested == 1
    assert report.environment.reference_threads == 2
    assert "2 thread(s), batch 1" in render_markdown(report)
    assert torch.get_num_threads() == before


def test_reference_threads_must_be_at_least_one(onnx_artifact: Path, glue_dir: Path) -> None:
    with pytest.raises(UsageError, match="--reference-threads"):
        verify_artifact(onnx_artifact, "sst2", data_dir=glue_dir, reference_threads=0)


# ---- the package: public names re-exported lazily


def test_package_re_exports_every_public_name_and_imports_light() -> None:
    for name in verify_module.__all__:
        assert getattr(verify_module, name) is getattr(
            getattr(verify_module, verify_module._EXPORTS[name]), name
        )
    for name in ("verify_artifact", "raise_if_gate_failed", "STAGE_LABELS", "VerifyReport"):
        assert name in verify_module.__all__
    code = (
        "import sys, bertc.compiler.verify, bertc.compiler.verify.render; "
        "print(','.join(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


# ---- integrity first


@pytest.fixture
def no_inference(monkeypatch):
    """Fail the test if verify loads data, a model or a runtime."""

    def forbidden(*args, **kwargs):
        raise AssertionError("verify ran something before refusing the artifact")

    for module, name in (
        (stage, "load_examples"),
        (reference, "load_model"),
        (measure, "load_runner"),
        (measure, "load_tokenizer"),
    ):
        monkeypatch.setattr(module, name, forbidden)


def test_a_flipped_byte_is_refused_before_anything_runs(
    artifact_copy: Path, glue_dir: Path, no_inference
) -> None:
    model_file = read_manifest(artifact_copy)["runtime"]["model"]
    flip_byte(artifact_copy / model_file)
    with pytest.raises(ArtifactError, match=rf"{re.escape(model_file)} has changed") as failure:
        verify_artifact(artifact_copy, "sst2", data_dir=glue_dir)
    assert failure.value.exit_code == 11
    assert not (artifact_copy / "reports").exists()


def test_a_deleted_file_is_refused_before_anything_runs(
    artifact_copy: Path, glue_dir: Path, no_inference
) -> None:
    (artifact_copy / "tokenizer/tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match="tokenizer/tokenizer.json is missing"):
        verify_artifact(artifact_copy, "sst2", data_dir=glue_dir)


def test_an_added_file_and_a_missing_manifest_are_refused(
    artifact_copy: Path, glue_dir: Path, no_inference
) -> None:
    (artifact_copy / "model.extra.onnx").write_bytes(b"not in the manifest")
    with pytest.raises(ArtifactError, match="model.extra.onnx is not in the manifest"):
        verify_artifact(artifact_copy, "sst2", data_dir=glue_dir)
    (artifact_copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="not a bertc artifact"):
        verify_artifact(artifact_copy, "sst2", data_dir=glue_dir)


# ---- artifacts that cannot be scored on the task


def test_encoder_artifact_is_refused(workspace: Path, tmp_path: Path, no_inference) -> None:
    encoder = make_encoder(workspace / "tiny-encoder")
    artifact = _compile(
        encoder,
        tmp_path / "encoder-art",
        "onnx",
        None,
        task=None,
        quantization=QuantizationMode.NONE,
    )
    with pytest.raises(UsageError, match="bare encoder") as failure:
        verify_artifact(artifact, "sst2", data_dir=tmp_path / "no-data")
    assert "\n" not in str(failure.value)


def test_task_with_another_label_count_is_refused(
    onnx_artifact: Path, tmp_path: Path, no_inference
) -> None:
    mnli = write_pairs(
        tmp_path,
        "MNLI",
        ("dev_matched.tsv",),
        "gold_label",
        ("contradiction", "entailment", "neutral"),
    )
    with pytest.raises(UsageError, match="2 output.* mnli needs 3 labels"):
        verify_artifact(onnx_artifact, "mnli", data_dir=mnli)
    stsb = write_pairs(tmp_path, "STS-B", ("dev.tsv",), "score", None)
    with pytest.raises(UsageError, match="stsb needs a regression score"):
        verify_artifact(onnx_artifact, "stsb", data_dir=stsb)


def test_data_errors_come_from_the_readers(onnx_artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(DataFileMissingError, match="SST-2/dev.tsv"):
        verify_artifact(onnx_artifact, "sst2", data_dir=tmp_path)


def test_reference_that_moved_or_changed_is_named(
    checkpoint: Path, glue_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    shutil.copytree(checkpoint, source)
    artifact = _compile(
        source, tmp_path / "art", "onnx", glue_dir, quantization=QuantizationMode.DYNAMIC
    )
    make_damaged_copy(checkpoint, source)  # overwrite the source's weights
    with pytest.raises(ModelFileError, match="has changed since the artifact was compiled"):
        verify_artifact(artifact, "sst2", data_dir=glue_dir)
    shutil.rmtree(source)
    with pytest.raises(ModelNotFoundError, match="--reference"):
        verify_artifact(artifact, "sst2", data_dir=glue_dir)
    report = verify_artifact(
        artifact, "sst2", data_dir=glue_dir, reference=str(checkpoint), bootstrap_samples=50
    )
    assert report.gate.passed, report.gate.message


# ---- regression tasks


def test_regression_artifact_reports_pearson_of_predictions(
    workspace: Path, tmp_path: Path
) -> None:
    regressor = make_classifier(workspace / "tiny-stsb", num_labels=1, steps=60)
    stsb = write_pairs(tmp_path / "glue", "STS-B", ("train.tsv", "dev.tsv"), "score", None)
    artifact = _compile(regressor, tmp_path / "art", "onnx", stsb, task="stsb")
    report = verify_artifact(artifact, "stsb", data_dir=stsb, max_drop=100, bootstrap_samples=100)
    assert [metric.name for metric in report.metrics] == ["pearson", "spearman"]
    assert report.agreement.rate is None and report.agreement.prediction_pearson > 0.9
    data = json.loads((artifact / "reports/verify-stsb.json").read_text(encoding="utf-8"))
    assert data["agreement"]["rate"] is None
    assert "n/a (regression)" in (artifact / "reports/verify-stsb.md").read_text(encoding="utf-8")


# ---- real weights


def _assets() -> Path:
    return Path(os.environ.get("BERTC_ASSETS", REPO_ROOT / ".." / "shared" / "assets")).resolve()


@pytest.mark.parametrize(
    ("target", "quantization"),
    [
        ("openvino", QuantizationMode.STATIC),
        ("ort-mobile", QuantizationMode.STATIC),
        ("ort-mobile", QuantizationMode.DYNAMIC),
    ],
)
def test_real_minilm_sst2_artifact_agrees_with_fp32_and_is_small(
    tmp_path: Path, target: str, quantization: QuantizationMode
) -> None:
    """Issue 2's bar on the real model: >= 99% agreement on SST-2 dev through the artifact's own
    runtime, <= 27% of the fp32 ONNX bytes, and the 0.5-point gate passes; for ort-mobile's
    dynamic recipe too (issue 6's accuracy bar for its speed)."""
    assets = _assets()
    model, glue = assets / "models" / "minilm-l6-sst2", assets / "glue"
    if not (model / "model.safetensors").is_file() or not (glue / "SST-2" / "dev.tsv").is_file():
        pytest.skip(f"minilm-l6-sst2 or GLUE SST-2 not found under {assets}; set BERTC_ASSETS")
    # The recipe's own bar (issue 2), without the accuracy budget's search: the search may keep
    # nodes fp32 and trade bytes for agreement (its own tests: tests/targets/*/test_*_search.py).
    artifact = _compile(
        model, tmp_path / target, target, glue, quantization=quantization, max_drop=None
    )
    report = verify_artifact(artifact, "sst2", data_dir=glue, max_drop=0.5, threads=2)
    recorded = json.loads((model / "sst2_eval.json").read_text(encoding="utf-8"))[
        "dev_accuracy_fp32"
    ]
    manifest = read_manifest(artifact)
    assert report.examples == 872
    assert report.headline.reference == pytest.approx(recorded, abs=1e-4)
    assert report.gate.passed, report.gate.message
    assert report.agreement.rate >= 0.99
    assert manifest["size"]["ratio_to_fp32_onnx"] <= 0.27


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_real_minilm_sst2_gate_fails_on_the_library_default_recipe(
    tmp_path: Path, target: str
) -> None:
    """The deliberately poor recipe (the quantizer's bare defaults: per-tensor int8 activations
    everywhere for ORT, no transformer model type for NNCF) really loses accuracy on MiniLM-L6
    SST-2, and the gate says so; the bert-safe recipe passes (test above)."""
    assets = _assets()
    model, glue = assets / "models" / "minilm-l6-sst2", assets / "glue"
    if not (model / "model.safetensors").is_file() or not (glue / "SST-2" / "dev.tsv").is_file():
        pytest.skip(f"minilm-l6-sst2 or GLUE SST-2 not found under {assets}; set BERTC_ASSETS")
    # The recipe as it is: under the default budget OpenVINO's search would refuse it (exit 12).
    artifact = _compile(
        model, tmp_path / target, target, glue, recipe=Recipe.LIBRARY_DEFAULTS, max_drop=None
    )
    assert read_manifest(artifact)["quantization"]["recipe"] == "library-defaults"
    with pytest.raises(GateFailedError, match="gate failed: sst2 accuracy dropped"):
        verify_artifact(artifact, "sst2", data_dir=glue, max_drop=0.5, threads=2)
    data = json.loads((artifact / "reports" / "verify-sst2.json").read_text(encoding="utf-8"))
    assert data["metrics"][0]["delta_points"] < -0.5
    assert data["metrics"][0]["ci_high_points"] < 0  # a real loss, not dev-set noise
