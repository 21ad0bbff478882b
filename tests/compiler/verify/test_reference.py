"""The fp32 reference run: its own torch thread count, restored afterwards."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from bertc.compiler.verify.reference import DEFAULT_REFERENCE_THREADS, run_reference


def _watched_model(seen: list[int]) -> SimpleNamespace:
    """A stand-in LoadedModel whose module records torch's thread count and returns two logits."""

    def module(input_ids: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return torch.stack([input_ids.sum(), -input_ids.sum()]).float().reshape(1, 2)

    return SimpleNamespace(input_names=("input_ids",), module=module)


@pytest.mark.parametrize(
    ("reference_threads", "expected"), [(None, DEFAULT_REFERENCE_THREADS), (2, 2)]
)
def test_reference_runs_at_its_own_thread_count_and_restores_torchs(
    reference_threads: int | None, expected: int
) -> None:
    seen: list[int] = []
    singles = [{"input_ids": np.array([[1, 2, 3]], dtype=np.int64)} for _ in range(3)]
    before = torch.get_num_threads()
    logits = run_reference(_watched_model(seen), singles, reference_threads)
    assert seen == [expected] * 3
    assert torch.get_num_threads() == before
    assert logits.dtype == np.float64 and logits.shape == (3, 2)
    np.testing.assert_array_equal(logits[0], [6.0, -6.0])
