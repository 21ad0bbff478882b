"""The held-out slice of the accuracy budget and its figures against fp32."""

from __future__ import annotations

import numpy as np
import pytest
from bertc.calibration import get_task, sample_examples
from bertc.calibration.slices import held_out_slice, scorer, slice_figures
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 400),
    calibration=st.integers(1, 300),
    count=st.integers(1, 600),
    seed=st.integers(0, 2**16),
)
def test_the_slice_continues_the_calibration_shuffle_and_never_overlaps_it(
    size: int, calibration: int, count: int, seed: int
) -> None:
    examples = list(range(size))
    sample = sample_examples(examples, calibration, seed) if size else []
    held = held_out_slice(examples, calibration, count, seed)
    assert not set(sample) & set(held)
    assert len(held) == max(0, min(count, size - calibration))
    if size:  # one shuffle: the calibration sample, then the slice, are its first items
        continued = sample_examples(examples, calibration + count, seed)
        assert continued[: len(sample) + len(held)] == sample + held


def test_identical_outputs_agree_fully_and_lose_nothing() -> None:
    task = get_task("sst2")
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(50, 2))
    labels = list(rng.integers(0, 2, size=50))
    figures = slice_figures(task, reference, reference.copy(), labels)
    assert figures.agreement == 1.0
    assert figures.headline_drop == 0.0
    assert figures.max_abs_error == 0.0
    assert figures.examples == 50


@pytest.mark.parametrize("flips", [1, 3, 10])
def test_each_flipped_class_costs_one_share_of_agreement(flips: int) -> None:
    task = get_task("sst2")
    reference = np.tile([[0.0, 1.0]], (40, 1))  # fp32 says 1 everywhere
    labels = [1] * 40  # and is right everywhere
    candidate = reference.copy()
    candidate[:flips] = [[1.0, 0.0]]
    figures = slice_figures(task, reference, candidate, labels)
    assert figures.agreement == pytest.approx(1 - flips / 40)
    assert figures.headline_drop == pytest.approx(100 * flips / 40)  # accuracy points lost
    assert figures.max_abs_error == pytest.approx(1.0)


def test_regression_agreement_is_the_pearson_with_fp32() -> None:
    task = get_task("stsb")
    rng = np.random.default_rng(1)
    reference = rng.uniform(0, 5, size=(60, 1))
    labels = list(reference[:, 0] + rng.normal(scale=0.5, size=60))
    noisy = reference + rng.normal(scale=0.3, size=(60, 1))
    figures = scorer(task, reference, labels)([row[None] for row in noisy])
    assert figures.regression
    assert figures.agreement == pytest.approx(np.corrcoef(noisy[:, 0], reference[:, 0])[0, 1])
    assert figures.metric == "pearson"
    assert figures.headline_drop > 0  # noise lowers the correlation with the gold scores
