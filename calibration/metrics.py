"""GLUE metrics through scikit-learn and scipy, all on a 0-1 scale."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from bertc.calibration.tasks import GlueTask
from bertc.compiler.core.errors import EmptySplitError
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def _correlation(statistic: Callable, predictions: np.ndarray, references: np.ndarray) -> float:
    """scipy's correlation, NaN (without a warning) when either side is constant."""
    if np.ptp(predictions) == 0 or np.ptp(references) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(statistic(predictions, references)[0])


# Metric name -> function(predictions, references); supporting a metric is one entry.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda p, r: float(accuracy_score(r, p)),
    "f1": lambda p, r: float(f1_score(r, p, pos_label=1, average="binary", zero_division=0.0)),
    "matthews_corr": lambda p, r: float(matthews_corrcoef(r, p)),
    "pearson": lambda p, r: _correlation(pearsonr, p, r),
    "spearman": lambda p, r: _correlation(spearmanr, p, r),
}


def _as_array(task: GlueTask, values: Sequence | np.ndarray, what: str) -> np.ndarray:
    """Label ids as ints for classification, scores as floats for regression."""
    if any(value is None for value in values):
        raise ValueError(f"{what} contain unlabelled entries (None); metrics need labels")
    array = np.asarray(values, dtype=np.float64 if task.is_regression else np.int64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    return array


def compute_metrics(
    task: GlueTask,
    predictions: Sequence[int | float] | np.ndarray,
    references: Sequence[int | float] | np.ndarray,
) -> dict[str, float]:
    """Every metric of the task, keyed by name, in the order of ``task.metrics``."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references for {task.name}"
        )
    if len(references) == 0:
        raise EmptySplitError(f"no examples to score for {task.name}")
    preds = _as_array(task, predictions, "predictions")
    refs = _as_array(task, references, "references")
    return {name: METRICS[name](preds, refs) for name in task.metrics}


def predictions_from_logits(task: GlueTask, logits: np.ndarray) -> np.ndarray:
    """Class ids by argmax, or the single regression output flattened."""
    scores = np.asarray(logits)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.shape[1] != task.num_labels:
        raise ValueError(
            f"{task.name} expects logits of shape (batch, {task.num_labels}), got {scores.shape}"
        )
    if task.is_regression:
        return scores[:, 0].astype(np.float64)
    return scores.argmax(axis=1)
