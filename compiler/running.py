"""`bertc run`: label text with an artifact through `bertc.targets.loader` alone; a sentence
encoder gives each text's embedding, or each pair's cosine similarity.

`--file` is read as a stream: CHUNK_LINES lines at a time, sorted by length inside the chunk and
run in batches of BATCH_SIZE (so padding stays short), printed in input order. Memory holds one
chunk, whatever the file's length. Lines end at `\\n` only (one `\\r` before it is dropped, for
CRLF files); every other character, U+2028 and form feed included, belongs to its line, so
output line N always answers input line N. An empty or blank line, a line that is not UTF-8,
or a line with the wrong number of tab-separated texts is refused (DataError, exit 7) with its
line number, before anything runs.

Nothing here imports torch or transformers, so `bertc run` starts as fast as the runtime does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np
from bertc.compiler.core.errors import ArtifactError, DataError, UsageError
from bertc.compiler.core.manifest import check_integrity, read_manifest

# The loader's name for a multi-label head (manifest `head.problem_type`).
MULTI_LABEL = "multi_label_classification"
# Values of an embedding shown on its human line (--json gives them all).
SHOWN_EMBEDDING_VALUES = 5
# Decimals kept in --json: float32 holds about seven significant digits.
JSON_DECIMALS = 6
# Lines of --file read, sorted and labelled at a time; examples per runtime call.
CHUNK_LINES = 64
BATCH_SIZE = 16
# A longer line is refused: the tokenizer keeps max_sequence_length tokens of it anyway.
MAX_LINE_BYTES = 1 << 20
_BYTE_ORDER_MARK = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class InputLine:
    """One example: its text(s) and where it came from (`line` 0: a TEXT argument)."""

    line: int
    text: str
    text_pair: str | None = None

    @property
    def where(self) -> str:
        return f"line {self.line}" if self.line else "the given text"


def read_lines(file: Path) -> Iterator[InputLine]:
    """Each line of `file` as one example: one text, or two separated by one tab.

    Lines are split at `\\n` only; a UTF-8 byte-order mark and one `\\r` before each `\\n` are
    dropped. DataError (exit 7) naming the line for a line that is empty or blank, not UTF-8,
    longer than MAX_LINE_BYTES, or holds another number of texts than line 1; for an empty
    file; or when the file cannot be read.
    """
    texts_per_line = None
    number = 0
    try:
        with open(file, "rb") as handle:
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                number += 1
                example = _parse_line(file, number, raw)
                count = 1 if example.text_pair is None else 2
                if texts_per_line is None:
                    texts_per_line = count
                elif count != texts_per_line:
                    raise DataError(
                        f"{file}: line {number} holds {count} tab-separated text(s) but line 1 "
                        f"holds {texts_per_line}: every line must hold the same number"
                    )
                yield example
    except OSError as error:
        raise DataError(f"cannot read {file}: {error.strerror or error}") from error
    if not number:
        raise DataError(f"{file} holds no examples")


def _parse_line(file: Path, number: int, raw: bytes) -> InputLine:
    """One line's bytes (with its `\\n`, if any) as an example, or a DataError naming it."""
    if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
        raise DataError(f"{file}: line {number} is longer than {MAX_LINE_BYTES:,} bytes")
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    if number == 1:
        raw = raw.removeprefix(_BYTE_ORDER_MARK)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{file}: line {number} is not valid UTF-8 (byte 0x{raw[error.start]:02x} at byte "
            f"{error.start + 1} of the line)"
        ) from error
    fields = text.split("\t")
    if len(fields) > 2:
        raise DataError(
            f"{file}: line {number} holds {len(fields)} tab-separated texts: a line holds one "
            "text, or two separated by one tab"
        )
    for position, field in enumerate(fields):
        if field.strip():
            continue
        if len(fields) == 1:
            raise DataError(
                f"{file}: line {number} is empty: every line must hold a text to label "
                "(output line N answers input line N)"
            )
        raise DataError(
            f"{file}: the {('first', 'second')[position]} text of line {number} is empty"
        )
    return InputLine(number, fields[0], fields[1] if len(fields) == 2 else None)


def argument_inputs(text: str | None, text_pair: str | None) -> list[InputLine]:
    """The TEXT [TEXT_PAIR] arguments as one example; UsageError when one is empty or not
    UTF-8."""
    if text is None:
        raise UsageError("give a TEXT to label, or --file with one example per line")
    for name, value in (("TEXT", text), ("the second text", text_pair)):
        if value is not None and not value.strip():
            raise UsageError(f"{name} is empty: give a text to label")
        try:  # bytes that are not UTF-8 reach Python's argv as lone surrogates
            (value or "").encode("utf-8")
        except UnicodeEncodeError as error:
            byte = ord(value[error.start]) & 0xFF  # the byte a lone surrogate stands for
            raise UsageError(
                f"{name} is not valid UTF-8 (byte 0x{byte:02x} at character {error.start + 1})"
            ) from None
    return [InputLine(0, text, text_pair)]


def run_file(artifact: Path, file: Path, threads: int | None, as_json: bool) -> Iterator[str]:
    """One output line per line of `file`, in order (see the module's docstring)."""
    if file.is_file():  # check every line before any output (a pipe can be read only once)
        for _ in read_lines(file):
            pass
    lines = read_lines(file)
    first = next(lines)
    yield from run_artifact(artifact, chain([first], lines), threads, as_json)


def run_artifact(
    artifact: Path, examples: Iterable[InputLine], threads: int | None, as_json: bool
) -> Iterator[str]:
    """One output line per example, in order: `label<TAB>score` (multi-label:
    `multi_label_line`) or a JSON object; for a sentence encoder the text's embedding, or with a
    second text the pair's cosine similarity. ArtifactError (exit 11) when the artifact cannot
    load, or its runtime fails on an example (the message names it)."""
    from bertc.targets.loader import ArtifactLoadError, load

    check_integrity(artifact, read_manifest(artifact))
    try:
        model = load(artifact, threads)
    except ArtifactLoadError as error:
        raise ArtifactError(str(error)) from error
    examples = iter(examples)
    first = next(examples, None)
    if first is None:
        return
    _check_text_count(artifact, model, first)
    label = _labeller(model, as_json)
    for chunk in _chunks(chain([first], examples), CHUNK_LINES):
        yield from _label_chunk(label, chunk)


def check_artifact(artifact: Path, threads: int | None) -> Any:
    """The loader's golden check (`bertc.targets.loader.check`) after bertc's integrity check:
    its CheckReport. ArtifactError (exit 11) when the artifact is edited or incomplete, holds
    no golden outputs (built by an older bertc), or its runtime fails on a golden input."""
    from bertc.targets.loader import ArtifactLoadError, RuntimeFailure, check

    check_integrity(artifact, read_manifest(artifact))
    try:
        return check(artifact, threads)
    except ArtifactLoadError as error:
        raise ArtifactError(str(error)) from error
    except RuntimeFailure as error:
        raise ArtifactError(f"the runtime failed on a golden input: {error}") from error


def _check_text_count(artifact: Path, model: Any, example: InputLine) -> None:
    """UsageError (exit 2) for TEXT arguments, DataError (exit 7) naming the line for a --file
    line, when the example holds another number of texts than the model takes."""
    if model.head == "encoder":
        return
    if model.pair and example.text_pair is None:
        problem = f"{artifact} takes two texts (a sentence pair) per example"
        if example.line:
            raise DataError(f"{problem}, but {example.where} holds one (no tab)")
        raise UsageError(problem)
    if not model.pair and example.text_pair is not None:
        problem = f"{artifact} takes one text per example"
        if example.line:
            raise DataError(f"{problem}, but {example.where} holds two (separated by a tab)")
        # A common cause: a value after a flag that takes none (`--json true`).
        raise UsageError(f"{problem}, but a second text was given: {example.text_pair!r}")


def _chunks(examples: Iterable[InputLine], size: int) -> Iterator[list[InputLine]]:
    iterator = iter(examples)
    while chunk := list(islice(iterator, size)):
        yield chunk


Labeller = Callable[[Sequence[InputLine]], list[str]]


def _label_chunk(label: Labeller, chunk: list[InputLine]) -> list[str]:
    """The chunk's output lines in input order, run in batches sorted by length."""
    order = sorted(range(len(chunk)), key=lambda i: _length(chunk[i]))
    lines: list[str] = [""] * len(chunk)
    for start in range(0, len(order), BATCH_SIZE):
        indices = order[start : start + BATCH_SIZE]
        batch = [chunk[index] for index in indices]
        for index, line in zip(indices, _run_batch(label, batch), strict=True):
            lines[index] = line
    return lines


def _length(example: InputLine) -> int:
    return len(example.text) + len(example.text_pair or "")


def _run_batch(label: Labeller, batch: Sequence[InputLine]) -> list[str]:
    """`label(batch)`; when the runtime fails, each example alone, to name the one it fails on."""
    from bertc.targets.loader import ArtifactLoadError, RuntimeFailure

    try:
        return label(batch)
    except ValueError as error:
        raise UsageError(str(error)) from error
    except ArtifactLoadError as error:
        raise ArtifactError(str(error)) from error
    except RuntimeFailure as error:
        failure = error
    for example in batch if len(batch) > 1 else ():
        try:
            label([example])
        except RuntimeFailure as error:
            failure = error
            batch = [example]
            break
    where = batch[0].where if len(batch) == 1 else f"the batch of {batch[0].where}"
    raise ArtifactError(f"the runtime failed on {where}: {failure}") from failure


def _labeller(model: Any, as_json: bool) -> Labeller:
    if model.head == "encoder":
        return lambda batch: _encoder_lines(model, batch, as_json)
    return lambda batch: _prediction_lines(model, batch, as_json)


def _prediction_lines(model: Any, batch: Sequence[InputLine], as_json: bool) -> list[str]:
    texts = [example.text for example in batch]
    pairs = None if batch[0].text_pair is None else [str(e.text_pair) for e in batch]
    lines = []
    for example, prediction in zip(batch, model.predict(texts, pairs), strict=True):
        if as_json:
            lines.append(
                json.dumps(
                    {
                        "text": example.text,
                        **({"text_pair": example.text_pair} if pairs is not None else {}),
                        "label": prediction.label,
                        "label_id": prediction.label_id,
                        "scores": [round(score, 6) for score in prediction.scores],
                        **(
                            {"labels": list(prediction.labels), "threshold": model.threshold}
                            if model.problem_type == MULTI_LABEL
                            else {}
                        ),
                    },
                    ensure_ascii=False,
                )
            )
        elif model.problem_type == MULTI_LABEL:
            lines.append(multi_label_line(prediction))
        elif prediction.label is None:
            lines.append(f"{prediction.scores[0]:.4f}")
        else:
            lines.append(f"{prediction.label}\t{max(prediction.scores):.4f}")
    return lines


def multi_label_line(prediction: Any) -> str:
    """`toxic,insult<TAB>0.9612,0.9581`: every label over the threshold (label-id order) and its
    sigmoid; `-<TAB>0.3100` (the highest sigmoid) when no label passes."""
    if not prediction.labels:
        return f"-\t{max(prediction.scores):.4f}"
    scores = ",".join(f"{prediction.scores[index]:.4f}" for index in prediction.label_ids)
    return f"{','.join(prediction.labels)}\t{scores}"


def _encoder_lines(model: Any, batch: Sequence[InputLine], as_json: bool) -> list[str]:
    """Each text's embedding, or each pair's cosine similarity (the loader's `similarity`)."""
    if batch[0].text_pair is not None:
        lines = []
        for example in batch:
            similarity = model.similarity(example.text, example.text_pair)
            lines.append(
                json.dumps(
                    {
                        "text": example.text,
                        "text_pair": example.text_pair,
                        "cosine_similarity": round(similarity, JSON_DECIMALS),
                    },
                    ensure_ascii=False,
                )
                if as_json
                else f"cosine similarity {similarity:.4f}"
            )
        return lines
    embeddings = model.embed([example.text for example in batch]).astype(np.float64)
    return [
        json.dumps(
            {
                "text": example.text,
                "embedding": [round(float(v), JSON_DECIMALS) for v in embedding],
            },
            ensure_ascii=False,
        )
        if as_json
        else _embedding_line(embedding)
        for example, embedding in zip(batch, embeddings, strict=True)
    ]


def _embedding_line(embedding: np.ndarray) -> str:
    """`dim 384<TAB>norm 5.1234<TAB>[0.0123, -0.0456, ...]`: enough to see it is there."""
    shown = ", ".join(f"{value:.4f}" for value in embedding[:SHOWN_EMBEDDING_VALUES])
    more = ", ..." if len(embedding) > SHOWN_EMBEDDING_VALUES else ""
    return f"dim {len(embedding)}\tnorm {np.linalg.norm(embedding):.4f}\t[{shown}{more}]"
