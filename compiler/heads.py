"""What a task head's outputs mean, from the checkpoint's config, for the manifest, `run` and
`verify`: single-label (softmax, argmax), multi-label (a sigmoid per label, every label over a
threshold) or regression (the raw score), and the label names matched to a task's by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bertc.compiler.core.errors import UsageError
from bertc.compiler.loading import HEAD_ENCODER, HEAD_REGRESSION

if TYPE_CHECKING:
    from bertc.calibration import GlueTask

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
# transformers' BCEWithLogitsLoss head: a label applies when its sigmoid passes one half.
MULTI_LABEL_THRESHOLD = 0.5
# How each problem type turns the logits into scores (the manifest's `head.scores`).
SCORES = {SINGLE_LABEL: "softmax", MULTI_LABEL: "sigmoid", REGRESSION: "identity"}
# transformers' default names (LABEL_0, LABEL_1, ...) carry no meaning: "unnamed".
_GENERIC_LABEL = re.compile(r"label_?\d+")


def problem_type(config: Mapping[str, Any], head: str) -> str | None:
    """The head's problem type: the config's `problem_type`, else what transformers infers at
    training time (one output: regression; more: single-label); None for an encoder."""
    if head == HEAD_ENCODER:
        return None
    if head == HEAD_REGRESSION:
        return REGRESSION
    declared = config.get("problem_type")
    return declared if declared in (SINGLE_LABEL, MULTI_LABEL) else SINGLE_LABEL


def normalise_label(name: str) -> str:
    """Case and separators folded: "Not Entailment", "not-entailment" -> "not_entailment"."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def labels_named(labels: Mapping[Any, str] | None) -> bool:
    """Whether any label has a name of its own (not transformers' generic LABEL_i)."""
    return any(
        not _GENERIC_LABEL.fullmatch(normalise_label(name)) for name in (labels or {}).values()
    )


def head_section(config: Mapping[str, Any], head: str, labels: Mapping[int, str] | None) -> dict:
    """The manifest's `head` section: problem type, how scores are made, the label map."""
    kind = problem_type(config, head)
    if kind is None:
        return {"problem_type": None, "scores": None, "labels": None, "labels_named": False}
    section: dict[str, Any] = {
        "problem_type": kind,
        "scores": SCORES[kind],
        "labels": {str(index): name for index, name in sorted((labels or {}).items())} or None,
        "labels_named": labels_named(labels),
    }
    if kind == MULTI_LABEL:
        section["threshold"] = MULTI_LABEL_THRESHOLD
    return section


def task_label_names(task: GlueTask) -> list[set[str]]:
    """Each task label's accepted names, in the task's id order: its TSV value and its Hugging
    Face name (sst2: {"0", "negative"}, {"1", "positive"})."""
    hf_names = task.hf.label_names or ()
    names = [{normalise_label(label)} for label in task.labels or ()]
    for index, name in enumerate(hf_names[: len(names)]):
        names[index].add(normalise_label(name))
    return names


def task_columns(labels: Mapping[Any, str] | None, task: GlueTask, owner: str) -> list[int]:
    """For each of the task's labels in id order, the model's output column with that name.

    Unnamed labels (none, or all LABEL_i) keep index order. Named labels must match the task's
    one to one (case and separators folded; the TSV value or the HF name); otherwise UsageError
    (exit 2): scoring a permutation would measure nothing.
    """
    count = task.num_labels
    if task.is_regression or not labels_named(labels):
        return list(range(count))
    named = {int(index): normalise_label(name) for index, name in (labels or {}).items()}
    columns = []
    for accepted in task_label_names(task):
        matches = [index for index, name in sorted(named.items()) if name in accepted]
        if len(matches) != 1:
            break
        columns.append(matches[0])
    if len(columns) != count or sorted(columns) != sorted(named):
        shown = [labels[key] for key in sorted(labels, key=int)]  # type: ignore[index]
        wanted = [sorted(names) for names in task_label_names(task)]
        raise UsageError(
            f"{owner}'s labels {shown} cannot be matched by name to {task.name}'s {wanted}: "
            "verify it on the task it was trained for"
        )
    return columns
