"""ONNX Runtime's transformer fusions (compiler/ort_fusion.py): attention fused, the slower
SkipLayerNormalization left out, outputs unchanged, and a moved output refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from bertc.compiler.core.errors import ParityError
from bertc.targets.ort.fusion import fuse_transformer, max_output_difference
from model_factory import TINY_CONFIG

LAYERS = TINY_CONFIG["num_hidden_layers"]
HEADS = TINY_CONFIG["num_attention_heads"]
HIDDEN = TINY_CONFIG["hidden_size"]


def test_attention_fuses_and_skip_layer_norm_does_not(tiny_onnx, tmp_path: Path) -> None:
    graph, samples = tiny_onnx
    fused, report = fuse_transformer(graph, tmp_path / "fused.onnx", samples, HEADS, HIDDEN)
    ops = Counter(node.op_type for node in onnx.load(str(fused.path)).graph.node)
    assert ops["Attention"] == LAYERS and ops["Gelu"] == LAYERS
    assert ops["SkipLayerNormalization"] == 0 and ops["EmbedLayerNormalization"] == 0
    assert ops["LayerNormalization"] == 2 * LAYERS + 1  # embeddings + two per layer, unfused
    assert report.fused_ops["Attention"] == LAYERS
    assert report.samples_checked == len(samples)
    # The report's difference is the one a fresh comparison finds.
    assert report.max_abs_diff == max_output_difference(graph.path, fused.path, samples)
    assert report.max_abs_diff <= 1e-4


def test_a_fusion_that_moves_outputs_is_refused(tiny_onnx, tmp_path: Path) -> None:
    graph, samples = tiny_onnx
    with pytest.raises(ParityError, match="transformer fusions moved the outputs"):
        fuse_transformer(graph, tmp_path / "fused.onnx", samples, HEADS, HIDDEN, tolerance=-1.0)


def test_output_difference_sees_a_changed_weight(tiny_onnx, tmp_path: Path) -> None:
    graph, samples = tiny_onnx
    model = onnx.load(str(graph.path))
    classifier = [node for node in model.graph.node if node.op_type == "Gemm"][-1]  # logits
    bias = next(init for init in model.graph.initializer if init.name == classifier.input[2])
    shifted = onnx.numpy_helper.to_array(bias) + np.float32(0.5)
    bias.CopyFrom(onnx.numpy_helper.from_array(shifted, bias.name))
    onnx.save(model, str(tmp_path / "shifted.onnx"))
    assert max_output_difference(graph.path, tmp_path / "shifted.onnx", samples) == pytest.approx(
        0.5, abs=1e-5
    )
