"""`bertc run`: label text with an artifact through `bertc.targets.loader` alone.

Nothing here imports torch or transformers, so `bertc run` starts as fast as the runtime does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from bertc.compiler.core.errors import ArtifactError, DataError, UsageError
from bertc.compiler.core.manifest import check_integrity, read_manifest


def read_inputs(
    text: str | None, text_pair: str | None, file: Path | None
) -> tuple[list[str], list[str] | None]:
    """Texts from the arguments, or from --file (one example a line, a pair tab-separated)."""
    if file is None:
        if text is None:
            raise UsageError("give a TEXT to label, or --file with one example per line")
        return [text], None if text_pair is None else [text_pair]
    if text is not None:
        raise UsageError("give either TEXT or --file, not both")
    try:
        lines = [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {file}: {error}") from error
    if not lines:
        raise DataError(f"{file} holds no examples")
    rows = [line.split("\t") for line in lines]
    if all(len(row) == 1 for row in rows):
        return [row[0] for row in rows], None
    if all(len(row) == 2 for row in rows):
        return [row[0] for row in rows], [row[1] for row in rows]
    raise DataError(f"{file}: every line must hold one text, or two separated by one tab")


def run_artifact(
    artifact: Path, texts: list[str], pairs: list[str] | None, threads: int | None, as_json: bool
) -> Iterator[str]:
    """One output line per example: `label<TAB>score` or a JSON object."""
    from bertc.targets.loader import ArtifactLoadError, load

    check_integrity(artifact, read_manifest(artifact))
    try:
        model = load(artifact, threads)
    except ArtifactLoadError as error:
        raise ArtifactError(str(error)) from error
    if model.pair and pairs is None:
        raise UsageError(f"{artifact} takes two texts (a sentence pair) per example")
    if not model.pair and pairs is not None:
        # A common cause: a value after a flag that takes none (`--json true`).
        raise UsageError(
            f"{artifact} takes one text per example, but a second text was given: {pairs[0]!r}"
        )
    try:
        predictions = model.predict(texts, pairs)
    except ValueError as error:
        raise UsageError(str(error)) from error
    for index, prediction in enumerate(predictions):
        if as_json:
            yield json.dumps(
                {
                    "text": texts[index],
                    **({"text_pair": pairs[index]} if pairs is not None else {}),
                    "label": prediction.label,
                    "label_id": prediction.label_id,
                    "scores": [round(score, 6) for score in prediction.scores],
                },
                ensure_ascii=False,
            )
        elif prediction.label is None:
            yield f"{prediction.scores[0]:.4f}"
        else:
            yield f"{prediction.label}\t{max(prediction.scores):.4f}"
