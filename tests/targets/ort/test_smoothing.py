"""SmoothQuant-style migration (compiler/smoothing.py): exact in fp32, evens out the activation
ranges that dynamic INT8 quantizes per tensor, and touches only the MatMuls it should."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from bertc.targets.ort.fusion import fuse_transformer, max_output_difference
from bertc.targets.ort.smoothing import (
    SCALE_BOUNDS,
    channel_amax,
    smooth_graph,
    smoothable_matmuls,
    smoothing_scales,
    smoothing_statistics,
)
from model_factory import TINY_CONFIG

LAYERS = TINY_CONFIG["num_hidden_layers"]


@pytest.fixture(scope="module")
def fused(tiny_onnx, tmp_path_factory: pytest.TempPathFactory):
    graph, samples = tiny_onnx
    heads, hidden = TINY_CONFIG["num_attention_heads"], TINY_CONFIG["hidden_size"]
    path = tmp_path_factory.mktemp("smoothing") / "fused.onnx"
    fused_graph, _ = fuse_transformer(graph, path, samples, heads, hidden)
    return fused_graph.path, samples


def test_scales_follow_the_formula_and_stay_bounded() -> None:
    activation = np.array([4.0, 1.0, 0.0], dtype=np.float32)
    weight = np.array([[1.0, -1.0], [-0.25, 0.1], [2.0, 0.0]], dtype=np.float32)
    scales = smoothing_scales(activation, weight, alpha=0.5)
    np.testing.assert_allclose(scales[:2], [np.sqrt(4.0 / 1.0), np.sqrt(1.0 / 0.25)], rtol=1e-6)
    assert scales[2] == SCALE_BOUNDS[0]  # a dead channel gets the lower bound, not 0
    np.testing.assert_allclose(smoothing_scales(activation, weight, alpha=1.0)[:2], [4.0, 1.0])


def test_ffn_projections_are_smoothed_and_attention_is_not(fused) -> None:
    path, _ = fused
    names = [node.name for node in smoothable_matmuls(onnx.load(str(path)))]
    assert all("/intermediate/" in name or "/output/dense" in name for name in names)
    assert not any("attention" in name for name in names)
    # Every layer's FFN output projection reads GELU; the last layer's FFN input reads the
    # [CLS] row sliced out of its LayerNorm's output, so it is not smoothed.
    assert sum("/output/dense" in name for name in names) == LAYERS
    assert sum("/intermediate/" in name for name in names) == LAYERS - 1


def test_smoothing_is_exact_and_evens_out_the_ranges(fused, tmp_path: Path) -> None:
    path, samples = fused
    smoothed = tmp_path / "smoothed.onnx"
    names = smooth_graph(path, smoothed, smoothing_statistics(path, samples), alpha=0.8)
    assert max_output_difference(path, smoothed, samples) <= 1e-5
    model = onnx.load(str(smoothed))
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["Mul"] - Counter(n.op_type for n in onnx.load(str(path)).graph.node)["Mul"] == len(
        names
    )
    matmuls = {node.name: node for node in model.graph.node if node.name in names}
    original = {node.name: node for node in onnx.load(str(path)).graph.node if node.name in names}
    before = channel_amax(path, [original[name].input[0] for name in names], samples)
    after = channel_amax(smoothed, [matmuls[name].input[0] for name in names], samples)

    def spread(amax: np.ndarray) -> float:
        return float(amax.max() / np.median(amax))

    for name in names:
        assert spread(after[matmuls[name].input[0]]) < spread(before[original[name].input[0]])
