"""Tiny-model pieces for the OpenVINO accuracy-budget search tests: an fp32 OpenVINO model of a
seeded BERT, its calibration inputs, a held-out slice and a SearchRequest scored against
PyTorch fp32 (`calibration.slices.scorer`)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bertc.calibration.slices import scorer
from bertc.calibration.tasks import get_task
from bertc.compiler.core.budget import Budget, SearchRequest
from bertc.compiler.core.enums import QuantizationMode
from bertc.compiler.export import export_onnx
from bertc.compiler.loading import load_model
from bertc.targets.base import BuildRequest
from model_factory import WORDS, sst2_rows

SLICE_SIZE = 60


@dataclass(frozen=True)
class TinySearch:
    """An fp32 `openvino.Model` path, what a BuildRequest needs, and the slice's fp32 logits."""

    onnx: Path
    calibration: list[dict[str, np.ndarray]]
    slice_inputs: list[dict[str, np.ndarray]]
    reference: np.ndarray
    max_sequence_length: int

    def fp32_model(self) -> Any:
        import openvino

        return openvino.convert_model(str(self.onnx))

    def request(self, limits: Budget, keep_best: bool = False, lines: list | None = None):
        """A BuildRequest with a SearchRequest on the slice; gold labels: fp32's own classes
        (or, for regression, fp32's scores)."""
        regression = self.reference.shape[1] == 1
        task = get_task("stsb" if regression else "sst2")
        labels = (
            [float(v) for v in self.reference[:, 0]]
            if regression
            else [int(i) for i in self.reference.argmax(axis=1)]
        )
        search = SearchRequest(
            limits,
            self.slice_inputs,
            scorer(task, self.reference, labels),
            regression=regression,
            keep_best=keep_best,
            progress=(lines.append if lines is not None else lambda _: None),
        )
        return BuildRequest(
            QuantizationMode.STATIC,
            self.calibration,
            self.onnx.parent,
            max_sequence_length=self.max_sequence_length,
            search=search,
        )


def sentences(count: int, seed: int) -> list[str]:
    """Seeded sentences of 3 to 20 common words."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 20))) for _ in range(count)]


def tiny_search(checkpoint: Path, work: Path) -> TinySearch:
    """Export `checkpoint`, encode the SST-2 rows (calibration) and seeded sentences (the slice)
    one at a time at their real lengths, and run PyTorch fp32 on the slice."""
    loaded = load_model(str(checkpoint))
    graph = export_onnx(loaded, work / "model.fp32.onnx")

    def encode(text: str) -> dict[str, np.ndarray]:
        encoded = loaded.tokenizer(text, return_tensors="np", truncation=True)
        return {name: np.asarray(encoded[name], dtype=np.int64) for name in loaded.input_names}

    calibration = [encode(text) for text, _ in sst2_rows()[:16]]
    slice_inputs = [encode(text) for text in sentences(SLICE_SIZE, seed=1)]
    with torch.no_grad():
        reference = np.concatenate(
            [
                loaded.module(*(torch.from_numpy(x[n]) for n in loaded.input_names)).numpy()
                for x in slice_inputs
            ]
        )
    return TinySearch(graph.path, calibration, slice_inputs, reference, loaded.max_sequence_length)
