"""OpenVINO's quantization recipes (NNCF), one frozen object per (mode, recipe).

Each object is what `quantize.quantize_with_nncf` is called with and what the manifest records.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.compiler.core.recipes import Calibration, QuantizationRecipe, RecipeRegistry

STATIC, DYNAMIC, NONE = QuantizationMode.STATIC, QuantizationMode.DYNAMIC, QuantizationMode.NONE
BERT_SAFE, LIBRARY_DEFAULTS = Recipe.BERT_SAFE, Recipe.LIBRARY_DEFAULTS
# The CPU plugin's precision for the floating-point parts: on CPUs with BF16 it would otherwise
# run them in bf16, which on MiniLM-L6 SST-2 cost 0.6 point of agreement.
INFERENCE_PRECISION = "f32"


@dataclass(frozen=True)
class OvRecipe(QuantizationRecipe):
    """Settings of one NNCF call.

    api: "nncf.quantize" (static INT8 with calibration), "nncf.compress_weights" (int8 weights;
    the CPU plugin quantizes activations at run time) or "" (fp32 IR).
    model_type: NNCF's ModelType name ("TRANSFORMER": SmoothQuant, LayerNorm/Softmax/GELU kept in
    floating point) or None for NNCF's default.
    """

    api: str = ""
    model_type: str | None = None
    compress_mode: str | None = None

    def record(self) -> dict:
        return {**super().record(), "inference_precision_hint": INFERENCE_PRECISION}


def _compress_weights(recipe: Recipe) -> OvRecipe:
    return OvRecipe(
        DYNAMIC,
        recipe,
        Calibration.NONE,
        describe={"api": "nncf.compress_weights", "mode": "INT8_ASYM"},
        api="nncf.compress_weights",
        compress_mode="INT8_ASYM",
    )


RECIPES: RecipeRegistry[OvRecipe] = RecipeRegistry(
    "openvino",
    {
        (STATIC, BERT_SAFE): OvRecipe(
            STATIC,
            BERT_SAFE,
            Calibration.REQUIRED,
            describe={
                "api": "nncf.quantize",
                "model_type": "TRANSFORMER",
                "preset": "MIXED (default for transformers)",
            },
            api="nncf.quantize",
            model_type="TRANSFORMER",
        ),
        (STATIC, LIBRARY_DEFAULTS): OvRecipe(
            STATIC,
            LIBRARY_DEFAULTS,
            Calibration.REQUIRED,
            describe={"api": "nncf.quantize", "model_type": "none (NNCF default)"},
            api="nncf.quantize",
        ),
        # NNCF has one weight-compression call: both recipes of dynamic INT8 are that call.
        (DYNAMIC, BERT_SAFE): _compress_weights(BERT_SAFE),
        (DYNAMIC, LIBRARY_DEFAULTS): _compress_weights(LIBRARY_DEFAULTS),
        (NONE, BERT_SAFE): OvRecipe(NONE, BERT_SAFE, Calibration.NONE),
        (NONE, LIBRARY_DEFAULTS): OvRecipe(NONE, LIBRARY_DEFAULTS, Calibration.NONE),
    },
)
