"""The compiler's side of the accuracy budget: the held-out slice, its fp32 PyTorch reference,
and the SearchRequest handed to the target (compiler/core/budget.py holds the search's rules,
the targets its candidates).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from bertc.calibration import Example, GlueTask, load_examples
from bertc.calibration.slices import held_out_slice, scorer
from bertc.compiler.core.budget import (
    MIN_SLICE,
    SLICE_SAMPLES,
    Budget,
    SearchRequest,
    SliceFigures,
)
from bertc.compiler.core.enums import QuantizationMode
from bertc.compiler.core.errors import DataError, UsageError
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.loading import HEAD_ENCODER, LoadedModel
from bertc.compiler.options import CompileOptions


@dataclass(frozen=True)
class SlicePlan:
    """The held-out slice a search will score on, or why no search runs (`reason`)."""

    examples: tuple[Example, ...] = ()
    reason: str | None = None


def plan_slice(
    task: GlueTask | None, options: CompileOptions, head: str, calibration_seed: int
) -> SlicePlan:
    """The slice for `options`' budget: train examples after the calibration sample in the same
    seeded shuffle, at most SLICE_SAMPLES. No search (a reason for the manifest's notes) when the
    budget is off, the build is fp32, the model is a bare encoder, there is no task or train
    split, or fewer than MIN_SLICE examples are left after the calibration sample."""
    if options.max_drop is None:
        return SlicePlan(reason=None)
    if options.quantization is QuantizationMode.NONE:
        return SlicePlan(reason=None)
    if head == HEAD_ENCODER:
        return SlicePlan(reason="no accuracy-budget search: a sentence encoder has no task metric")
    if task is None:
        return SlicePlan(reason="no accuracy-budget search: no task (pass --task and --data-dir)")
    try:
        train = load_examples(task, "train", options.data_dir)
    except DataError as error:
        if options.data_dir is not None:
            raise
        return SlicePlan(reason=f"no accuracy-budget search: no train split ({error})")
    examples = held_out_slice(train, options.calibration_samples, SLICE_SAMPLES, calibration_seed)
    if len(examples) < MIN_SLICE:
        return SlicePlan(
            reason=(
                f"no accuracy-budget search: {len(examples)} train examples are left after the "
                f"{options.calibration_samples} calibration samples; the budget needs "
                f"{MIN_SLICE} held out"
            )
        )
    return SlicePlan(tuple(examples))


def label_columns(loaded: LoadedModel, task: GlueTask) -> tuple[list[int] | None, str | None]:
    """The model's output column of each task label, matched by name as `bertc verify` matches
    them (`heads.task_columns`), or None and why no search can score this head: a multi-label
    head has no argmax, and names that do not match the task's would score a permutation."""
    from bertc.compiler.heads import task_columns

    if loaded.config.get("problem_type") == "multi_label_classification":
        return None, "no accuracy-budget search: a multi-label head has no single class to agree on"
    try:
        return task_columns(loaded.label_map, task, loaded.source), None
    except UsageError as error:
        return None, f"no accuracy-budget search: {error}"


def search_request(
    loaded: LoadedModel,
    task: GlueTask,
    examples: Sequence[Example],
    options: CompileOptions,
    encode: Callable[[LoadedModel, Sequence[Example]], list[Mapping[str, np.ndarray]]],
    progress: Progress = silent,
) -> tuple[SearchRequest | None, str | None]:
    """The slice tokenized one example at a time (as the artifact runs), fp32 PyTorch's first
    output on it, and the scorer against it and the gold labels, both with the model's columns
    in the task's label order; or None and the reason no search can score this model."""
    from bertc.compiler.verify.reference import run_reference

    columns, reason = label_columns(loaded, task)
    if columns is None:
        return None, reason
    inputs = encode(loaded, examples)
    reference = run_reference(loaded, inputs)[:, columns]
    labels = [example.label for example in examples]
    by_task = scorer(task, reference, labels)

    def score(outputs: Sequence[np.ndarray]) -> SliceFigures:
        return by_task([np.asarray(output).reshape(1, -1)[:, columns] for output in outputs])

    request = SearchRequest(
        budget=Budget(options.max_drop, options.min_agreement),
        inputs=tuple(inputs),
        score=score,
        regression=task.is_regression,
        keep_best=options.keep_best,
        progress=progress,
    )
    return request, None
