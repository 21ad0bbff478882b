"""The GLUE task table: one row per task, so adding a task touches one place.

Each row says where a split lives in the classic ``glue_data`` layout, which TSV columns hold the
texts and the label, the label strings in the id order BERT fine-tuning scripts use, the metrics,
and how the same task is named in the Hugging Face ``nyu-mll/glue`` dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bertc.compiler.core.errors import UsageError

# A TSV column is found by header name, or by position where the file has no header (CoLA).
Column = str | int

_TSV_SPLITS = MappingProxyType({"train": "train.tsv", "dev": "dev.tsv"})
_HF_SPLITS = MappingProxyType({"train": "train", "dev": "validation", "test": "test"})


@dataclass(frozen=True)
class HfGlueSource:
    """How a task appears in ``datasets.load_dataset("nyu-mll/glue", config)``."""

    config: str
    text_columns: tuple[str, ...]
    # HF ClassLabel names listed in bertc's id order (HF's own order can differ, e.g. MNLI).
    label_names: tuple[str, ...] | None
    # hash=False: a mapping is unhashable, and tasks must stay usable as keys and in caches.
    splits: Mapping[str, str] = field(default_factory=lambda: _HF_SPLITS, hash=False)


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: files, columns, labels and metrics."""

    name: str
    folder: str
    split_files: Mapping[str, str] = field(hash=False)
    has_header: bool
    text_columns: tuple[Column, ...]
    label_column: Column
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    headline_metric: str
    hf: HfGlueSource
    aliases: tuple[str, ...] = field(default=())

    @property
    def is_regression(self) -> bool:
        """STS-B predicts a score, not a class."""
        return self.labels is None

    @property
    def num_labels(self) -> int:
        """Width of the classifier head: one output for regression (the HF convention)."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_pair(self) -> bool:
        """Whether the model sees a sentence pair (text_b)."""
        return len(self.text_columns) == 2


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
# The order of the original BERT run_classifier.py and transformers' MnliProcessor.
_MNLI = ("contradiction", "entailment", "neutral")


def _mnli(name: str, section: str, aliases: tuple[str, ...]) -> GlueTask:
    """MNLI matched and mismatched share everything but the dev (and test) section."""
    return GlueTask(
        name=name,
        folder="MNLI",
        split_files=MappingProxyType({"train": "train.tsv", "dev": f"dev_{section}.tsv"}),
        has_header=True,
        text_columns=("sentence1", "sentence2"),
        label_column="gold_label",
        labels=_MNLI,
        metrics=("accuracy",),
        headline_metric="accuracy",
        hf=HfGlueSource(
            "mnli",
            ("premise", "hypothesis"),
            _MNLI,
            MappingProxyType(
                {"train": "train", "dev": f"validation_{section}", "test": f"test_{section}"}
            ),
        ),
        aliases=aliases,
    )


_ROWS: tuple[GlueTask, ...] = (
    GlueTask(
        name="cola",
        folder="CoLA",
        split_files=_TSV_SPLITS,
        has_header=False,  # columns: source, label, original label, sentence
        text_columns=(3,),
        label_column=1,
        labels=_BINARY,
        metrics=("matthews_corr",),
        headline_metric="matthews_corr",
        hf=HfGlueSource("cola", ("sentence",), ("unacceptable", "acceptable")),
    ),
    GlueTask(
        name="sst2",
        folder="SST-2",
        split_files=_TSV_SPLITS,
        has_header=True,
        text_columns=("sentence",),
        label_column="label",
        labels=_BINARY,
        metrics=("accuracy",),
        headline_metric="accuracy",
        hf=HfGlueSource("sst2", ("sentence",), ("negative", "positive")),
        aliases=("sst",),
    ),
    GlueTask(
        name="mrpc",
        folder="MRPC",
        split_files=_TSV_SPLITS,
        has_header=True,
        text_columns=("#1 String", "#2 String"),
        label_column="Quality",
        labels=_BINARY,
        metrics=("f1", "accuracy"),
        headline_metric="f1",
        hf=HfGlueSource("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    ),
    GlueTask(
        name="stsb",
        folder="STS-B",
        split_files=_TSV_SPLITS,
        has_header=True,
        text_columns=("sentence1", "sentence2"),
        label_column="score",
        labels=None,
        metrics=("pearson", "spearman"),
        headline_metric="pearson",
        hf=HfGlueSource("stsb", ("sentence1", "sentence2"), None),
        aliases=("sts",),
    ),
    GlueTask(
        name="qqp",
        folder="QQP",
        split_files=_TSV_SPLITS,
        has_header=True,
        text_columns=("question1", "question2"),
        label_column="is_duplicate",
        labels=_BINARY,
        metrics=("f1", "accuracy"),
        headline_metric="f1",
        hf=HfGlueSource("qqp", ("question1", "question2"), ("not_duplicate", "duplicate")),
    ),
    _mnli("mnli", "matched", ("mnli-m", "mnli_matched")),
    _mnli("mnli-mm", "mismatched", ("mnli_mismatched",)),
    GlueTask(
        name="qnli",
        folder="QNLI",
        split_files=_TSV_SPLITS,
        has_header=True,
        text_columns=("question", "sentence"),
        label_column="label",
        labels=_NLI2,
        metrics=("accuracy",),
        headline_metric="accuracy",
        hf=HfGlueSource("qnli", ("question", "sentence"), _NLI2),
    ),
    GlueTask(
        name="rte",
        folder="RTE",
        split_files=_TSV_SPLITS,
        has_header=True,
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        labels=_NLI2,
        metrics=("accuracy",),
        headline_metric="accuracy",
        hf=HfGlueSource("rte", ("sentence1", "sentence2"), _NLI2),
    ),
    GlueTask(
        name="wnli",
        folder="WNLI",
        split_files=_TSV_SPLITS,
        has_header=True,
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        labels=_BINARY,  # 1 = entailment
        metrics=("accuracy",),
        headline_metric="accuracy",
        hf=HfGlueSource("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment")),
    ),
)

TASKS: Mapping[str, GlueTask] = MappingProxyType({task.name: task for task in _ROWS})


def _normalize(name: str) -> str:
    """Fold case and separators so "SST-2", "sst_2" and "sst2" meet."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _alias_table() -> dict[str, str]:
    """Every spelling a user may type, folded, mapped to the canonical name."""
    table: dict[str, str] = {}
    for task in _ROWS:
        for spelling in (task.name, task.folder, *task.aliases):
            table.setdefault(_normalize(spelling), task.name)
    return table


_ALIASES = MappingProxyType(_alias_table())


def get_task(name: str) -> GlueTask:
    """Look a task up by canonical name or alias, case- and separator-insensitively."""
    canonical = _ALIASES.get(_normalize(name))
    if canonical is None:
        known = ", ".join(sorted(TASKS))
        raise UsageError(f"unknown GLUE task {name!r}; known tasks: {known}")
    return TASKS[canonical]


def resolve_task(requested: str | None, configured: str | None) -> GlueTask | None:
    """The GLUE task a build is for, decided once: the one asked for (`--task`; an unknown name
    is a UsageError), else the checkpoint config's `finetuning_task` where it names a GLUE task,
    else None (an encoder, or a fine-tuning task outside GLUE)."""
    if requested:
        return get_task(requested)
    if not configured:
        return None
    canonical = _ALIASES.get(_normalize(configured))
    return TASKS[canonical] if canonical else None


def recorded_task(manifest: Mapping[str, Any]) -> str | None:
    """The GLUE task an artifact was built for: its manifest's `task` (decided once at compile
    time), or for an artifact from before that field, `resolve_task`'s rule applied to what it
    recorded (calibration task, then the config's `finetuning_task`)."""
    if "task" in manifest:
        return manifest["task"]
    calibrated = (manifest.get("calibration") or {}).get("task")
    configured = ((manifest.get("model") or {}).get("config") or {}).get("finetuning_task")
    task = resolve_task(None, calibrated or configured)
    return task.name if task else None
