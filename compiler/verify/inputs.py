"""What the artifact is fed: token ids from its own packaged tokenizer, or raw text where the
tokenizer is inside the artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bertc.compiler.core.errors import ArtifactError
from bertc.compiler.verify.model import Latency

if TYPE_CHECKING:
    from bertc.calibration import Example


def load_tokenizer(artifact_dir: Path, manifest: Mapping[str, Any]) -> Any:
    """The tokenizer packaged in the artifact: the one an app will use.

    Raises ArtifactError when it cannot be loaded.
    """
    from transformers import AutoTokenizer

    directory = artifact_dir / manifest["model"]["tokenizer_dir"]
    try:
        return AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError, TypeError) as error:
        raise ArtifactError(
            f"cannot load the artifact's tokenizer from {directory}: {error}"
        ) from error


def takes_strings(manifest: Mapping[str, Any]) -> bool:
    """Whether the artifact carries its tokenizer (fused or separate) and so takes text."""
    from bertc.targets.loader import TEXT_MODES

    return (manifest.get("tokenizer") or {}).get("mode") in TEXT_MODES


def batch_padding(manifest: Mapping[str, Any]) -> str:
    """How a batch reaches the model, as the throughput figure should be read."""
    tokenizer = manifest.get("tokenizer") or {}
    if not takes_strings(manifest):
        return Latency.batch_padding
    if manifest["runtime"]["name"] == "onnxruntime":
        return "strings, one example per run (the in-graph tokenizer op takes one example)"
    return "strings; the in-graph tokenizer pads to the longest sentence of each batch" + (
        "" if tokenizer.get("mode") == "fused" else " (tokenizer model, then the model)"
    )


def encode(
    tokenizer: Any,
    examples: Sequence[Example],
    max_length: int,
    names: Sequence[str],
    padding: bool = False,
) -> dict[str, np.ndarray]:
    """Token ids as the deployed model gets them, int64 of shape (examples, tokens) per input name.

    Zero token types where a tokenizer has none; truncated to `max_length`, padded to the longest
    example when `padding`.
    """
    pair = examples[0].text_b is not None
    encoded = tokenizer(
        [example.text_a for example in examples],
        [example.text_b for example in examples] if pair else None,
        truncation=True,
        max_length=max_length,
        padding=padding,
        return_tensors="np",
    )
    arrays = {name: np.asarray(encoded[name], dtype=np.int64) for name in encoded if name in names}
    if "token_type_ids" in names and "token_type_ids" not in arrays:
        arrays["token_type_ids"] = np.zeros_like(arrays["input_ids"])
    return arrays


def texts(examples: Sequence[Example]) -> dict[str, Any]:
    """Raw text for an artifact that tokenizes inside: {"texts": [...], "text_pairs": ...}."""
    pair = examples[0].text_b is not None
    return {
        "texts": [example.text_a for example in examples],
        "text_pairs": [example.text_b for example in examples] if pair else None,
    }
