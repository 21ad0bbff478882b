"""The fp32 PyTorch reference: which checkpoint to compare with, and its untimed run.

The reference's thread count is its own (`reference_threads`), never the runtime's `--threads`:
the reference is not timed, and the runtime's setting made it several times slower (issue:
`--threads 2` took 254 s against 52 s without the flag, on OpenVINO).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from bertc.compiler.core.errors import ModelFileError, ModelNotFoundError
from bertc.compiler.loading import LoadedModel, load_model

# A sentence encoder is compared on this output (its other, last_hidden_state, varies in length).
SENTENCE_EMBEDDING = "sentence_embedding"
# Untimed, so one thread unless told: on a busy machine torch's default pool oversubscribes the
# cores and ran MiniLM-L6 at 2 threads ten times slower than at one (measured here).
DEFAULT_REFERENCE_THREADS = 1


def load_reference(
    manifest: Mapping[str, Any], reference: str | None, allow_pickle: bool
) -> tuple[LoadedModel, list[str]]:
    """The fp32 PyTorch model to compare with, and notes for the report.

    Without `reference`, the artifact's recorded source: ModelNotFoundError if it is gone,
    ModelFileError if its weights' sha256 changed since the compile. With `reference`, that
    checkpoint, and a note when its weights differ from the recorded ones.
    """
    max_length = int(manifest["model"]["max_sequence_length"])
    source = manifest["source"]
    if reference is not None:
        loaded = load_model(reference, allow_pickle=allow_pickle, max_sequence_length=max_length)
        same = _weight_hashes(loaded) == _recorded_hashes(source)
        note = (
            "" if same else " (not the checkpoint the artifact was compiled from: weights differ)"
        )
        return loaded, [f"reference is {reference}{note}"]
    try:
        loaded = load_model(
            source["path"], allow_pickle=allow_pickle, max_sequence_length=max_length
        )
    except ModelNotFoundError as error:
        raise ModelNotFoundError(
            f"the artifact's source checkpoint {source['path']} is not there any more; "
            "pass --reference with the fp32 model to compare against"
        ) from error
    if _weight_hashes(loaded) != _recorded_hashes(source):
        raise ModelFileError(
            f"the source checkpoint {source['path']} has changed since the artifact was compiled "
            "(weight sha256 differs); pass --reference to compare against it on purpose"
        )
    return loaded, []


def _weight_hashes(loaded: LoadedModel) -> dict[str, str]:
    return {weight.name: weight.sha256 for weight in loaded.weight_files}


def _recorded_hashes(source: Mapping[str, Any]) -> dict[str, str]:
    return {weight["name"]: weight["sha256"] for weight in source.get("weights", [])}


def compared_output_index(output_names: Sequence[str]) -> int:
    """Which output verify compares: a sentence encoder's embedding, else the first (logits)."""
    names = list(output_names)
    return names.index(SENTENCE_EMBEDDING) if SENTENCE_EMBEDDING in names else 0


def reference_thread_count(reference_threads: int | None) -> int:
    """The torch threads the reference runs with: `reference_threads`, else the default (one)."""
    return reference_threads or DEFAULT_REFERENCE_THREADS


def run_reference(
    loaded: LoadedModel,
    singles: Sequence[Mapping[str, np.ndarray]],
    reference_threads: int | None = None,
) -> np.ndarray:
    """fp32 PyTorch on the same token ids, one example at a time: float64 (examples, outputs);
    a sentence encoder's embeddings (examples, hidden).

    Runs at `reference_thread_count(reference_threads)` torch threads and restores torch's
    previous count afterwards, so the caller's setting survives a verify.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(reference_thread_count(reference_threads))
    try:
        logits = []
        with torch.inference_mode():
            for single in singles:
                tensors = [torch.from_numpy(single[name]) for name in loaded.input_names]
                outputs = loaded.module(*tensors)
                if isinstance(outputs, tuple | list):  # an encoder: (last_hidden_state, embedding)
                    outputs = outputs[compared_output_index(loaded.output_names)]
                logits.append(outputs.double().reshape(1, -1).numpy())
    finally:
        torch.set_num_threads(previous)
    return np.concatenate(logits)
