"""The enums behind compile flags, in a module light enough for the CLI to import at start.

`bertc run` must start without torch; `bertc.targets.ort.quantize` (which re-exports these) pulls in
the exporter and torch.
"""

from __future__ import annotations

import enum


class QuantizationMode(str, enum.Enum):
    """What the user asked for with `--quantization`."""

    STATIC = "static"
    DYNAMIC = "dynamic"
    NONE = "none"


class Recipe(str, enum.Enum):
    """Which settings the quantizer runs with (`--recipe`)."""

    # bertc's recipe, gated on task accuracy (see quantize_onnx_runtime and targets/openvino.py).
    BERT_SAFE = "bert-safe"
    # The quantizer's own defaults, as a user calling it bare would get: a baseline to compare
    # with, and the deliberately poor recipe the verify gate is tested against.
    LIBRARY_DEFAULTS = "library-defaults"


class TokenizerMode(str, enum.Enum):
    """Where the artifact's tokenizer lives."""

    FUSED = "fused"  # one graph: strings in, logits out
    SEPARATE = "separate"  # a tokenizer graph beside the ids-in model
    NONE = "none"  # ids in; the app tokenizes (tokenizer/ holds the HF files)
