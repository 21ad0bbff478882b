"""Progress callbacks: a stage function takes `progress(label)` and calls it as it goes."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def silent(label: str) -> None:
    """The default progress callback: says nothing."""
    del label
