"""Seeded sampling of calibration examples."""

from __future__ import annotations

import pytest
from bertc.calibration import sample_examples
from bertc.compiler.core.errors import UsageError

ITEMS = list(range(100))


def test_same_seed_same_sample() -> None:
    assert sample_examples(ITEMS, 10, seed=3) == sample_examples(ITEMS, 10, seed=3)


def test_different_seed_different_sample() -> None:
    assert sample_examples(ITEMS, 10, seed=0) != sample_examples(ITEMS, 10, seed=1)


def test_sample_is_pinned_so_calibration_sets_stay_reproducible() -> None:
    # random.Random(0).shuffle(list(range(10))) -> [7, 8, 1, 5, 3, 4, 2, 0, 9, 6]
    assert sample_examples(list(range(10)), 3, seed=0) == [7, 8, 1]


def test_sample_draws_distinct_items_not_the_head() -> None:
    sample = sample_examples(ITEMS, 20, seed=0)
    assert len(set(sample)) == 20
    assert set(sample) <= set(ITEMS)
    assert sample != ITEMS[:20]


def test_count_beyond_available_returns_everything_shuffled() -> None:
    sample = sample_examples(ITEMS, 1000, seed=0)
    assert sorted(sample) == ITEMS
    assert sample != ITEMS


def test_input_is_not_mutated() -> None:
    items = list(ITEMS)
    sample_examples(items, 5)
    assert items == ITEMS


@pytest.mark.parametrize("count", [0, -1])
def test_non_positive_count_is_a_usage_error(count: int) -> None:
    with pytest.raises(UsageError, match="positive"):
        sample_examples(ITEMS, count)
