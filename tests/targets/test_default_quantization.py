"""`--quantization`'s default is each target's own (`Target.default_quantization`): what
`bertc compile --help` says, what a compile without the flag builds, and what its manifest
records (`quantization_choice`); an explicit mode still wins (`--quantization static` on
ort-mobile gives the standard QDQ graph)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from artifact_readers import ort_model_op_types
from bertc.compiler.cli.options import QUANTIZATION_DEFAULTS
from bertc.compiler.core.enums import QuantizationMode
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.manifest import read_manifest
from bertc.compiler.options import CompileOptions
from bertc.targets import get_target, target_names
from model_factory import TINY_CONFIG

LAYERS = TINY_CONFIG["num_hidden_layers"]
WEIGHT_MATMULS = 6 * LAYERS
# What each mode makes of the encoder in the ORT-format graph (targets/ort_mobile.py).
DYNAMIC_ONLY_OPS = ("QAttention", "DynamicQuantizeMatMul")
STATIC_INT8_MATMUL_OPS = ("MatMulIntegerToFloat", "MatMulNBits")


def help_text(bertc_cli) -> str:
    done = bertc_cli("compile", "--help")
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.replace("│", " ").split())


def test_help_names_every_targets_own_default(bertc_cli) -> None:
    text = help_text(bertc_cli)
    assert set(QUANTIZATION_DEFAULTS) == set(target_names())
    for name in target_names():
        default = get_target(name).default_quantization
        assert QUANTIZATION_DEFAULTS[name] == default.value, name
        assert f"{default.value} for {name}" in text, name


def test_ort_mobile_defaults_to_dynamic_and_the_portable_targets_to_static() -> None:
    """The measured choice (bench/README.md): dynamic INT8 is the fastest accurate artifact on
    ONNX Runtime's CPU provider; the QDQ and NNCF artifacts stay static."""
    assert get_target("ort-mobile").default_quantization is QuantizationMode.DYNAMIC
    assert get_target("onnx").default_quantization is QuantizationMode.STATIC
    assert get_target("openvino").default_quantization is QuantizationMode.STATIC


@pytest.mark.parametrize("asked", [None, *QuantizationMode], ids=lambda m: getattr(m, "value", m))
@pytest.mark.parametrize("default", list(QuantizationMode), ids=lambda m: m.value)
def test_options_settle_to_the_asked_mode_or_the_default(asked, default) -> None:
    options = CompileOptions(target="onnx", quantization=asked)
    settled = options.with_quantization_default(default)
    assert settled.quantization is (default if asked is None else asked)
    assert settled.quantization_is_default is (asked is None)
    choice = settled.quantization_choice(default)
    assert choice == {
        "mode": settled.quantization.value,
        "target_default": default.value,
        "chosen_by": "target default" if asked is None else "--quantization",
    }
    assert options.quantization_choice(default) == choice  # unsettled: the same record


def test_a_mode_given_as_a_string_is_checked_and_none_means_the_default() -> None:
    assert CompileOptions(target="ort-mobile").quantization is None
    assert CompileOptions(target="ort-mobile", quantization="static").quantization is (
        QuantizationMode.STATIC
    )
    with pytest.raises(UsageError, match="quantization must be one of static, dynamic, none"):
        CompileOptions(target="ort-mobile", quantization="int4")


@pytest.fixture(scope="module")
def cli_compile(tmp_path_factory, bertc_cli, tiny_classifier, glue_data_dir):
    """`cli_compile(target, *flags)`: the artifact `bertc compile` writes, built once."""
    built: dict[tuple[str, ...], Path] = {}

    def build(target: str, *flags: str) -> Path:
        key = (target, *flags)
        if key not in built:
            out = tmp_path_factory.mktemp(f"default-{target}") / "artifact"
            done = bertc_cli(
                "compile", tiny_classifier, "--target", target, "--out", out, "--task", "sst2",
                "--data-dir", glue_data_dir, "--calibration-samples", "8", "--tokenizer", "none",
                *flags,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            built[key] = out
        return built[key]

    return build


@pytest.mark.parametrize("target", ["onnx", "ort-mobile", "openvino"])
def test_compile_without_the_flag_builds_and_records_the_targets_default(
    cli_compile, target: str
) -> None:
    manifest = read_manifest(cli_compile(target))
    default = get_target(target).default_quantization.value
    assert manifest["quantization"]["mode"] == default  # what the quantizer actually ran
    assert manifest["quantization_choice"] == {
        "mode": default,
        "target_default": default,
        "chosen_by": "target default",
    }


def test_ort_mobile_default_is_the_fused_dynamic_graph(cli_compile) -> None:
    ops = Counter(ort_model_op_types(cli_compile("ort-mobile") / "model.ort"))
    assert ops["QAttention"] == LAYERS
    assert ops["DynamicQuantizeMatMul"] >= 2 * LAYERS


def test_ort_mobile_static_stays_selectable_and_is_qdq(cli_compile) -> None:
    artifact = cli_compile("ort-mobile", "--quantization", "static")
    manifest = read_manifest(artifact)
    assert manifest["quantization"]["mode"] == "static"
    assert manifest["quantization_choice"] == {
        "mode": "static",
        "target_default": "dynamic",
        "chosen_by": "--quantization",
    }
    ops = Counter(ort_model_op_types(artifact / "model.ort"))
    assert not any(ops[op] for op in DYNAMIC_ONLY_OPS), ops
    # Every weight MatMul runs INT8 through ORT's QDQ fusions; attention's two stay fp32.
    assert sum(ops[op] for op in STATIC_INT8_MATMUL_OPS) == WEIGHT_MATMULS
    assert ops["MatMul"] == 2 * LAYERS
    assert ops["DequantizeLinear"] > 0  # the QDQ form: the int8 embedding tables dequantized
    listed = {
        op for line in manifest["runtime"]["operators"] for op in line.split(";")[2].split(",")
    }
    assert listed.isdisjoint(DYNAMIC_ONLY_OPS)  # a reduced build needs no dynamic-INT8 kernel
