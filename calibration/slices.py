"""The held-out slice of a task's train split that the accuracy-budget search scores on, and
its scoring against fp32 (`compiler/core/budget.py`).

The slice comes from the same seeded shuffle as the calibration sample (`sample_examples`),
after it: the two never overlap, and neither touches the dev set that `bertc verify` reports.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from bertc.calibration.metrics import compute_metrics, predictions_from_logits
from bertc.calibration.tasks import GlueTask
from bertc.compiler.core.budget import SliceFigures

T = TypeVar("T")


def held_out_slice(examples: Sequence[T], skip: int, count: int, seed: int = 0) -> list[T]:
    """Examples `skip` to `skip + count` of the seeded shuffle whose first `skip` are the
    calibration sample (`sample_examples(examples, skip, seed)`); fewer when the split is short,
    none when it holds no more than `skip`."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    return [examples[i] for i in order[skip : skip + count]]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def slice_figures(
    task: GlueTask,
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: Sequence[int | float],
) -> SliceFigures:
    """A candidate's figures on the slice. reference, candidate: (N, num_labels) first outputs
    (logits, or (N, 1) scores) of fp32 PyTorch and of the candidate, one row per example;
    labels: the examples' gold labels (class ids, or scores for regression).

    agreement: share of rows with fp32's argmax, or for regression the Pearson correlation of
    the candidate's scores with fp32's. headline_drop: (fp32 metric − candidate metric) × 100,
    the task's headline metric against the gold labels."""
    reference = np.asarray(reference, dtype=np.float64).reshape(len(labels), -1)
    candidate = np.asarray(candidate, dtype=np.float64).reshape(len(labels), -1)
    want = predictions_from_logits(task, reference)
    got = predictions_from_logits(task, candidate)
    if task.is_regression:
        agreement = _pearson(got, want)
    else:
        agreement = float(np.mean(got == want)) if len(want) else float("nan")
    fp32 = compute_metrics(task, want, labels)[task.headline_metric]
    int8 = compute_metrics(task, got, labels)[task.headline_metric]
    difference = candidate - reference
    return SliceFigures(
        metric=task.headline_metric,
        regression=task.is_regression,
        agreement=agreement,
        fp32_metric=fp32,
        int8_metric=int8,
        headline_drop=(fp32 - int8) * 100.0,
        max_abs_error=float(np.max(np.abs(difference))) if difference.size else 0.0,
        rms_error=float(np.sqrt(np.mean(np.square(difference)))) if difference.size else 0.0,
        examples=len(labels),
    )


def scorer(
    task: GlueTask, reference: np.ndarray, labels: Sequence[int | float]
) -> Callable[[Sequence[np.ndarray]], SliceFigures]:
    """`score(outputs)` for a SearchRequest: the candidate's first output per slice example (each
    (1, num_labels)), in slice order, scored by `slice_figures` against `reference`."""

    def score(outputs: Sequence[np.ndarray]) -> SliceFigures:
        rows = np.concatenate([np.asarray(o, dtype=np.float64).reshape(1, -1) for o in outputs])
        return slice_figures(task, reference, rows, labels)

    return score
