"""Draw calibration and verification samples reproducibly."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from bertc.compiler.core.errors import UsageError

T = TypeVar("T")


def sample_examples(examples: Sequence[T], count: int, seed: int = 0) -> list[T]:
    """The first ``count`` of a seeded shuffle: the same seed gives the same sample.

    A shuffle, not the file's head, because GLUE files are often sorted (by source or label).
    Asking for more than there is returns everything, still shuffled.
    """
    if count <= 0:
        raise UsageError(f"sample count must be a positive integer, got {count}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    return [examples[i] for i in order[:count]]
