"""Preconditions of `verify_artifact`: every refusal that can be made before anything runs.

Each check returns nothing or raises UsageError with a message a user can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bertc.compiler.core.errors import UsageError
from bertc.compiler.heads import MULTI_LABEL
from bertc.compiler.loading import HEAD_ENCODER, HEAD_REGRESSION

if TYPE_CHECKING:
    from bertc.calibration import Example, GlueTask
    from bertc.compiler.loading import LoadedModel


def check_settings(
    max_drop: float,
    batch_size: int,
    threads: int | None,
    bootstrap_samples: int,
    reference_threads: int | None = None,
) -> None:
    """Refuse a negative or non-finite `max_drop`, and counts below one, naming the CLI flag."""
    if not math.isfinite(max_drop) or max_drop < 0:
        raise UsageError(f"--max-drop must be a number of points >= 0 (e.g. 0.5), got {max_drop}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    if reference_threads is not None and reference_threads < 1:
        raise UsageError(f"--reference-threads must be at least 1, got {reference_threads}")
    if bootstrap_samples < 1:
        raise UsageError(f"--bootstrap-samples must be at least 1, got {bootstrap_samples}")


def artifact_label_count(manifest: Mapping[str, Any]) -> int:
    """Width of the artifact's head: one score for regression, else its label list."""
    model = manifest["model"]
    if model["head"] == HEAD_REGRESSION:
        return 1
    return len(model.get("labels") or {})


# The one task a sentence encoder is scored on: Spearman of its pairs' embedding cosines.
ENCODER_TASK = "stsb"
ENCODER_HEADLINE_METRIC = "spearman"


def is_encoder(manifest: Mapping[str, Any]) -> bool:
    """Whether the artifact is a sentence encoder (embeddings out, no task head)."""
    return manifest["model"]["head"] == HEAD_ENCODER


def check_task_fits(manifest: Mapping[str, Any], task: GlueTask, artifact_dir: Path) -> None:
    """Refuse a task other than stsb for a bare encoder, a GLUE task for a multi-label head
    (GLUE's tasks are single-label or regression), and a task whose label count the head cannot
    produce."""
    head = manifest["model"]["head"]
    if head == HEAD_ENCODER:
        if task.name != ENCODER_TASK:
            raise UsageError(
                f"{artifact_dir} is a bare encoder (sentence embeddings, no task head): verify "
                f"scores it on --task {ENCODER_TASK} (cosine similarity of the pairs' embeddings "
                f"against the gold scores), not {task.name}"
            )
        return
    if (manifest.get("head") or {}).get("problem_type") == MULTI_LABEL:
        raise UsageError(
            f"{artifact_dir} is a multi-label classifier (a sigmoid per label, every label over "
            f"the threshold); {task.name} is a single-label GLUE task, so verify cannot score "
            "it: check it with `bertc run` on your own data"
        )
    width = artifact_label_count(manifest)
    if width != task.num_labels:
        kind = "a regression score" if task.is_regression else f"{task.num_labels} labels"
        raise UsageError(
            f"{artifact_dir} has a {head} head with {width} output(s) but {task.name} needs "
            f"{kind}: verify it on a task it was fine-tuned for"
        )


def task_labels(task: GlueTask, examples: Sequence[Example], split: str) -> np.ndarray:
    """The split's gold labels, shape (examples,): float64 scores for regression, else int64 ids.

    Raises UsageError for an unlabelled split (GLUE's test files).
    """
    if any(example.label is None for example in examples):
        raise UsageError(
            f"the {split} split of {task.name} is unlabelled; verify needs labels (use dev)"
        )
    dtype = np.float64 if task.is_regression else np.int64
    return np.asarray([example.label for example in examples], dtype=dtype)


def check_reference_fits(
    loaded: LoadedModel, task: GlueTask, manifest: Mapping[str, Any] | None = None
) -> None:
    """Refuse a reference whose head cannot score the task (an encoder, another label count);
    for an encoder artifact, a reference that is not an encoder of the same width."""
    if manifest is not None and is_encoder(manifest):
        width = int(loaded.config.get("hidden_size", 0))
        expected = int(manifest["model"]["config"].get("hidden_size", width))
        if loaded.head != HEAD_ENCODER or width != expected:
            raise UsageError(
                f"reference {loaded.source} is a {loaded.head} of width {width}; the artifact is "
                f"a sentence encoder of width {expected}: pass the fp32 encoder it came from"
            )
        return
    width = 1 if loaded.head == HEAD_REGRESSION else len(loaded.label_map or {})
    if loaded.head == HEAD_ENCODER or width != task.num_labels:
        raise UsageError(
            f"reference {loaded.source} has a {loaded.head} head with {width} output(s); "
            f"{task.name} needs {task.num_labels}: pass the fp32 classifier the artifact came from"
        )
