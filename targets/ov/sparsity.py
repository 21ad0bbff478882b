"""Which zeros of an NNCF-quantized OpenVINO model's INT8 weights are the checkpoint's zeros."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from bertc.compiler.core.sparsity import (
    Int8WeightZeros,
    compare_int8_zeros,
    onnx_matmul_weights,
    onnx_weight_name,
)


def openvino_int8_weight_zeros(fp32_onnx: Path, model: Any) -> Int8WeightZeros:
    """Zeros of each i8/u8 weight constant that feeds a MatMul through the dequantization chain
    (Convert, Subtract zero point, Multiply scale), beside the fp32 ONNX MatMul weight.

    NNCF's INT8 weights are symmetric i8 for static quantization (a zero is 0) and asymmetric u8
    for `compress_weights` (a zero is the value equal to its channel's zero point, which is
    exactly where an fp32 zero lands); both are counted as such.
    """
    int8_zeros: dict[str, np.ndarray] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        found = _openvino_int8_weight(op.input_value(1).get_node())
        if found is not None:
            values, zero_point = found
            zero = values == zero_point
            # The constant is B of the MatMul; transpose_b means it is stored [out, in].
            if op.get_attributes().get("transpose_b"):
                zero = zero.T
            int8_zeros[onnx_weight_name(op.get_friendly_name())] = zero
    return compare_int8_zeros(
        "i8 weight values equal to 0, u8 values equal to their zero point",
        int8_zeros,
        onnx_matmul_weights(fp32_onnx),
    )


def _openvino_int8_weight(node, depth: int = 0) -> tuple[np.ndarray, np.ndarray | int] | None:
    """The i8/u8 constant behind a weight's dequantization chain, and its zero point."""
    kind = node.get_type_name()
    if kind == "Constant":
        if node.get_element_type().get_type_name() in ("i8", "u8"):
            return node.get_data(), 0
        return None
    # No Reshape or Transpose: the mask must stay in the constant's layout to be paired.
    if depth >= 5 or kind not in ("Convert", "Subtract", "Multiply"):
        return None
    found = _openvino_int8_weight(node.input_value(0).get_node(), depth + 1)
    if found is not None and kind == "Subtract":
        zero_point = _openvino_constant(node.input_value(1).get_node())
        if zero_point is not None:
            return found[0], zero_point
    return found


def _openvino_constant(node, depth: int = 0) -> np.ndarray | None:
    """A constant's values, through a Convert (NNCF stores u8 zero points and converts them)."""
    kind = node.get_type_name()
    if kind == "Constant":
        return np.asarray(node.get_data())
    if kind == "Convert" and depth < 2:
        return _openvino_constant(node.input_value(0).get_node(), depth + 1)
    return None
