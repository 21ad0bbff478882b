"""ONNX Runtime facts the `onnx` and `ort-mobile` targets record (runs go through
`bertc.targets.loader`)."""

from __future__ import annotations


def onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
