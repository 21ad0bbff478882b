"""Targets: each artifact loads in its stock runtime, computes what PyTorch computes, and holds
what the manifest says it holds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime
import openvino
import pytest
from artifact_readers import ort_model_op_types, ort_model_operators
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.manifest import read_manifest
from bertc.targets import get_target, target_names
from bertc.targets.ort.mobile import (
    BATCH_ONE_NOTE,
    UNCALIBRATED_DYNAMIC_NOTE,
    operator_lines,
)
from bertc.targets.ort.quantize import SENSITIVE_ERROR_SHARE, SMOOTHING_ALPHAS
from bertc.targets.ov.quantize import classify_openvino_ops
from model_factory import TINY_CONFIG

TARGETS = ("onnx", "ort-mobile", "openvino")
LAYERS = TINY_CONFIG["num_hidden_layers"]
WEIGHT_MATMULS = 6 * LAYERS
INT8_LOGIT_ATOL = 0.05  # the tiny classifier's margins are about 5
FP32_ATOL = 1e-4


def test_registry_names_every_target_and_refuses_others() -> None:
    assert target_names() == tuple(sorted(TARGETS))
    for name in TARGETS:
        target = get_target(name)
        assert target.name == name and target.description
    with pytest.raises(UsageError, match="unknown target 'tflite'; choose one of: onnx, openvino"):
        get_target("tflite")


@pytest.mark.parametrize("target", TARGETS)
def test_int8_artifact_runs_in_its_runtime_close_to_pytorch(
    compile_once, tiny_classifier: Path, reference, target: str
) -> None:
    result = compile_once(tiny_classifier, target)
    runner = get_target(target).load(result.artifact_dir, result.manifest, threads=1)
    batch, expected = reference
    (logits,) = runner.run(batch)
    assert logits.shape == expected.shape
    assert set(expected.argmax(axis=1)) == {0, 1}
    assert np.abs(logits - expected).max() <= INT8_LOGIT_ATOL
    assert (logits.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.95


@pytest.mark.parametrize("target", TARGETS)
def test_fp32_artifact_matches_pytorch(
    compile_once, tiny_classifier: Path, reference, target: str
) -> None:
    result = compile_once(tiny_classifier, target, quantization="none")
    assert result.manifest["quantization"] is None
    (logits,) = get_target(target).load(result.artifact_dir, result.manifest).run(reference[0])
    np.testing.assert_allclose(logits, reference[1], rtol=0, atol=FP32_ATOL)


def config_operators(path: Path) -> set[tuple[str, int, str]]:
    entries = set()
    for line in operator_lines(path):
        domain, opset, ops = line.split(";")
        entries.update((domain, int(opset), op) for op in ops.split(","))
    return entries


# The only contrib ops the ORT-format model may need (targets/ort_mobile.py). Static: what ORT's
# QDQ fusions make of bertc's weight MatMuls; the GELU/LayerNorm/attention fusions stay off.
# Dynamic: the transformer optimizer's attention and GELU, and the dynamic INT8 MatMul fusions;
# never SkipLayerNormalization (slower than Add + LayerNormalization on ORT's CPU kernels).
ORT_MOBILE_CONTRIB_OPS = {
    "static": {"MatMulIntegerToFloat", "MatMulNBits"},
    "dynamic": {"QAttention", "Gelu", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"},
}
INT8_WEIGHT_MATMUL_OPS = ("QLinearMatMul", "MatMulIntegerToFloat", "MatMulNBits", "MatMulInteger")


@pytest.mark.parametrize("quantization", ["static", "dynamic"])
def test_ort_mobile_config_covers_exactly_what_the_model_runs(
    compile_once, tiny_classifier: Path, reference, quantization: str
) -> None:
    result = compile_once(tiny_classifier, "ort-mobile", quantization=quantization)
    artifact = result.artifact_dir
    required = config_operators(artifact / "required_operators.config")
    used = ort_model_operators(artifact / "model.ort")
    assert required == used  # a reduced build with this config has every kernel, and no more
    domains = {domain for domain, _, _ in required}
    assert domains <= {"ai.onnx", "com.microsoft"}
    contrib = {op for domain, _, op in required if domain == "com.microsoft"}
    assert contrib <= ORT_MOBILE_CONTRIB_OPS[quantization]
    runtime = result.manifest["runtime"]
    assert runtime["operator_domains"] == sorted(domains)
    assert runtime["operators"] == list(operator_lines(artifact / "required_operators.config"))
    if quantization == "dynamic":
        nodes = Counter(ort_model_op_types(artifact / "model.ort"))
        assert nodes["QAttention"] == LAYERS and nodes["DynamicQuantizeMatMul"] >= 2 * LAYERS
    session = onnxruntime.InferenceSession(
        str(artifact / "model.ort"), providers=["CPUExecutionProvider"]
    )
    (logits,) = session.run(["logits"], reference[0])
    assert np.abs(logits - reference[1]).max() <= 2 * INT8_LOGIT_ATOL


def test_ort_mobile_runs_weight_matmuls_int8_and_attention_fp32(
    compile_once, tiny_classifier: Path
) -> None:
    result = compile_once(tiny_classifier, "ort-mobile")
    ops = Counter(ort_model_op_types(result.artifact_dir / "model.ort"))
    assert sum(ops[op] for op in INT8_WEIGHT_MATMUL_OPS) == WEIGHT_MATMULS
    assert ops["MatMul"] == 2 * LAYERS  # attention scores and context stay fp32


def test_ort_mobile_dynamic_fuses_attention_and_measures_what_stays_fp32(
    compile_once, tiny_classifier: Path
) -> None:
    result = compile_once(tiny_classifier, "ort-mobile", quantization="dynamic")
    manifest = read_manifest(result.artifact_dir)
    fusion = manifest["runtime"]["transformer_fusion"]
    assert fusion["fused_ops"]["Attention"] == LAYERS
    assert fusion["max_abs_diff"] <= FP32_ATOL and fusion["samples_checked"] > 0
    settings = manifest["quantization"]["settings"]
    errors = settings["sensitivity_errors"]
    # The search measured all-INT8 and each FFN output projection kept fp32 alone.
    assert settings["sensitivity_candidates"] == LAYERS
    assert len(errors) == 1 + LAYERS and errors["all INT8"] > 0
    assert manifest["quantization"]["calibration_samples"] > 0
    for name in settings["fp32_by_sensitivity"]:
        assert errors[name] <= (1 - SENSITIVE_ERROR_SHARE) * errors["all INT8"]
    assert manifest["quantization"]["int8_ops"]["QAttention"] == LAYERS
    assert BATCH_ONE_NOTE in manifest["notes"]
    # The SmoothQuant strength kept is the one whose INT8 graph moved the outputs least.
    alpha_errors = settings["smoothquant_errors"]
    assert set(alpha_errors) == {"none", *map(str, SMOOTHING_ALPHAS)}
    chosen = "none" if settings["smoothquant_alpha"] is None else str(settings["smoothquant_alpha"])
    assert alpha_errors[chosen] == min(alpha_errors.values())
    assert (settings["smoothed_matmuls"] > 0) == (chosen != "none")


def test_ort_mobile_dynamic_without_task_data_quantizes_everything(
    compile_once, tiny_classifier: Path, reference
) -> None:
    result = compile_once(tiny_classifier, "ort-mobile", quantization="dynamic", task=None)
    quantization = read_manifest(result.artifact_dir)["quantization"]
    assert quantization["calibration_samples"] == 0
    assert quantization["settings"]["fp32_by_sensitivity"] == []
    assert quantization["settings"]["smoothquant_alpha"] is None
    assert UNCALIBRATED_DYNAMIC_NOTE in read_manifest(result.artifact_dir)["notes"]
    assert quantization["settings"]["sensitivity_rule"].startswith("not run")
    runner = get_target("ort-mobile").load(result.artifact_dir, result.manifest, threads=1)
    (logits,) = runner.run(reference[0])
    assert np.abs(logits - reference[1]).max() <= 2 * INT8_LOGIT_ATOL


@pytest.fixture(scope="module")
def openvino_artifact(compile_once, tiny_classifier: Path):
    return compile_once(tiny_classifier, "openvino")


def test_openvino_ir_reads_and_compiles_for_cpu_in_f32(openvino_artifact, reference) -> None:
    artifact, manifest = openvino_artifact.artifact_dir, openvino_artifact.manifest
    core = openvino.Core()
    model = core.read_model(str(artifact / "model.xml"))
    assert manifest["runtime"]["compile_config"] == {"INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(model, "CPU", manifest["runtime"]["compile_config"])
    # Without the hint this CPU (AVX-512 BF16) would run the floating-point parts in bf16.
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
    assert [port.get_any_name() for port in compiled.outputs] == ["logits"]
    request = compiled.create_infer_request()
    batch, expected = reference
    logits = np.asarray(request.infer(batch)[compiled.outputs[0]])
    assert np.abs(logits - expected).max() <= INT8_LOGIT_ATOL


def test_openvino_matmuls_are_int8_as_the_manifest_says(openvino_artifact) -> None:
    model = openvino.Core().read_model(str(openvino_artifact.artifact_dir / "model.xml"))
    op_types = Counter(op.get_type_name() for op in model.get_ordered_ops())
    assert op_types["FakeQuantize"] > 0
    int8_ops, floating_ops = classify_openvino_ops(model)
    summary = openvino_artifact.manifest["quantization"]
    assert summary.int8_ops == int8_ops
    assert summary.fp32_ops == floating_ops
    # Every MatMul (the encoder's six per layer, the pooler, the classifier) reads INT8.
    assert int8_ops["MatMul"] == op_types["MatMul"] == WEIGHT_MATMULS + 2
    assert "MatMul" not in floating_ops
    assert floating_ops["MVN"] == 1 + 2 * LAYERS  # LayerNorms stay in floating point
    assert summary.tool == f"nncf {__import__('nncf').__version__}"
    assert summary.settings["model_type"] == "TRANSFORMER"


def test_openvino_manifest_lists_power_of_two_buckets_up_to_the_maximum_length(
    openvino_artifact,
) -> None:
    policy = openvino_artifact.manifest["runtime"]["static_shapes"]
    maximum = openvino_artifact.manifest["model"]["max_sequence_length"]
    assert policy["batch"] == 1
    assert policy["sequence_buckets"][0] == 16
    assert policy["sequence_buckets"][-1] == maximum
    powers = policy["sequence_buckets"][:-1]
    assert all(b == 2 * a for a, b in zip(powers, powers[1:], strict=False))


def single_inputs(batch: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Each row of a padded batch cut back to its real length, as an app feeds one input."""
    lengths = batch["attention_mask"].sum(axis=1)
    return [
        {name: value[row : row + 1, :length] for name, value in batch.items()}
        for row, length in enumerate(lengths)
    ]


def test_openvino_single_inputs_on_static_buckets_match_the_dynamic_model(
    openvino_artifact, reference
) -> None:
    artifact, manifest = openvino_artifact.artifact_dir, openvino_artifact.manifest
    bucketed = get_target("openvino").load(artifact, manifest)
    batch, _ = reference
    for single in single_inputs(batch):
        expected = bucketed.run_dynamic(single)[0]
        np.testing.assert_allclose(bucketed.run(single)[0], expected, atol=1e-4)
    lengths = {value["input_ids"].shape[1] for value in single_inputs(batch)}
    buckets = bucketed.static.buckets
    assert set(bucketed.static.compiled) == {min(b for b in buckets if b >= n) for n in lengths}


def test_openvino_bucketed_encoder_outputs_keep_the_real_sequence_length(
    compile_once, tiny_encoder: Path
) -> None:
    result = compile_once(tiny_encoder, "openvino", quantization="none", task=None)
    runner = get_target("openvino").load(result.artifact_dir, result.manifest)
    ids = np.array([[101, 7592, 2088, 102, 2023]], dtype=np.int64)
    inputs = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }
    hidden = runner.run(inputs)[0]
    assert hidden.shape[:2] == (1, 5)
    dynamic = runner.run_dynamic(inputs)[0]
    np.testing.assert_allclose(hidden, dynamic, atol=1e-4)
