"""The one interface every runtime target implements, and the registry that names them."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from bertc.compiler.core.budget import SearchRequest
from bertc.compiler.core.enums import QuantizationMode, Recipe, TokenizerMode
from bertc.compiler.core.errors import TokenizerConversionError, UsageError
from bertc.compiler.core.graph import InGraphTokenizer, OnnxGraph
from bertc.compiler.core.recipes import Calibration, RecipeRegistry
from bertc.compiler.core.sparsity import Int8WeightZeros
from bertc.compiler.core.summary import QuantizationSummary

# Adding a runtime: one module that registers itself, and one line here.
TARGET_MODULES = ("bertc.targets.onnx", "bertc.targets.ort_mobile", "bertc.targets.openvino")

_REGISTRY: dict[str, type[Target]] = {}


@dataclass(frozen=True)
class TokenizerRequest:
    """Put the checkpoint's tokenizer into the artifact: fused in front of the model, or beside."""

    mode: TokenizerMode
    hf_tokenizer: Any
    max_length: int
    pair: bool


@dataclass(frozen=True)
class BuildRequest:
    """What a target needs besides the fp32 graph: the INT8 mode and its calibration inputs."""

    mode: QuantizationMode
    calibration_inputs: Sequence[Mapping[str, np.ndarray]]
    work_dir: Path
    recipe: Recipe = Recipe.BERT_SAFE
    tokenizer: TokenizerRequest | None = None
    max_sequence_length: int = 128
    # The checkpoint's attention shape, for fusions that cannot read it from the graph.
    num_attention_heads: int = 0
    hidden_size: int = 0
    # The accuracy budget (`compile --max-drop/--min-agreement`): None builds the recipe as it
    # is; otherwise the target searches precision maps on the held-out slice
    # (compiler/core/budget.py) and builds the fastest candidate within budget.
    search: SearchRequest | None = None


@dataclass(frozen=True)
class TargetBuild:
    """The runtime files a target wrote into the artifact, and what it found while writing them."""

    model_files: tuple[str, ...]
    quantization: QuantizationSummary | None
    runtime: Mapping[str, Any]
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Zeros of each INT8 MatMul weight beside the fp32 weight's; None when nothing is INT8.
    int8_weight_zeros: Int8WeightZeros | None = None
    # The manifest's account of the in-graph tokenizer; None for an ids-in artifact.
    tokenizer: Mapping[str, Any] | None = None
    # The manifest's `search` (budget.search_record): every candidate tried and the chosen one.
    search: Mapping[str, Any] | None = None


class Runner(Protocol):
    """A loaded artifact that maps named int64 inputs to its outputs, in the manifest's order."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class Target(ABC):
    """A runtime bertc compiles for: build an artifact from an fp32 graph, and load one back."""

    name: ClassVar[str]
    description: ClassVar[str]
    # What the manifest promises about rebuilding the same input; each target states its own.
    reproducibility: ClassVar[str] = (
        "same source, options and toolchain give identical model files "
        "(tests/test_compile.py::test_compile_is_deterministic)"
    )

    # The (mode, recipe) pairs this target offers (targets/ort/recipes.py, targets/ov/recipes.py).
    recipes: ClassVar[RecipeRegistry]
    # The mode a compile without --quantization builds: the target's fastest mode that holds
    # the accuracy bar on its runtime, as measured (bench/README.md). `bertc compile --help`
    # names it per target (tests/targets/test_default_quantization.py holds the two equal).
    default_quantization: ClassVar[QuantizationMode] = QuantizationMode.STATIC

    @abstractmethod
    def build(self, graph: OnnxGraph, request: BuildRequest, out_dir: Path) -> TargetBuild:
        """Quantize as requested and write the runtime's model files into `out_dir`."""

    def calibration(self, mode: QuantizationMode, recipe: Recipe) -> Calibration:
        """What `build` does with calibration sentences for this (mode, recipe); UsageError for a
        pair the target does not offer."""
        return self.recipes.get(mode, recipe).calibration

    def tokenizer_graph(self, request: TokenizerRequest) -> InGraphTokenizer:
        """The tokenizer graph `build` would put into the artifact, alone, for the parity gate."""
        raise TokenizerConversionError(f"the {self.name} target cannot put a tokenizer in a graph")

    def load(
        self, artifact_dir: Path, manifest: Mapping[str, Any], threads: int | None = None
    ) -> Runner:
        """The ids-in artifact on its stock runtime, through the one loader apps use
        (`bertc.targets.loader`); `threads` is the runtime's intra-op thread count."""
        from bertc.targets.loader import IdsModel, backend_for

        return IdsModel(backend_for(Path(artifact_dir), dict(manifest), threads))


def register_target(name: str) -> Callable[[type[Target]], type[Target]]:
    """Class decorator: make a Target available as `--target NAME`."""

    def decorate(cls: type[Target]) -> type[Target]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _import_all() -> None:
    for module in TARGET_MODULES:
        importlib.import_module(module)


def target_names() -> tuple[str, ...]:
    _import_all()
    return tuple(sorted(_REGISTRY))


def get_target(name: str) -> Target:
    """An instance of the named target, or a UsageError listing the known ones."""
    _import_all()
    if name not in _REGISTRY:
        raise UsageError(f"unknown target {name!r}; choose one of: {', '.join(target_names())}")
    return _REGISTRY[name]()
