"""ONNX Runtime's quantization recipes, one frozen object per (mode, recipe).

Each object is what `quantize.quantize_onnx_runtime` / `quantize.quantize_fused_dynamic` is
called with and what the manifest records (`QuantizationRecipe.record`). `PORTABLE` serves the
`onnx` target (standard ops any ONNX runtime takes); `MOBILE` serves `ort-mobile`, whose dynamic
recipe runs on ONNX Runtime's fused transformer graph instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.compiler.core.recipes import (
    Calibration,
    QuantizationRecipe,
    RecipeRegistry,
    recorded,
)

STATIC, DYNAMIC, NONE = QuantizationMode.STATIC, QuantizationMode.DYNAMIC, QuantizationMode.NONE
BERT_SAFE, LIBRARY_DEFAULTS = Recipe.BERT_SAFE, Recipe.LIBRARY_DEFAULTS


@dataclass(frozen=True)
class OrtRecipe(QuantizationRecipe):
    """Settings of one `onnxruntime.quantization` call.

    api: "quantize_static", "quantize_dynamic", "fused_dynamic" (the transformer optimizer's
    fusions, SmoothQuant and a sensitivity search, then quantize_dynamic) or "" (fp32).
    library_defaults: call the quantizer bare, as a user would (a baseline, not bertc's recipe).
    """

    api: str = ""
    library_defaults: bool = False
    # bertc's recipe: weights per output channel in int8, MatMuls with constant weights and the
    # word/position tables quantized, everything else (FP32_REASONS) fp32.
    per_channel: bool = recorded(True)
    weight_type: str = recorded("QInt8")
    op_types_to_quantize: tuple[str, ...] = ("MatMul", "Gather")
    # The position-embedding table in int8 too (quantize.EMBEDDING_MIN_ROWS rows or more).
    # ORT quantizes a Gather's table per tensor; the fused dynamic recipe keeps it fp32
    # (`POSITION_TABLE_REASON`).
    position_embeddings_int8: bool = True
    # Static only: QDQ, MinMax ranges, MatMul outputs left float (they feed the bias and the
    # residual stream, where BERT's outlier channels live), GELU-fed MatMuls read 16 bits.
    quant_format: str = "QDQ"
    activation_type: str = "QUInt8"
    calibrate_method: str = "MinMax"
    matmul_outputs_quantized: bool = False
    sixteen_bit_ffn_outputs: bool = False

    def record(self) -> dict:
        """Library defaults record only the call: bertc chose none of the settings."""
        return dict(self.describe) if self.library_defaults else super().record()

    @property
    def fused(self) -> bool:
        """Whether the recipe quantizes ONNX Runtime's fused transformer graph."""
        return self.api == "fused_dynamic"


_STATIC = OrtRecipe(
    STATIC,
    BERT_SAFE,
    Calibration.REQUIRED,
    describe={
        "format": "QDQ",
        "activation_type": "QUInt8",
        "calibrate_method": "MinMax",
        "matmul_outputs": "not quantized",
    },
    api="quantize_static",
    sixteen_bit_ffn_outputs=True,
)
_DYNAMIC = OrtRecipe(
    DYNAMIC,
    BERT_SAFE,
    Calibration.NONE,
    describe={"format": "QOperator (dynamic)", "activation_type": "QUInt8 at run time"},
    api="quantize_dynamic",
)
_FUSED_DYNAMIC = OrtRecipe(
    DYNAMIC,
    BERT_SAFE,
    Calibration.OPTIONAL,
    describe={
        "format": "QOperator (dynamic) on ONNX Runtime's fused transformer graph",
        "activation_type": "QUInt8 at run time",
    },
    api="fused_dynamic",
    op_types_to_quantize=("MatMul", "Attention", "Gather"),
    position_embeddings_int8=False,
)


# Issue 19, MiniLM-L6 SST-2, onnxruntime 1.32, emulated aarch64 vs x86: float kernels round
# differently per ISA (the embedding LayerNorm's output already differs by up to 2.4e-6), so
# dynamic INT8 flips some activation int8 steps differently on each and the quantization noise
# becomes a different logit. The per-tensor int8 position table adds such noise to every token:
# fp32, max |Δ logit| aarch64 vs x86 0.096 → 0.047 on verify's 50 SST-2 dev sentences (0.049
# on 150; plain quantize_dynamic: 0.092), 0.137 → 0.072 on 300 others (a tail: 7 of 300 still
# above 0.05), x86 agreement with fp32 unchanged (99.20%), mean |Δ logit| vs fp32 0.038 →
# 0.035, +0.6 MB (512×384 fp32 rows), the same latency.
POSITION_TABLE_REASON = (
    "position-embedding table fp32: its per-tensor int8 noise doubled the worst aarch64-vs-x86 "
    "logit difference of dynamic INT8"
)


def _library_defaults(mode: QuantizationMode) -> OrtRecipe:
    return OrtRecipe(
        mode,
        LIBRARY_DEFAULTS,
        Calibration.REQUIRED if mode is STATIC else Calibration.NONE,
        describe={"api": f"quantize_{mode.value} with onnxruntime's defaults"},
        api=f"quantize_{mode.value}",
        library_defaults=True,
    )


def _fp32(recipe: Recipe) -> OrtRecipe:
    return OrtRecipe(NONE, recipe, Calibration.NONE)


PORTABLE: RecipeRegistry[OrtRecipe] = RecipeRegistry(
    "onnx",
    {
        (STATIC, BERT_SAFE): _STATIC,
        (DYNAMIC, BERT_SAFE): _DYNAMIC,
        (STATIC, LIBRARY_DEFAULTS): _library_defaults(STATIC),
        (DYNAMIC, LIBRARY_DEFAULTS): _library_defaults(DYNAMIC),
        (NONE, BERT_SAFE): _fp32(BERT_SAFE),
        (NONE, LIBRARY_DEFAULTS): _fp32(LIBRARY_DEFAULTS),
    },
)
MOBILE: RecipeRegistry[OrtRecipe] = PORTABLE.with_overrides("ort-mobile", _FUSED_DYNAMIC)
