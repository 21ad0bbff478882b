"""The recipe registries: one frozen object per (mode, recipe) says what needs calibration, is
what the quantizer is called with and is what the manifest records."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.recipes import Calibration, RecipeRegistry
from bertc.targets import get_target
from bertc.targets.ort import recipes as ort_recipes
from bertc.targets.ov import recipes as ov_recipes

PAIRS = list(itertools.product(QuantizationMode, Recipe))


@pytest.mark.parametrize("target", ["onnx", "ort-mobile", "openvino"])
@pytest.mark.parametrize(("mode", "recipe"), PAIRS)
def test_every_target_offers_every_pair_under_its_own_key(target, mode, recipe) -> None:
    found = get_target(target).recipes.get(mode, recipe)
    assert found.key == (mode, recipe)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.api = "something else"  # type: ignore[misc]


@pytest.mark.parametrize("target", ["onnx", "ort-mobile", "openvino"])
def test_calibration_is_required_exactly_by_static_int8(target) -> None:
    registry = get_target(target).recipes
    for mode, recipe in PAIRS:
        need = registry.get(mode, recipe).calibration
        assert (need is Calibration.REQUIRED) == (mode is QuantizationMode.STATIC)


def test_only_ort_mobiles_dynamic_recipe_runs_on_the_fused_graph_and_measures_on_sentences():
    mobile = ort_recipes.MOBILE.get(QuantizationMode.DYNAMIC)
    portable = ort_recipes.PORTABLE.get(QuantizationMode.DYNAMIC)
    assert mobile.fused and mobile.calibration is Calibration.OPTIONAL
    assert not portable.fused and portable.calibration is Calibration.NONE
    assert [r.key for r in ort_recipes.MOBILE if r.fused] == [mobile.key]


def test_library_defaults_record_only_the_call() -> None:
    bare = ort_recipes.PORTABLE.get(QuantizationMode.STATIC, Recipe.LIBRARY_DEFAULTS)
    assert bare.record() == {"api": "quantize_static with onnxruntime's defaults"}
    safe = ort_recipes.PORTABLE.get(QuantizationMode.STATIC)
    assert safe.record() == {
        "format": "QDQ",
        "activation_type": "QUInt8",
        "calibrate_method": "MinMax",
        "matmul_outputs": "not quantized",
        "per_channel": True,
        "weight_type": "QInt8",
    }
    assert ov_recipes.RECIPES.get(QuantizationMode.STATIC).record()["model_type"] == "TRANSFORMER"


def test_a_registry_refuses_a_recipe_filed_under_another_key_and_names_what_it_offers() -> None:
    static = ort_recipes.PORTABLE.get(QuantizationMode.STATIC)
    with pytest.raises(ValueError, match="registered under"):
        RecipeRegistry("x", {(QuantizationMode.DYNAMIC, Recipe.BERT_SAFE): static})
    only = RecipeRegistry("x", {static.key: static})
    with pytest.raises(UsageError, match="x has no --quantization dynamic .* offers: static/bert"):
        only.get(QuantizationMode.DYNAMIC)
