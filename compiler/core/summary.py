"""What a quantizer did, as read back from the graph it wrote: one summary for every runtime."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Why an op type stays fp32 in bertc's BERT-safe recipe; only types present in a graph are reported.
FP32_REASONS: Mapping[str, str] = {
    "LayerNormalization": "its statistics need fp32; its input carries BERT's outlier channels",
    "Softmax": "attention probabilities span orders of magnitude that 8 bits cannot hold",
    "Erf": "GELU's non-linearity is cheap in fp32 and sensitive to rounding",
    "Gelu": "GELU's non-linearity is cheap in fp32 and sensitive to rounding",
    "Add": "residual additions carry the outlier channels (Bondarenko et al., 2021)",
    "Tanh": "the pooler's non-linearity (and tanh GELU's or Mish's) is cheap in fp32",
    "FastGelu": "tanh GELU's non-linearity is cheap in fp32 and sensitive to rounding",
    "BiasGelu": "GELU's non-linearity is cheap in fp32 and sensitive to rounding",
    "QuickGelu": "quick GELU's non-linearity is cheap in fp32 and sensitive to rounding",
    "Relu": "the FFN's ReLU is one comparison per element; int8 gains nothing",
    "Sigmoid": "SiLU's and quick GELU's non-linearity is cheap in fp32",
    "Softplus": "Mish's non-linearity is cheap in fp32 and sensitive to rounding",
    "Swish": "SiLU's non-linearity is cheap in fp32 and sensitive to rounding",
    "Mish": "Mish's non-linearity is cheap in fp32 and sensitive to rounding",
    "Pow": "tanh GELU's cube is element-wise and memory-bound; int8 gains nothing",
    "Clip": "a clipped activation's bound is element-wise and memory-bound",
    "Gemm": "the pooler and classifier run once per sequence; fp32 keeps the logits exact",
    "MatMul": "attention's activation-by-activation products have no weight to quantize",
    "Gather": (
        "the token-type table is tiny; the word embeddings are quantized, the position "
        "embeddings too but in ort-mobile's dynamic recipe (settings.position_embeddings)"
    ),
    "Div": "attention scaling is one division per score",
    "Mul": "element-wise scaling is memory-bound; int8 gains nothing",
}
# Op types whose int8 form is the point of quantizing (the compute or the bytes).
WEIGHTED_OP_TYPES = ("MatMul", "Gemm", "Gather", "MatMulInteger", "QLinearMatMul", "FullyConnected")


@dataclass(frozen=True)
class QuantizationSummary:
    """What ran in INT8 and what stayed fp32 and why, as found in the written graph."""

    mode: str
    recipe: str
    tool: str
    calibration_samples: int
    int8_ops: Mapping[str, int]
    fp32_ops: Mapping[str, int]
    fp32_reasons: Mapping[str, str]
    settings: Mapping[str, Any] = field(default_factory=dict)
    # What the recipe could not do as designed (e.g. no FFN output projection recognised).
    notes: tuple[str, ...] = ()


def tool_version(module_name: str) -> str:
    module = __import__(module_name)
    return f"{module_name} {module.__version__}"
