"""This CPU's GEMM peak as each runtime reaches it: one large MatMul, fp32 and INT8 (QDQ).

The same ONNX graphs run in ONNX Runtime and OpenVINO (INT8 as QuantizeLinear/DequantizeLinear
around the MatMul, which both runtimes turn into an integer GEMM; OpenVINO in f32 for fp32).
`compare.py` divides each artifact's achieved GOP/s by these peaks.

    .venv/bin/python bench/roofline.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROWS, DEPTH, COLUMNS = 512, 1024, 1024  # 1.07 GOP per call: long enough to hide call overhead
REPEATS = 30


def matmul_graph(int8: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((DEPTH, COLUMNS)) * 0.02).astype(np.float32)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [ROWS, DEPTH])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [ROWS, COLUMNS])]
    if not int8:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        initializers = [numpy_helper.from_array(weight, "w")]
    else:
        scales = np.abs(weight).max(axis=0) / 127
        quantized = np.round(weight / scales).astype(np.int8)
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wd"], axis=1),
            helper.make_node("MatMul", ["xd", "wd"], ["y"]),
        ]
        initializers = [
            numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
            numpy_helper.from_array(np.array(128, np.uint8), "x_zero"),
            numpy_helper.from_array(quantized, "wq"),
            numpy_helper.from_array(scales.astype(np.float32), "w_scale"),
            numpy_helper.from_array(np.zeros(COLUMNS, np.int8), "w_zero"),
        ]
    graph = helper.make_graph(nodes, "gemm", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def gops(call: Callable[[], object]) -> float:
    for _ in range(3):
        call()
    seconds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return 2 * ROWS * DEPTH * COLUMNS / statistics.median(seconds) / 1e9


def onnxruntime_gops(path: Path, threads: int) -> float:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((ROWS, DEPTH)).astype(np.float32)
    return gops(lambda: session.run(None, {"x": x}))


def openvino_gops(path: Path, threads: int) -> float:
    import openvino

    compiled = openvino.Core().compile_model(
        str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    )
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).standard_normal((ROWS, DEPTH)).astype(np.float32)
    return gops(lambda: request.infer({0: x}))


def runtime_peaks(threads: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for kind, int8 in (("fp32", False), ("int8", True)):
            paths[kind] = Path(folder) / f"gemm-{kind}.onnx"
            onnx.save(matmul_graph(int8), str(paths[kind]))
        return {
            runtime: {f"{kind}_gops": measure(path, threads) for kind, path in paths.items()}
            for runtime, measure in (("onnxruntime", onnxruntime_gops), ("openvino", openvino_gops))
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for runtime, peaks in runtime_peaks(args.threads).items():
        print(
            f"{runtime}: fp32 {peaks['fp32_gops']:.0f} GOP/s, int8 {peaks['int8_gops']:.0f} GOP/s"
        )


if __name__ == "__main__":
    main()
