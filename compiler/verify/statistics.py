"""Pure functions of predictions and logits, so tests can check them by hand.

Predictions are 1-D arrays over the examples (class ids, or scores for regression); metric
values are on a 0-1 scale, deltas and CI bounds in points (x100).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from bertc.calibration import GlueTask, compute_metrics
from bertc.calibration.metrics import METRICS
from bertc.compiler.verify.model import Agreement, MetricDelta, OutputError

DEFAULT_BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95
# How many disagreeing examples the report names by line, so a user can look at them.
LISTED_DISAGREEMENTS = 20
# Bootstrap indices held in memory at once (int64): about 32 MB.
_BOOTSTRAP_BLOCK_ELEMENTS = 1 << 22


def paired_bootstrap(
    task: GlueTask,
    reference_predictions: np.ndarray,
    artifact_predictions: np.ndarray,
    labels: np.ndarray,
    samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile CI of (artifact - reference) in points for each metric of the task.

    Both models are scored on the same resample of example indices, so the CI reflects how the
    two differ on the same sentences rather than the noise of the dev set itself. A metric that
    is undefined on every resample gets (nan, nan).
    """
    rng = np.random.default_rng(seed)
    count = len(labels)
    # Resamples are drawn a block at a time so memory stays flat on large dev sets (QQP: 40k).
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // count)
    deltas: dict[str, list[np.ndarray]] = {name: [] for name in task.metrics}
    for start in range(0, samples, block):
        indices = rng.integers(0, count, size=(min(block, samples - start), count))
        for name in task.metrics:
            deltas[name].append(
                _resampled_deltas(
                    name, reference_predictions, artifact_predictions, labels, indices
                )
            )
    return {name: _percentile_interval(np.concatenate(parts)) for name, parts in deltas.items()}


def _percentile_interval(deltas: np.ndarray) -> tuple[float, float]:
    """The central CONFIDENCE interval of 0-1 deltas, in points; NaN resamples are skipped."""
    if np.all(np.isnan(deltas)):
        return math.nan, math.nan
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.nanpercentile(deltas, [tail, 100 - tail])
    return float(low) * 100, float(high) * 100


def _resampled_deltas(
    name: str, reference: np.ndarray, artifact: np.ndarray, labels: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    if name == "accuracy":  # vectorised: the mean of per-example correctness over each resample
        artifact_correct = (artifact == labels)[indices].mean(axis=1)
        return artifact_correct - (reference == labels)[indices].mean(axis=1)
    metric = METRICS[name]
    return np.asarray(
        [
            metric(artifact[row], labels[row]) - metric(reference[row], labels[row])
            for row in indices
        ]
    )


def compare_metrics(
    task: GlueTask,
    reference_predictions: np.ndarray,
    artifact_predictions: np.ndarray,
    labels: np.ndarray,
    samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[MetricDelta, ...]:
    """Each of the task's metrics for both models, the delta in points and its paired CI."""
    reference = compute_metrics(task, reference_predictions, labels)
    artifact = compute_metrics(task, artifact_predictions, labels)
    intervals = paired_bootstrap(
        task, reference_predictions, artifact_predictions, labels, samples, seed
    )
    return tuple(
        MetricDelta(
            name=name,
            reference=reference[name],
            artifact=artifact[name],
            delta_points=round((artifact[name] - reference[name]) * 100, 9),
            ci_low_points=intervals[name][0],
            ci_high_points=intervals[name][1],
        )
        for name in task.metrics
    )


def prediction_agreement(
    task: GlueTask, reference: np.ndarray, artifact: np.ndarray, lines: Sequence[int]
) -> Agreement:
    """Share of examples predicted alike (classes), or Pearson's r of the scores (regression).

    `lines` are the examples' line numbers in the split's file; the first LISTED_DISAGREEMENTS
    that differ are named in the report.
    """
    if task.is_regression:
        pearson = METRICS["pearson"](artifact, reference)
        return Agreement(rate=None, prediction_pearson=pearson, disagreements=None)
    differ = np.flatnonzero(reference != artifact)
    return Agreement(
        rate=float(1 - len(differ) / len(reference)),
        prediction_pearson=None,
        disagreements=int(len(differ)),
        disagreement_lines=tuple(int(lines[index]) for index in differ[:LISTED_DISAGREEMENTS]),
    )


def output_error(
    reference_logits: np.ndarray, artifact_logits: np.ndarray, batch_padding_max_abs: float
) -> OutputError:
    """Max, mean and RMS of |artifact - reference| over logits of shape (examples, outputs)."""
    difference = np.abs(artifact_logits - reference_logits)
    return OutputError(
        max_abs=float(difference.max()),
        mean_abs=float(difference.mean()),
        rmse=float(np.sqrt(np.mean(difference**2))),
        batch_padding_max_abs=batch_padding_max_abs,
    )


def row_cosines(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine of each row of `first` with the same row of `second`; 0 where a row is all zeros."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    norms = np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1)
    dots = np.einsum("ij,ij->i", first, second)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def pair_cosines(embeddings: np.ndarray) -> np.ndarray:
    """Each pair's cosine similarity from sentence embeddings laid out a0, b0, a1, b1, ...
    (`calibration.single_sentences` order): shape (pairs,)."""
    return row_cosines(embeddings[0::2], embeddings[1::2])


def embedding_agreement(
    reference_embeddings: np.ndarray,
    artifact_embeddings: np.ndarray,
    reference_similarities: np.ndarray,
    artifact_similarities: np.ndarray,
) -> Agreement:
    """A sentence encoder's agreement: the cosine between artifact and fp32 embeddings of each
    sentence (mean and min), and Pearson's r of the two models' pair similarities."""
    cosines = row_cosines(artifact_embeddings, reference_embeddings)
    return Agreement(
        rate=None,
        prediction_pearson=METRICS["pearson"](artifact_similarities, reference_similarities),
        disagreements=None,
        embedding_cosine_mean=float(cosines.mean()),
        embedding_cosine_min=float(cosines.min()),
        embedded_sentences=int(len(cosines)),
    )
