"""ONNX Runtime sessions shared by the `onnx` and `ort-mobile` targets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


class OrtRunner:
    """An `onnxruntime.InferenceSession` on the CPU execution provider."""

    def __init__(self, model_path: Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = tuple(item.name for item in self.session.get_inputs())
        self.output_names = tuple(item.name for item in self.session.get_outputs())

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, {name: inputs[name] for name in self.input_names})


def onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
