"""The feed-forward activations (`hidden_act`) bertc compiles, and how each looks in a graph.

Every recipe finds the FFN output projections (the weight MatMuls that read the activation,
whose inputs carry BERT's widest ranges) through these tables, so a variant is either known to
all of them or refused before export. Measured exports: torch.onnx (TorchScript, opset 17),
onnxruntime 1.32's transformer optimizer, OpenVINO 2026.4's ONNX frontend.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# hidden_act (transformers' ACT2FN names) -> the ONNX op types its export contains.
FFN_ACTIVATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "gelu": ("Erf",),
        "gelu_python": ("Erf",),
        "gelu_10": ("Erf", "Clip"),
        "gelu_new": ("Tanh", "Pow"),
        "gelu_accurate": ("Tanh", "Pow"),
        "gelu_fast": ("Tanh",),
        "gelu_pytorch_tanh": ("Tanh",),
        "gelu_python_tanh": ("Tanh",),
        "quick_gelu": ("Sigmoid",),
        "silu": ("Sigmoid",),
        "swish": ("Sigmoid",),
        "relu": ("Relu",),
        "mish": ("Softplus", "Tanh"),
    }
)
SUPPORTED_HIDDEN_ACTS: tuple[str, ...] = tuple(sorted(FFN_ACTIVATIONS))

# ONNX Runtime's fused forms (transformer optimizer: erf GELU -> Gelu, tanh GELU -> FastGelu,
# x*sigmoid(1.702x) -> QuickGelu; BiasGelu when its fusion is on) and ONNX's own Gelu (opset 20).
FUSED_ACTIVATION_OP_TYPES = ("Gelu", "FastGelu", "BiasGelu", "QuickGelu")
# Every op type that marks an FFN activation in an exported or fused ONNX graph.
ACTIVATION_OP_TYPES: frozenset[str] = frozenset(
    {op for ops in FFN_ACTIVATIONS.values() for op in ops} | set(FUSED_ACTIVATION_OP_TYPES)
) - {"Pow", "Clip"}
# Element-wise ops an activation is built of: the walk back from a MatMul's input crosses these
# and stops at anything else (LayerNormalization, Reshape, another MatMul, Softmax, ...).
ELEMENTWISE_OP_TYPES: frozenset[str] = ACTIVATION_OP_TYPES | {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Clip",
    "Neg",
    "Exp",
    "Abs",
}
# OpenVINO's ONNX frontend fuses each variant into one op (tanh GELU: Gelu in tanh mode,
# quick_gelu/silu/swish: Swish, mish: Mish; gelu_10's Clip stays a Clamp after the Gelu).
OPENVINO_ACTIVATION_TYPES = ("Gelu", "Swish", "Mish", "Relu")
