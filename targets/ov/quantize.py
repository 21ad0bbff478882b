"""OpenVINO INT8 with NNCF, and the read-back of what ran in INT8 in the compressed model.

Static INT8 is `nncf.quantize` with the transformer model type (SmoothQuant and fast bias
correction on, LayerNorm/Softmax/GELU kept in floating point); dynamic INT8 is
`nncf.compress_weights` (int8 weights; the CPU plugin quantizes activations at run time).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from bertc.compiler.core.activations import OPENVINO_ACTIVATION_TYPES
from bertc.compiler.core.errors import QuantizationError
from bertc.compiler.core.recipes import Calibration
from bertc.compiler.core.summary import FP32_REASONS, QuantizationSummary
from bertc.targets.ov.recipes import OvRecipe

# OpenVINO's low-precision transformations read a FakeQuantize as signed int8 (no zero point)
# when output_low / output_high is -levels / (levels - 2) within this relative tolerance
# (`LayerTransformation::getPrecisionDetails`, openvino 2026.4), otherwise as uint8.
SIGNED_RATIO_TOLERANCE = 0.002
# Where the model records the MatMuls whose input range `shift_arm_faulty_quantizers` moved.
ARM_GUARD_RT_INFO = ["bertc", "arm_uint8_activations"]

# OpenVINO op types that correspond to the ONNX types FP32_REASONS explains.
_OV_TO_ONNX_TYPES = {
    "MVN": "LayerNormalization",
    "SoftMax": "Softmax",
    "Gelu": "Gelu",
    "Add": "Add",
    "MatMul": "MatMul",
    "Gather": "Gather",
    "Tanh": "Tanh",
    "Divide": "Div",
    "Multiply": "Mul",
    "Swish": "Swish",
    "Mish": "Mish",
    "Relu": "Relu",
}
_COMPUTE_TYPES = ("MatMul", "Gather", "MVN", "SoftMax", "Tanh", *OPENVINO_ACTIVATION_TYPES)


def ffn_activation_count(model) -> int:
    """FFN activations in the OpenVINO model: its ONNX frontend fuses each supported
    `hidden_act` into one op (Gelu in erf or tanh mode, Swish, Mish, Relu), which NNCF's
    transformer model type keeps in floating point with the MatMul after it reading 8 bits."""
    return sum(op.get_type_name() in OPENVINO_ACTIVATION_TYPES for op in model.get_ordered_ops())


def encoder_layers(model) -> int:
    """Layers of the encoder: two LayerNorms (MVN) per layer plus the embeddings' one."""
    norms = sum(op.get_type_name() == "MVN" for op in model.get_ordered_ops())
    return max(0, (norms - 1) // 2)


def missing_activation_note(model) -> str | None:
    """A note when fewer FFN activations were recognised than the model has layers."""
    found, layers = ffn_activation_count(model), encoder_layers(model)
    if found >= layers:
        return None
    return (
        f"NNCF recipe: found {found} FFN activation op(s) of {list(OPENVINO_ACTIVATION_TYPES)} "
        f"for {layers} layer(s); the activation was not fused into one op, so NNCF may have "
        "quantized inside it"
    )


def quantize_with_nncf(
    model,
    recipe: OvRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    ignored: Sequence[str] = (),
    smooth_quant_alpha: float | None = None,
):
    """The OpenVINO model (an `openvino.Model`) compressed by NNCF as `recipe` says; the model
    itself for an fp32 recipe. `ignored`: node names NNCF leaves in floating point (its
    ignored_scope); `smooth_quant_alpha`: SmoothQuant's MatMul alpha instead of NNCF's default
    (0.95 for transformers; negative: off). Raises QuantizationError naming the stage."""
    import nncf

    try:
        if recipe.api == "nncf.quantize":
            quantized = nncf.quantize(
                model,
                nncf.Dataset(_samples(calibration_inputs)),
                **_static_settings(recipe, len(calibration_inputs), ignored, smooth_quant_alpha),
            )
            shift_arm_faulty_quantizers(quantized)
            return quantized
        if recipe.api == "nncf.compress_weights":
            return nncf.compress_weights(model, mode=nncf.CompressWeightsMode[recipe.compress_mode])
        return model
    except QuantizationError:
        raise
    except Exception as error:  # NNCF raises many internal types; name the stage
        raise QuantizationError(f"NNCF quantization failed: {error}") from error


def _samples(calibration_inputs: Sequence[Mapping[str, np.ndarray]]) -> list[dict]:
    if not calibration_inputs:
        raise QuantizationError("static quantization needs calibration samples")
    return [dict(sample) for sample in calibration_inputs]


def _static_settings(
    recipe: OvRecipe, samples: int, ignored: Sequence[str], smooth_quant_alpha: float | None
) -> dict[str, Any]:
    """Keyword arguments of nncf.quantize (and of its accuracy-control twin) for `recipe`."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    settings: dict[str, Any] = {"subset_size": samples}
    if recipe.model_type is not None:
        settings["model_type"] = nncf.ModelType[recipe.model_type]
    if ignored:
        settings["ignored_scope"] = nncf.IgnoredScope(names=sorted(ignored))
    if smooth_quant_alpha is not None:
        settings["advanced_parameters"] = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=smooth_quant_alpha)
        )
    return settings


def quantize_with_accuracy_control(
    model,
    recipe: OvRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    validation_items: Sequence[Any],
    validation_fn: Callable[[Any, Iterable[Any]], tuple[float, Any]],
    inference_input: Callable[[Any], Any],
    max_drop: float,
    ranking_subset_size: int,
    max_num_iterations: int,
):
    """`nncf.quantize_with_accuracy_control` with `recipe`'s settings: NNCF quantizes as
    `quantize_with_nncf` would, then reverts the quantizers it ranks most harmful to floating
    point, one group at a time, until `validation_fn`'s metric has dropped by at most `max_drop`
    (absolute) from the floating-point model's, or `max_num_iterations` groups were tried.
    A reverted op keeps its int8 weights (activations in floating point).
    `validation_items` are what `validation_fn` receives; `inference_input(item)` what the model
    is fed for NNCF's ranking. Raises QuantizationError naming the stage."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedAccuracyRestorerParameters,
        RestoreMode,
    )

    try:
        restored = nncf.quantize_with_accuracy_control(
            model,
            nncf.Dataset(_samples(calibration_inputs)),
            nncf.Dataset(list(validation_items), inference_input),
            validation_fn,
            max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=max_num_iterations,
                ranking_subset_size=ranking_subset_size,
                num_ranking_workers=1,  # parallel ranking only pays on many cores
                # nncf 3.4 restores a reverted op's original (unsmoothed) weights but leaves
                # SmoothQuant's scaling of its input in place: wrong outputs (MiniLM-L6 SST-2:
                # agreement 99.4% -> 93.0%). Only activations: its smoothed int8 weights stay.
                restore_mode=RestoreMode.ONLY_ACTIVATIONS,
            ),
            **_static_settings(recipe, len(calibration_inputs), (), None),
        )
    except QuantizationError:
        raise
    except Exception as error:  # NNCF raises many internal types; name the stage
        raise QuantizationError(f"NNCF accuracy control failed: {error}") from error
    shift_arm_faulty_quantizers(restored)
    return restored


def runs_signed_int8(quantizer) -> bool:
    """Whether the CPU plugin runs this FakeQuantize's output as signed int8: every channel's
    output range straddles zero with output_low / output_high = -levels / (levels - 2), i.e. a
    zero point of exactly levels / 2 (NNCF's asymmetric ranges land there by chance)."""
    levels = int(quantizer.get_attributes()["levels"])
    low = np.asarray(quantizer.input_value(3).get_node().get_data(), dtype=np.float64).ravel()
    high = np.asarray(quantizer.input_value(4).get_node().get_data(), dtype=np.float64).ravel()
    low, high = np.broadcast_arrays(low, high)
    if levels < 3 or not (np.all(low < 0) and np.all(high > 0)):
        return False
    expected = -levels / (levels - 2.0)
    return bool(np.all(np.abs((low / high - expected) / expected) <= SIGNED_RATIO_TOLERANCE))


def per_channel_weight_scale(matmul) -> bool:
    """Whether `matmul` reads int8 weights dequantized by a scale of more than one value (one
    per output channel), through Convert / Subtract / Multiply / Reshape / Transpose."""
    pending = [matmul.input_value(i).get_node() for i in range(matmul.get_input_size())]
    for _ in range(4):
        later = []
        for node in pending:
            kind = node.get_type_name()
            if kind == "Multiply" and reads_int8(node):
                sizes = [
                    int(np.prod(node.input_value(i).get_shape()))
                    for i in range(2)
                    if node.input_value(i).get_node().get_type_name() == "Constant"
                    and node.input_value(i).get_partial_shape().is_static
                ]
                if any(size > 1 for size in sizes):
                    return True
            if kind in ("Convert", "Subtract", "Reshape", "Transpose", "Multiply"):
                later += [node.input_value(i).get_node() for i in range(node.get_input_size())]
        pending = later
    return False


def _reading_matmuls(quantizer) -> list:
    """MatMuls that read `quantizer`'s output, directly or through Reshape/Transpose/Convert."""
    found, pending = [], [t.get_node() for t in quantizer.output(0).get_target_inputs()]
    for _ in range(4):
        later = []
        for node in pending:
            if node.get_type_name() == "MatMul":
                found.append(node)
            elif node.get_type_name() in ("Reshape", "Transpose", "Convert"):
                later += [t.get_node() for t in node.output(0).get_target_inputs()]
        pending = later
    return found


def arm_faulty_quantizers(model) -> list[tuple[Any, list[str]]]:
    """Activation FakeQuantizes the CPU plugin runs as signed int8 into a MatMul with
    per-output-channel weight scales, each with the names of the MatMuls that read it.

    On aarch64 (openvino 2026.4.1) that MatMul gives wrong results on a dynamic input shape
    (MiniLM-L6 SST-2: logits 0.83x x86's; `tools/arm64/ov_arm_fc_repro.py`); unsigned
    activations, per-tensor weight scales or a static shape each give right ones.
    """
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        if op.input_value(0).get_node().get_type_name() == "Constant":
            continue  # a weight quantizer
        readers = [m for m in _reading_matmuls(op) if per_channel_weight_scale(m)]
        if readers and runs_signed_int8(op):
            found.append((op, sorted(m.get_friendly_name() for m in readers)))
    return found


def shift_arm_faulty_quantizers(model) -> list[str]:
    """Move the range of each FakeQuantize of `arm_faulty_quantizers` up by one quantization
    step, in place: the same step and grid, a zero point of levels / 2 - 1, which the CPU plugin
    runs as uint8 (right on aarch64); only inputs in the lowest step, below the new low, clip.
    NNCF 3.4 has no setting that keeps its asymmetric ranges off the signed one. Returns the
    names of the MatMuls that read them, also recorded in the model's rt_info under
    ARM_GUARD_RT_INFO."""
    from openvino import opset13 as ops

    names: list[str] = []
    for quantizer, readers in arm_faulty_quantizers(model):
        levels = int(quantizer.get_attributes()["levels"])
        for low_port, high_port in ((1, 2), (3, 4)):
            low = np.asarray(quantizer.input_value(low_port).get_node().get_data())
            high = np.asarray(quantizer.input_value(high_port).get_node().get_data())
            step = (high - low) / (levels - 1)
            for port, value in ((low_port, low + step), (high_port, high + step)):
                quantizer.input(port).replace_source_output(ops.constant(value).output(0))
        names += readers
    if names:
        model.set_rt_info(",".join(sorted(names)), ARM_GUARD_RT_INFO)
    return sorted(names)


def arm_guarded_matmuls(model) -> list[str]:
    """The MatMuls whose input range `shift_arm_faulty_quantizers` moved, from rt_info."""
    if not model.has_rt_info(ARM_GUARD_RT_INFO):
        return []
    text = model.get_rt_info(ARM_GUARD_RT_INFO).astype(str)
    return [name for name in text.split(",") if name]


def arm_guard_note(model) -> str | None:
    """The summary's note naming the MatMuls whose input range the ARM guard moved."""
    names = arm_guarded_matmuls(model)
    if not names:
        return None
    return (
        f"the int8 input range of {len(names)} MatMul(s) was moved up by one step (zero point "
        "128 -> 127) so that it runs as uint8: OpenVINO 2026.4's CPU plugin computes signed int8 "
        f"activations with per-channel weights wrongly on ARM on dynamic shapes: {', '.join(names)}"
    )


def classify_openvino_ops(model) -> tuple[dict[str, int], dict[str, int]]:
    """INT8 ops read a FakeQuantize output or an int8/uint8 constant (via Convert)."""
    int8: Counter[str] = Counter()
    floating: Counter[str] = Counter()
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in _COMPUTE_TYPES:
            continue
        if any(
            reads_int8(op.input_value(index).get_node()) for index in range(op.get_input_size())
        ):
            int8[kind] += 1
        else:
            floating[kind] += 1
    return dict(sorted(int8.items())), dict(sorted(floating.items()))


def reads_int8(node, depth: int = 0) -> bool:
    """Walk back through the dequantization chain (Convert, Subtract, Multiply, Reshape)."""
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind == "Constant":
        return node.get_element_type().get_type_name() in ("i8", "u8")
    if kind in ("Convert", "Subtract", "Multiply", "Reshape", "Transpose") and depth < 4:
        return any(
            reads_int8(node.input_value(i).get_node(), depth + 1)
            for i in range(node.get_input_size())
        )
    return False


def summarise_openvino(
    model, recipe: OvRecipe, calibration_inputs: Sequence[Mapping[str, np.ndarray]]
) -> QuantizationSummary:
    """What ran in INT8 in the compressed model, and the recipe's settings."""
    import nncf

    int8_ops, fp_ops = classify_openvino_ops(model)
    reasons = {
        kind: FP32_REASONS[_OV_TO_ONNX_TYPES[kind]]
        for kind in fp_ops
        if _OV_TO_ONNX_TYPES.get(kind) in FP32_REASONS
    }
    static = recipe.calibration is Calibration.REQUIRED
    return QuantizationSummary(
        mode=recipe.mode.value,
        recipe=recipe.recipe.value,
        tool=f"nncf {nncf.__version__}",
        calibration_samples=len(calibration_inputs) if static else 0,
        int8_ops=int8_ops,
        fp32_ops=fp_ops,
        fp32_reasons=reasons,
        settings=recipe.record(),
        notes=tuple(
            note for note in (missing_activation_note(model), arm_guard_note(model)) if note
        ),
    )
