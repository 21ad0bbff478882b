"""Read GLUE splits into plain ``Example`` rows, from glue_data TSVs or the HF hub.

The TSV reader never skips a row silently: every malformed row is collected, then one
``MalformedRowsError`` names the file and the line numbers, so a user fixes the file once.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertc.calibration.tasks import Column, GlueTask
from bertc.compiler.core.errors import (
    DataFileMissingError,
    EmptySplitError,
    MalformedRowsError,
    UsageError,
)

LAYOUT = "classic glue_data layout: <root>/<TaskFolder>/<split>.tsv"
_SPLIT_ALIASES = {"validation": "dev", "val": "dev"}
_REPORTED_LINES = 10  # how many bad lines an error message spells out


@dataclass(frozen=True)
class Example:
    """One labelled input; ``line`` points back into the file for error messages."""

    text_a: str
    text_b: str | None
    label: int | float | None  # index into task.labels, STS-B score, or None when unlabelled
    line: int  # 1-based line in the TSV (row number for HF data)


def single_sentences(examples: Sequence[Example]) -> list[Example]:
    """Each text of each example on its own, in order (a pair gives two): what a sentence encoder
    embeds, one text at a time, for a pair task such as STS-B."""
    return [
        Example(text, None, example.label, example.line)
        for example in examples
        for text in (example.text_a, example.text_b)
        if text is not None
    ]


class _BadRow(ValueError):
    """A row that cannot become an Example; the message says why."""


def _canonical_split(split: str) -> str:
    """Accept the HF name "validation" for GLUE's "dev"."""
    folded = split.strip().lower()
    return _SPLIT_ALIASES.get(folded, folded)


def _split_file(task: GlueTask, split: str) -> str:
    """The TSV file name of a split, or a UsageError listing the splits there are."""
    file_name = task.split_files.get(_canonical_split(split))
    if file_name is None:
        known = ", ".join(sorted(task.split_files))
        raise UsageError(f"GLUE task {task.name} has no split {split!r} as TSV; known: {known}")
    return file_name


def _task_folder(task: GlueTask, data_dir: Path) -> Path:
    """The task's folder under a glue_data root, or data_dir itself when it is that folder."""
    nested = data_dir / task.folder
    if not nested.is_dir() and data_dir.name.lower() == task.folder.lower():
        return data_dir
    return nested


def split_path(task: GlueTask, data_dir: Path, split: str = "dev") -> Path:
    """Where a split must be; DataFileMissingError saying what was expected when it is not."""
    file_name = _split_file(task, split)
    folder = _task_folder(task, Path(data_dir))
    path = folder / file_name
    if path.is_file():
        return path
    found = ""
    if folder.is_dir():
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        found = f"; {folder} holds: {present}"
    raise DataFileMissingError(
        f"GLUE {task.name} {split} split not found: expected {path} ({LAYOUT}){found}"
    )


def _numbered_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """TSV rows with their 1-based line numbers; a UTF-8 byte-order mark (MRPC's) is dropped.

    GLUE's TSVs are unquoted (csv's QUOTE_NONE, where a quote is a plain character), so a row is
    its line split at tabs; lines end at `\\n` (one `\\r` before it is dropped), so the numbers
    are an editor's and a line that is not UTF-8 is named by its own number.
    """
    try:
        with path.open("rb") as handle:
            for line, raw in enumerate(handle, start=1):
                raw = raw.removesuffix(b"\n").removesuffix(b"\r")
                if line == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise MalformedRowsError(
                        f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} "
                        f"at byte {exc.start + 1} of the line); save the file as UTF-8"
                    ) from exc
                yield line, text.split("\t") if text else []
    except OSError as exc:
        raise DataFileMissingError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _positions(task: GlueTask, header: Sequence[str] | None, path: Path) -> list[int]:
    """Column positions of the texts then the label, by header name or by index."""
    wanted: tuple[Column, ...] = (*task.text_columns, task.label_column)
    if header is None:
        return [int(column) for column in wanted]
    missing = [str(c) for c in wanted if isinstance(c, str) and c not in header]
    if missing:
        raise MalformedRowsError(
            f"{path}: header on line 1 lacks column(s) {', '.join(missing)}; "
            f"found: {', '.join(header)} ({LAYOUT})"
        )
    return [header.index(c) if isinstance(c, str) else c for c in wanted]


def _label(task: GlueTask, raw: str) -> int | float:
    """A label id for classification, a finite float score for regression."""
    value = raw.strip()
    if task.labels is None:
        try:
            score = float(value)
        except ValueError:
            raise _BadRow(f"score {value!r} is not a number") from None
        if not math.isfinite(score):
            raise _BadRow(f"score {value!r} is not finite")
        return score
    if value not in task.labels:
        raise _BadRow(f"label {value!r} not one of {', '.join(task.labels)}")
    return task.labels.index(value)


def _example(task: GlueTask, row: list[str], positions: list[int], line: int) -> Example:
    """Build one Example from a split TSV row, or raise _BadRow."""
    needed = max(positions) + 1
    if len(row) < needed:
        raise _BadRow(f"{len(row)} column(s), need at least {needed}")
    *text_positions, label_position = positions
    texts = [row[p] for p in text_positions]
    return Example(
        text_a=texts[0],
        text_b=texts[1] if len(texts) > 1 else None,
        label=_label(task, row[label_position]),
        line=line,
    )


def _malformed_message(path: Path, problems: list[tuple[int, str]]) -> str:
    """One line naming the file, the first bad lines with reasons, and the count."""
    shown = problems[:_REPORTED_LINES]
    lines = ", ".join(str(line) for line, _ in shown)
    more = f" and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    reasons = "; ".join(f"line {line}: {why}" for line, why in shown)
    return f"{path}: {len(problems)} malformed row(s) at lines {lines}{more} ({reasons})"


def read_glue_tsv(task: GlueTask, data_dir: Path, split: str = "dev") -> list[Example]:
    """Read one split of a glue_data folder (the root or the task's own folder)."""
    path = split_path(task, Path(data_dir), split)
    rows = _numbered_rows(path)
    header = None
    if task.has_header:
        first = next(rows, None)
        if first is None:
            raise EmptySplitError(f"{path} is empty: expected a header line and examples")
        header = first[1]
    positions = _positions(task, header, path)
    examples: list[Example] = []
    problems: list[tuple[int, str]] = []
    for line, row in rows:
        try:
            examples.append(_example(task, row, positions, line))
        except _BadRow as exc:
            problems.append((line, str(exc)))
    if problems:
        raise MalformedRowsError(_malformed_message(path, problems))
    if not examples:
        raise EmptySplitError(f"{path} holds no examples")
    return examples


def _hf_label_ids(task: GlueTask, names: Sequence[str]) -> list[int]:
    """Map HF ClassLabel ids to bertc's ids by name, since the orders differ (MNLI)."""
    expected = task.hf.label_names or ()
    if sorted(names) != sorted(expected):
        raise MalformedRowsError(
            f"nyu-mll/glue {task.hf.config} labels {list(names)} do not match "
            f"bertc's table {list(expected)}"
        )
    return [expected.index(name) for name in names]


def _examples_from_hf(task: GlueTask, dataset: Any) -> list[Example]:
    """Convert HF rows; label -1 (the hidden test labels) becomes None."""
    label_ids = None if task.is_regression else _hf_label_ids(task, dataset.features["label"].names)
    examples = []
    for number, record in enumerate(dataset, start=1):
        texts = [record[column] for column in task.hf.text_columns]
        raw = record["label"]
        if raw == -1:
            label: int | float | None = None
        elif label_ids is None:
            label = float(raw)
        else:
            label = label_ids[int(raw)]
        text_b = texts[1] if len(texts) > 1 else None
        examples.append(Example(text_a=texts[0], text_b=text_b, label=label, line=number))
    return examples


def read_hf_glue(task: GlueTask, split: str = "dev") -> list[Example]:
    """Read a split from the HF hub (or its cache); ``datasets`` is optional, so import lazily."""
    canonical = _canonical_split(split)
    hf_split = task.hf.splits.get(canonical)
    if hf_split is None:
        known = ", ".join(sorted(task.hf.splits))
        raise UsageError(f"GLUE task {task.name} has no split {split!r}; known: {known}")
    hint = (
        f"pass --data-dir with a glue_data folder "
        f"(<root>/{task.folder}/{task.split_files.get(canonical, f'{canonical}.tsv')})"
    )
    try:
        import datasets
    except ImportError as exc:
        raise DataFileMissingError(
            f"cannot load GLUE {task.name} {split}: the `datasets` package is not installed; {hint}"
        ) from exc
    try:
        dataset = datasets.load_dataset("nyu-mll/glue", task.hf.config, split=hf_split)
    except Exception as exc:  # offline, no cache, hub errors: all mean the data is not here
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataFileMissingError(
            f"cannot load nyu-mll/glue {task.hf.config} {hf_split} ({reason}); {hint}"
        ) from exc
    examples = _examples_from_hf(task, dataset)
    if not examples:
        raise EmptySplitError(f"nyu-mll/glue {task.hf.config} {hf_split} holds no examples")
    return examples


def load_examples(
    task: GlueTask, split: str = "dev", data_dir: Path | None = None
) -> list[Example]:
    """TSVs when a glue_data folder is given, else the HF hub."""
    if data_dir is not None:
        return read_glue_tsv(task, Path(data_dir), split)
    return read_hf_glue(task, split)
