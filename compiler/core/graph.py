"""The values passed between compile stages: an ONNX graph on disk with its parity result, and
the in-graph tokenizer interface a target hands to the tokenizer gate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the floor stays light for the CLI
    import numpy as np

# atol of the ONNX-vs-PyTorch parity gate; Optimum validates BERT exports at the same 1e-4.
DEFAULT_PARITY_ATOL = 1e-4


@dataclass(frozen=True)
class ParityResult:
    """How closely the exported graph reproduces PyTorch, over which shapes."""

    max_abs_diff: float
    tolerance: float
    shapes_checked: tuple[tuple[int, int], ...]
    passed: bool


@dataclass(frozen=True)
class OnnxGraph:
    """An ONNX model on disk and what the next stage needs to know about it."""

    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    opset: int
    parity: ParityResult | None = None
    rewrites: tuple[str, ...] = ()


class InGraphTokenizer:
    """The artifact's tokenizer graph on its runtime: one example in, 1-D token arrays out."""

    def encode(self, text_a: str, text_b: str | None) -> Mapping[str, np.ndarray]:
        raise NotImplementedError
