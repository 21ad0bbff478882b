"""The static-shape policy an OpenVINO artifact's manifest records: single inputs run on [1,
bucket] copies of the IR (`bertc.targets.loader.StaticShapeBuckets` runs them)."""

from __future__ import annotations

from typing import Any

SMALLEST_BUCKET = 16


def sequence_buckets(max_sequence_length: int) -> tuple[int, ...]:
    """Powers of two from 16 up to the artifact's maximum length, which is always the last.

    Few buckets on purpose: on MiniLM-L6 SST-2 ten finer buckets were slower than four (1.70 vs
    1.57 ms), the padding costs less than the extra compiled models.
    """
    buckets = []
    size = SMALLEST_BUCKET
    while size < max_sequence_length:
        buckets.append(size)
        size *= 2
    return (*buckets, max_sequence_length)


def static_shape_policy(
    max_sequence_length: int, split_at: list[str] | None = None
) -> dict[str, Any]:
    """What the manifest tells an app about running single inputs on static shapes.

    A fused IR takes strings, which cannot be padded: `split_at` names the token-id tensors where
    the runtime cuts it (`loader.split_fused_model`) to run the encoder part on the buckets.
    """
    policy: dict[str, Any] = {
        "batch": 1,
        "sequence_buckets": list(sequence_buckets(max_sequence_length)),
        "padding": "right-pad every input to the smallest bucket that fits, attention_mask 0 "
        "on the padding; cut outputs with a sequence axis back to the real length",
    }
    if split_at:
        policy["split_at"] = list(split_at)
        policy["split"] = (
            "cut the fused IR at these tensors: the part before takes strings and returns token "
            "ids, the part after takes them like an ids-in model (bertc.targets.loader does this)"
        )
    return policy
