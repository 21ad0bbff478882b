"""The paired bootstrap: a CI that contains the delta, is seeded, and matches a direct resample."""

from __future__ import annotations

import numpy as np
import pytest
from bertc.calibration import get_task
from bertc.calibration.metrics import METRICS
from bertc.compiler.verify import statistics
from bertc.compiler.verify.statistics import paired_bootstrap


def test_bootstrap_ci_has_zero_width_when_predictions_are_identical() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    predictions = np.where(rng.random(300) < 0.85, labels, 1 - labels)
    low, high = paired_bootstrap(get_task("sst2"), predictions, predictions.copy(), labels, 500, 0)[
        "accuracy"
    ]
    assert low == 0.0 and high == 0.0


def test_bootstrap_ci_contains_the_delta_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 300)
    reference = np.where(rng.random(300) < 0.9, labels, 1 - labels)
    artifact = np.where(rng.random(300) < 0.05, 1 - reference, reference)
    task = get_task("mrpc")  # accuracy and f1: the vectorised and the generic path
    intervals = paired_bootstrap(task, reference, artifact, labels, 200, seed=0)
    for name, (low, high) in intervals.items():
        metric = METRICS[name]
        delta = (metric(artifact, labels) - metric(reference, labels)) * 100
        assert low < delta < high, (name, low, delta, high)
        assert high - low < 10
    assert paired_bootstrap(task, reference, artifact, labels, 200, seed=0) == intervals
    assert paired_bootstrap(task, reference, artifact, labels, 200, seed=1) != intervals


@pytest.mark.parametrize("block_elements", [1 << 22, 7 * 120])
def test_bootstrap_matches_a_direct_resample(block_elements: int, monkeypatch) -> None:
    """Vectorised and drawn in blocks, it gives what scoring one big resample by hand gives."""
    monkeypatch.setattr(statistics, "_BOOTSTRAP_BLOCK_ELEMENTS", block_elements)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 120)
    reference = np.where(rng.random(120) < 0.8, labels, (labels + 1) % 3)
    artifact = np.where(rng.random(120) < 0.1, (reference + 1) % 3, reference)
    fast = paired_bootstrap(get_task("mnli"), reference, artifact, labels, 300, seed=4)["accuracy"]
    indices = np.random.default_rng(4).integers(0, 120, size=(300, 120))
    deltas = [
        (artifact[row] == labels[row]).mean() - (reference[row] == labels[row]).mean()
        for row in indices
    ]
    assert fast == pytest.approx(tuple(np.percentile(deltas, [2.5, 97.5]) * 100))
