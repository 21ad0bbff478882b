"""`bertc run`: label text with an artifact through `bertc.targets.loader` alone; a sentence
encoder gives each text's embedding, or each pair's cosine similarity.

Nothing here imports torch or transformers, so `bertc run` starts as fast as the runtime does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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
    """One output line per example: `label<TAB>score` (multi-label: `multi_label_line`) or a
    JSON object; for a sentence encoder the text's embedding, or with a second text the pair's
    cosine similarity."""
    from bertc.targets.loader import ArtifactLoadError, load

    check_integrity(artifact, read_manifest(artifact))
    try:
        model = load(artifact, threads)
    except ArtifactLoadError as error:
        raise ArtifactError(str(error)) from error
    if model.head == "encoder":
        yield from _encoder_lines(model, texts, pairs, as_json)
        return
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
                    **(
                        {"labels": list(prediction.labels), "threshold": model.threshold}
                        if model.problem_type == MULTI_LABEL
                        else {}
                    ),
                },
                ensure_ascii=False,
            )
        elif model.problem_type == MULTI_LABEL:
            yield multi_label_line(prediction)
        elif prediction.label is None:
            yield f"{prediction.scores[0]:.4f}"
        else:
            yield f"{prediction.label}\t{max(prediction.scores):.4f}"


def multi_label_line(prediction: Any) -> str:
    """`toxic,insult<TAB>0.9612,0.9581`: every label over the threshold (label-id order) and its
    sigmoid; `-<TAB>0.3100` (the highest sigmoid) when no label passes."""
    if not prediction.labels:
        return f"-\t{max(prediction.scores):.4f}"
    scores = ",".join(f"{prediction.scores[index]:.4f}" for index in prediction.label_ids)
    return f"{','.join(prediction.labels)}\t{scores}"


def _encoder_lines(
    model: Any, texts: list[str], pairs: list[str] | None, as_json: bool
) -> Iterator[str]:
    """Each text's embedding, or each pair's cosine similarity (the loader's `similarity`)."""
    try:
        if pairs is not None:
            for text, text_pair in zip(texts, pairs, strict=True):
                similarity = model.similarity(text, text_pair)
                yield (
                    json.dumps(
                        {
                            "text": text,
                            "text_pair": text_pair,
                            "cosine_similarity": round(similarity, JSON_DECIMALS),
                        },
                        ensure_ascii=False,
                    )
                    if as_json
                    else f"cosine similarity {similarity:.4f}"
                )
            return
        embeddings = model.embed(texts).astype(np.float64)
    except ValueError as error:
        raise UsageError(str(error)) from error
    for text, embedding in zip(texts, embeddings, strict=True):
        yield (
            json.dumps(
                {"text": text, "embedding": [round(float(v), JSON_DECIMALS) for v in embedding]},
                ensure_ascii=False,
            )
            if as_json
            else _embedding_line(embedding)
        )


def _embedding_line(embedding: np.ndarray) -> str:
    """`dim 384<TAB>norm 5.1234<TAB>[0.0123, -0.0456, ...]`: enough to see it is there."""
    shown = ", ".join(f"{value:.4f}" for value in embedding[:SHOWN_EMBEDDING_VALUES])
    more = ", ..." if len(embedding) > SHOWN_EMBEDDING_VALUES else ""
    return f"dim {len(embedding)}\tnorm {np.linalg.norm(embedding):.4f}\t[{shown}{more}]"
