"""What `bertc compile` takes besides the model and the output directory, checked when built.

Light on purpose (no torch, no runtime): the CLI and the Python API build and check options
before anything heavy is imported, and `from bertc.compiler import CompileOptions` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from bertc.compiler.core.budget import DEFAULT_MAX_DROP
from bertc.compiler.core.enums import QuantizationMode, Recipe, TokenizerMode
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.graph import DEFAULT_PARITY_ATOL

# Truncation length of the artifact's tokenizer; capped by the checkpoint's position table.
DEFAULT_MAX_SEQUENCE_LENGTH = 128
# Seeded train sentences for static INT8 ranges (ORT's and NNCF's calibration).
DEFAULT_CALIBRATION_SAMPLES = 300
# Threads past this only cost memory (each runtime thread keeps its own scratch: 100,000 asked
# for 11,000 threads and 16 GB before the kernel stopped it); the loader keeps the same cap.
MAX_THREADS = 256

E = TypeVar("E", bound=Enum)


def as_enum(kind: type[E], value: Any, name: str) -> E:
    """`value` as a member of `kind` (its value string accepted); UsageError naming the choices."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise UsageError(f"{name} must be one of {choices}; got {value!r}") from None


def sequence_length(requested: int | None, position_limit: Any) -> int:
    """The tokenizer's truncation length in tokens: `requested`, or by default
    DEFAULT_MAX_SEQUENCE_LENGTH capped by the checkpoint's `max_position_embeddings`.

    Raises UsageError (exit 2) when a requested length is below 1 or above the position table:
    the model has no position embedding for the tokens past it."""
    limit = position_limit if isinstance(position_limit, int) and position_limit > 0 else None
    if requested is None:
        return min(DEFAULT_MAX_SEQUENCE_LENGTH, limit or DEFAULT_MAX_SEQUENCE_LENGTH)
    positive_int(requested, "--max-sequence-length")
    if limit is not None and requested > limit:
        raise UsageError(
            f"--max-sequence-length {requested} is longer than the checkpoint's "
            f"max_position_embeddings ({limit}); give at most {limit}"
        )
    return requested


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a whole number of at least 1; got {value!r}")
    return value


def _number_at_least(value: Any, low: float, high: float | None, name: str) -> float:
    """`value` as a float in [low, high]; UsageError naming the option otherwise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < low
        or (high is not None and value > high)
    ):
        span = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        raise UsageError(f"{name} must be a number {span}; got {value!r}")
    return abs(float(value)) if value == 0 else float(value)  # -0 is 0


@dataclass(frozen=True)
class CompileOptions:
    """Everything `bertc compile` takes besides the model and the output directory.

    Strings are accepted for the enums (`quantization="dynamic"`); every value is checked here,
    so a bad one is a UsageError (exit 2) before any model is read. `quantization=None` builds
    the target's default mode (`Target.default_quantization`): the compile settles it with
    `with_quantization_default` once the target is known.
    """

    target: str
    task: str | None = None
    data_dir: Path | None = None
    # None: the target's default (ort-mobile: dynamic; onnx, openvino: static).
    quantization: QuantizationMode | None = None
    recipe: Recipe = Recipe.BERT_SAFE
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    # None: DEFAULT_MAX_SEQUENCE_LENGTH, capped by the checkpoint's position table.
    max_sequence_length: int | None = None
    parity_tolerance: float = DEFAULT_PARITY_ATOL
    allow_pickle: bool = False
    overwrite: bool = False
    # None: fused, falling back to ids-in (with a note) where the runtime cannot convert it.
    tokenizer: TokenizerMode | None = None
    allow_tokenizer_mismatch: bool = False
    # A private key (PEM): the staged artifact is signed (model.sig) before it is moved in.
    sign_key: Path | None = None
    # The accuracy budget (compiler/core/budget.py): points the task's headline metric may drop
    # on the held-out train slice (None: no search, the recipe as it is), and the least share
    # of the slice with fp32's class (regression: Pearson with fp32; None: the task kind's
    # default). keep_best writes the best candidate, marked, when none meets the budget.
    max_drop: float | None = DEFAULT_MAX_DROP
    min_agreement: float | None = None
    keep_best: bool = False
    # Set by `with_quantization_default` (the compile, once the target is known): True when
    # `quantization` is the target's default because no mode was asked for.
    quantization_is_default: bool = False

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.target, str) or not self.target:
            raise UsageError(
                f"target must name a target (openvino, ort-mobile, onnx); got {self.target!r}"
            )
        if self.task is not None and (not isinstance(self.task, str) or not self.task.strip()):
            raise UsageError(
                f"task must name a GLUE task (e.g. sst2) or be None; got {self.task!r}"
            )
        if self.data_dir is not None:
            put("data_dir", Path(self.data_dir))
        if self.sign_key is not None:
            put("sign_key", Path(self.sign_key))
        if self.quantization is not None:
            put("quantization", as_enum(QuantizationMode, self.quantization, "quantization"))
        put("recipe", as_enum(Recipe, self.recipe, "recipe"))
        if self.tokenizer is not None:
            put("tokenizer", as_enum(TokenizerMode, self.tokenizer, "tokenizer"))
        positive_int(self.calibration_samples, "calibration_samples (--calibration-samples)")
        if self.max_sequence_length is not None:
            positive_int(self.max_sequence_length, "max_sequence_length (--max-sequence-length)")
        for flag in ("allow_pickle", "overwrite", "allow_tokenizer_mismatch", "keep_best"):
            if not isinstance(getattr(self, flag), bool):
                raise UsageError(f"{flag} must be True or False; got {getattr(self, flag)!r}")
        if self.max_drop is None and (self.keep_best or self.min_agreement is not None):
            raise UsageError(
                "--keep-best and --min-agreement belong to the accuracy budget, which "
                "--max-drop none turns off: drop them, or give --max-drop a number"
            )
        if self.max_drop is not None:
            put("max_drop", _number_at_least(self.max_drop, 0.0, None, "max_drop (--max-drop)"))
        if self.min_agreement is not None:
            put(
                "min_agreement",
                _number_at_least(self.min_agreement, 0.0, 1.0, "min_agreement (--min-agreement)"),
            )
        tolerance = self.parity_tolerance
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, (int, float))
            or not (math.isfinite(tolerance) and tolerance >= 0)
        ):
            raise UsageError(f"parity_tolerance must be a number >= 0; got {tolerance!r}")

    def with_quantization_default(self, default: QuantizationMode) -> CompileOptions:
        """These options with `quantization` settled: as asked for, or else `default` (the
        target's `default_quantization`), and `quantization_is_default` saying which."""
        if self.quantization is not None:
            return self
        return dataclasses.replace(self, quantization=default, quantization_is_default=True)

    def quantization_choice(self, default: QuantizationMode) -> dict[str, Any]:
        """The manifest's `quantization_choice`: the mode built, the target's default, and
        whether the mode came from `--quantization` or from that default."""
        mode = self.quantization if self.quantization is not None else default
        return {
            "mode": QuantizationMode(mode).value,
            "target_default": default.value,
            "chosen_by": "target default"
            if self.quantization_is_default or self.quantization is None
            else "--quantization",
        }


@dataclass(frozen=True)
class CompileResult:
    """The artifact directory a compile wrote, and its manifest."""

    artifact_dir: Path
    manifest: Mapping[str, Any]
