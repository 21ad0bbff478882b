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
            return nncf.quantize(
                model,
                nncf.Dataset(_samples(calibration_inputs)),
                **_static_settings(recipe, len(calibration_inputs), ignored, smooth_quant_alpha),
            )
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
        return nncf.quantize_with_accuracy_control(
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
        notes=tuple(note for note in (missing_activation_note(model),) if note),
    )
