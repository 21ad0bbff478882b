"""Sparsity analysis: how many zeros the encoder's weight matrices hold, in which pattern, and
whether INT8 kept them.

Patterns are read along torch's layout, [out_features, in_features]: an N:M group is M
consecutive input weights of one row (what sparse tensor cores and Intel's sparse-1_2 prune), a
4x1 block is 4 consecutive output rows of one input column. Everything here is plain numpy over
weights that already exist; nothing quantizes or rewrites a graph.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Semi-structured patterns in the order they are preferred when several hold: the smallest
# N/M ratio first, ties to the smallest M (all three are 50%, so 1:2 before 2:4 before 4:8).
N_M_PATTERNS = tuple(sorted(((1, 2), (2, 4), (4, 8)), key=lambda nm: (nm[0] / nm[1], nm[1])))
BLOCK_ROWS = 4
BLOCK_PATTERN = f"block:{BLOCK_ROWS}x1"
# Below this zero fraction a matrix counts as dense (a few exact zeros happen in trained weights).
UNSTRUCTURED_MIN_SPARSITY = 0.01
DENSE = "dense"
UNSTRUCTURED = "unstructured"
MIXED = "mixed"
NO_MATRICES = "none"
ENCODER_LAYER_MARK = "encoder.layer."
ZLIB_LEVEL = 6
_ZLIB_CHUNK = 1 << 22


@dataclass(frozen=True)
class MatrixSparsity:
    """One encoder Linear weight: its name from `encoder.layer.` on, shape, zeros and pattern."""

    name: str
    shape: tuple[int, int]
    zeros: int
    sparsity: float
    pattern: str

    @property
    def parameters(self) -> int:
        return self.shape[0] * self.shape[1]


@dataclass(frozen=True)
class SparsityReport:
    """Every encoder Linear weight, and the model's totals and the pattern they share."""

    parameters: int
    zeros: int
    sparsity: float
    pattern: str
    matrices: tuple[MatrixSparsity, ...]


@dataclass(frozen=True)
class Int8MatrixZeros:
    """One INT8 weight's zeros beside its fp32 weight's (None where it could not be paired).

    `fp32_zeros_kept`: fp32 zeros that are still zero in INT8; `rounded_to_zero`: INT8 zeros
    where fp32 was non-zero (weights under half a quantization step). Symmetric rounding should
    keep every zero; it also adds the second kind, so the counts differ on large matrices.
    """

    name: str
    fp32_zeros: int | None
    int8_zeros: int
    fp32_zeros_kept: int | None
    rounded_to_zero: int | None
    counts_equal: bool


@dataclass(frozen=True)
class Int8WeightZeros:
    """Whether quantization kept the zeros of every INT8 MatMul weight; `counted` says what a
    zero is in the INT8 tensor (0, or the channel's zero point for asymmetric weights)."""

    counted: str
    fp32_zeros: int
    int8_zeros: int
    fp32_zeros_kept: int
    rounded_to_zero: int
    all_zeros_kept: bool
    counts_equal: bool
    matrices: tuple[Int8MatrixZeros, ...]


def is_encoder_linear_weight(name: str, ndim: int) -> bool:
    """A 2-D `.weight` inside an encoder layer: the Linear layers (LayerNorm weights are 1-D)."""
    return ENCODER_LAYER_MARK in name and name.endswith(".weight") and ndim == 2


def encoder_name(name: str) -> str:
    """The name from `encoder.layer.` on, the same whether it came from a checkpoint, the
    export wrapper's module (`model.bert.encoder...`) or a graph node path."""
    return name[name.index(ENCODER_LAYER_MARK) :] if ENCODER_LAYER_MARK in name else name


def holds_n_m(weight: np.ndarray, n: int, m: int) -> bool:
    """Every group of `m` consecutive input weights of a row has at most `n` non-zeros."""
    rows, columns = weight.shape
    if columns % m:
        return False
    nonzeros = np.count_nonzero(weight.reshape(rows, columns // m, m), axis=-1)
    return bool((nonzeros <= n).all())


def holds_blocks(weight: np.ndarray, rows_per_block: int = BLOCK_ROWS) -> bool:
    """Some zeros, and every zero lies in an all-zero block of `rows_per_block` output rows × 1
    input column."""
    rows, columns = weight.shape
    if rows % rows_per_block or not (weight == 0).any():
        return False
    zeros = (weight == 0).reshape(rows // rows_per_block, rows_per_block, columns).sum(axis=1)
    return bool(((zeros == 0) | (zeros == rows_per_block)).all())


def detect_pattern(weight: np.ndarray) -> str:
    """`1:2`, `2:4`, `4:8`, `block:4x1`, `unstructured` or `dense` for a [out, in] matrix."""
    weight = np.asarray(weight)
    if weight.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {weight.shape}")
    for n, m in N_M_PATTERNS:
        if holds_n_m(weight, n, m):
            return f"{n}:{m}"
    if holds_blocks(weight):
        return BLOCK_PATTERN
    sparsity = 1.0 - np.count_nonzero(weight) / weight.size if weight.size else 0.0
    return UNSTRUCTURED if sparsity >= UNSTRUCTURED_MIN_SPARSITY else DENSE


def matrix_sparsity(name: str, weight: np.ndarray) -> MatrixSparsity:
    weight = np.asarray(weight)
    zeros = int(weight.size - np.count_nonzero(weight))
    return MatrixSparsity(
        name=encoder_name(name),
        shape=(int(weight.shape[0]), int(weight.shape[1])),
        zeros=zeros,
        sparsity=round(zeros / weight.size, 6) if weight.size else 0.0,
        pattern=detect_pattern(weight),
    )


def summarise(matrices: Iterable[MatrixSparsity]) -> SparsityReport:
    """The model's totals, sorted by name; the pattern is the matrices' common one or `mixed`."""
    ordered = tuple(sorted(matrices, key=lambda matrix: _natural_key(matrix.name)))
    parameters = sum(matrix.parameters for matrix in ordered)
    zeros = sum(matrix.zeros for matrix in ordered)
    patterns = {matrix.pattern for matrix in ordered}
    pattern = NO_MATRICES if not patterns else patterns.pop() if len(patterns) == 1 else MIXED
    return SparsityReport(
        parameters=parameters,
        zeros=zeros,
        sparsity=round(zeros / parameters, 6) if parameters else 0.0,
        pattern=pattern,
        matrices=ordered,
    )


def _natural_key(name: str) -> tuple[Any, ...]:
    """`encoder.layer.2` before `encoder.layer.10`."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split("."))


def analyse_weights(named_weights: Iterable[tuple[str, np.ndarray]]) -> SparsityReport:
    """The report over the encoder Linear weights among `(name, array)` pairs."""
    return summarise(
        matrix_sparsity(name, weight)
        for name, weight in named_weights
        if is_encoder_linear_weight(name, np.ndim(weight))
    )


def analyse_module(module: Any) -> SparsityReport:
    """The report over a torch module's encoder Linear weights (`named_parameters`)."""
    return analyse_weights(
        (name, parameter.detach().float().cpu().numpy())
        for name, parameter in module.named_parameters()
        if is_encoder_linear_weight(name, parameter.dim())
    )


def analyse_safetensors(paths: Sequence[Path]) -> SparsityReport:
    """The report over the encoder Linear weights stored in safetensors files."""
    from safetensors import safe_open

    def weights():
        for path in paths:
            with safe_open(str(path), framework="pt") as handle:
                for name in sorted(handle.keys()):
                    if is_encoder_linear_weight(name, len(handle.get_slice(name).get_shape())):
                        yield name, handle.get_tensor(name).float().numpy()

    return analyse_weights(weights())


# --- INT8: did quantization keep the zeros? ------------------------------------------------


def compare_int8_zeros(
    counted: str, int8_zero_masks: Mapping[str, np.ndarray], fp32: Mapping[str, np.ndarray]
) -> Int8WeightZeros:
    """Pair each INT8 weight's zero mask (in the fp32 weight's layout) with the fp32 weight by
    name; an unpaired weight makes both verdicts false."""
    matrices = tuple(
        _compare_matrix(name, mask, fp32.get(name))
        for name, mask in sorted(int8_zero_masks.items(), key=lambda item: _natural_key(item[0]))
    )
    paired = bool(matrices) and all(matrix.fp32_zeros_kept is not None for matrix in matrices)
    return Int8WeightZeros(
        counted=counted,
        fp32_zeros=sum(matrix.fp32_zeros or 0 for matrix in matrices),
        int8_zeros=sum(matrix.int8_zeros for matrix in matrices),
        fp32_zeros_kept=sum(matrix.fp32_zeros_kept or 0 for matrix in matrices),
        rounded_to_zero=sum(matrix.rounded_to_zero or 0 for matrix in matrices),
        all_zeros_kept=paired and all(m.fp32_zeros_kept == m.fp32_zeros for m in matrices),
        counts_equal=paired and all(matrix.counts_equal for matrix in matrices),
        matrices=matrices,
    )


def _compare_matrix(name: str, int8_zero: np.ndarray, fp32: np.ndarray | None) -> Int8MatrixZeros:
    int8_zeros = int(np.count_nonzero(int8_zero))
    if fp32 is None or fp32.shape != int8_zero.shape:
        fp32_zeros = None if fp32 is None else int(fp32.size - np.count_nonzero(fp32))
        return Int8MatrixZeros(name, fp32_zeros, int8_zeros, None, None, fp32_zeros == int8_zeros)
    fp32_zero = fp32 == 0
    kept = int(np.count_nonzero(fp32_zero & int8_zero))
    fp32_zeros = int(np.count_nonzero(fp32_zero))
    return Int8MatrixZeros(
        name, fp32_zeros, int8_zeros, kept, int8_zeros - kept, fp32_zeros == int8_zeros
    )


def onnx_weight_name(node_name: str) -> str:
    """A MatMul node's path as a weight name: `/model/encoder/layer.0/attention/self/query/
    MatMul` → `encoder.layer.0.attention.self.query.weight` (other nodes keep their path)."""
    path = node_name.strip("/").replace("/", ".")
    for suffix in (".MatMul_quant", ".MatMul"):
        if path.endswith(suffix) and ENCODER_LAYER_MARK in path:
            return encoder_name(path.removesuffix(suffix)) + ".weight"
    return node_name


def onnx_int8_weight_zeros(fp32_onnx: Path, int8_onnx: Path) -> Int8WeightZeros:
    """Zeros of each int8 MatMul weight of an onnxruntime-quantized graph (QDQ: an int8
    initializer through DequantizeLinear; dynamic: MatMulInteger's int8 initializer), beside the
    zeros of the fp32 weight of the same MatMul node in the graph before quantization.

    bertc's recipe quantizes weights symmetrically (zero point 0), so a zero is the value 0.
    """
    import onnx
    from onnx import numpy_helper

    quantized = onnx.load(str(int8_onnx))
    initializers = {init.name: init for init in quantized.graph.initializer}
    producers = {output: node for node in quantized.graph.node for output in node.output}
    int8_zeros: dict[str, np.ndarray] = {}
    for node in quantized.graph.node:
        if node.op_type not in ("MatMul", "MatMulInteger") or len(node.input) < 2:
            continue
        weight = node.input[1]
        producer = producers.get(weight)
        if producer is not None and producer.op_type == "DequantizeLinear":
            weight = producer.input[0]
        init = initializers.get(weight)
        if init is None or init.data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            continue
        array = numpy_helper.to_array(init)
        zero_point = _onnx_zero_point(node, producer, initializers)
        # Both graphs hold MatMul weights as [in, out], so the masks line up.
        int8_zeros[onnx_weight_name(node.name)] = array == zero_point
    return compare_int8_zeros(
        "int8 weight values equal to their zero point (0)",
        int8_zeros,
        onnx_matmul_weights(fp32_onnx),
    )


def _onnx_zero_point(node, dequantize, initializers) -> np.ndarray | int:
    """The weight's zero point (broadcast along the output channel), 0 where none is given."""
    from onnx import numpy_helper

    if dequantize is not None and dequantize.op_type == "DequantizeLinear":
        name = dequantize.input[2] if len(dequantize.input) > 2 else ""
    else:
        name = node.input[3] if node.op_type == "MatMulInteger" and len(node.input) > 3 else ""
    if name not in initializers:
        return 0
    zero_point = numpy_helper.to_array(initializers[name])
    return zero_point if zero_point.ndim == 0 else zero_point.reshape(1, -1)  # [in, out] weights


def onnx_matmul_weights(path: Path) -> dict[str, np.ndarray]:
    """The constant weight of each MatMul of an fp32 ONNX graph, by the node's weight name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {init.name: init for init in model.graph.initializer}
    return {
        onnx_weight_name(node.name): numpy_helper.to_array(initializers[node.input[1]])
        for node in model.graph.node
        if node.op_type == "MatMul" and node.input[1] in initializers
    }


# --- Download size ----------------------------------------------------------------------------


def zlib_compressed_bytes(path: Path, level: int = ZLIB_LEVEL) -> int:
    """The file's size after zlib at `level`, streamed so a large model.bin is not held twice."""
    compressor = zlib.compressobj(level)
    total = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_ZLIB_CHUNK):
            total += len(compressor.compress(chunk))
    return total + len(compressor.flush())
