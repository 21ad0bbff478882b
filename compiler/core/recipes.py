"""Quantization recipes as registered, frozen config objects, one registry per runtime.

In the style of ONNX Runtime's quantization registries: a recipe is looked up by the user's
(`--quantization`, `--recipe`) pair, and the one object says whether the build needs calibration
sentences, is what the runtime's quantizer is called with, and is what the manifest records, so
the three cannot drift apart. Each runtime package subclasses `QuantizationRecipe` with the
settings its quantizer takes (`targets/ort/recipes.py`, `targets/ov/recipes.py`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.compiler.core.errors import UsageError


class Calibration(str, enum.Enum):
    """What a recipe does with calibration sentences (a seeded sample of the task's train split)."""

    NONE = "none"  # never reads them
    OPTIONAL = "optional"  # measures its choices on them when given; says so in a note when not
    REQUIRED = "required"  # cannot run without them (static INT8 ranges)


@dataclass(frozen=True)
class QuantizationRecipe:
    """One (mode, recipe) of one runtime. Subclasses add their quantizer's settings as fields;
    `record()` is the manifest's `quantization.settings` before run-time counts are added."""

    mode: QuantizationMode
    recipe: Recipe
    calibration: Calibration
    # What the manifest says about the call, beyond the fields (e.g. "api").
    describe: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> tuple[QuantizationMode, Recipe]:
        return (self.mode, self.recipe)

    @property
    def quantizes(self) -> bool:
        return self.mode is not QuantizationMode.NONE

    def record(self) -> dict[str, Any]:
        """The settings the manifest records: `describe` plus each recorded field's value."""
        recorded = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.metadata.get("record")
        }
        return {**dict(self.describe), **recorded}


def recorded(default: Any) -> Any:
    """A recipe field the manifest records under its own name."""
    return dataclasses.field(default=default, metadata={"record": True})


R = TypeVar("R", bound=QuantizationRecipe)


class RecipeRegistry(Generic[R]):
    """The recipes one runtime (or one target of it) offers, keyed by (mode, recipe)."""

    def __init__(self, runtime: str, recipes: Mapping[tuple[QuantizationMode, Recipe], R]):
        self.runtime = runtime
        self._recipes = dict(recipes)
        for key, recipe in self._recipes.items():
            if recipe.key != key:
                raise ValueError(f"{runtime}: recipe registered under {key} is for {recipe.key}")

    def get(self, mode: QuantizationMode, recipe: Recipe = Recipe.BERT_SAFE) -> R:
        """The registered recipe; UsageError (exit 2) naming the ones offered otherwise."""
        try:
            return self._recipes[(mode, recipe)]
        except KeyError:
            offered = ", ".join(f"{m.value}/{r.value}" for m, r in self._recipes)
            raise UsageError(
                f"{self.runtime} has no --quantization {mode.value} --recipe {recipe.value}; "
                f"it offers: {offered}"
            ) from None

    def with_overrides(self, runtime: str, *replacements: R) -> RecipeRegistry[R]:
        """A copy with some recipes replaced (a target that differs from its runtime's default)."""
        return RecipeRegistry(
            runtime, {**self._recipes, **{recipe.key: recipe for recipe in replacements}}
        )

    def __iter__(self) -> Iterator[R]:
        return iter(self._recipes.values())
