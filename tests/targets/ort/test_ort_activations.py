"""Every FFN activation bertc supports is found by every ONNX Runtime recipe.

Parametrized over `SUPPORTED_HIDDEN_ACTS` with a tiny seeded model each: the static recipe gives
exactly the FFN output projections 16-bit activations, the fused dynamic recipe finds them as
its sensitivity candidates and reports the activation op in its fp32 list, and both compute
within a tolerance of PyTorch. An activation the tables do not know gets a note, not silence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from bertc.compiler.core.activations import FFN_ACTIVATIONS, SUPPORTED_HIDDEN_ACTS
from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.compiler.core.summary import FP32_REASONS
from bertc.compiler.export import encode, export_onnx
from bertc.compiler.loading import load_model
from bertc.targets.ort.fusion import fuse_transformer
from bertc.targets.ort.patterns import activation_fed_matmuls, encoder_layers
from bertc.targets.ort.quantize import quantize_fused_dynamic, quantize_onnx_runtime
from bertc.targets.ort.recipes import MOBILE, PORTABLE
from bertc.targets.ort.smoothing import smoothable_matmuls
from model_factory import TINY_CONFIG, make_checkpoint, sst2_rows

LAYERS = TINY_CONFIG["num_hidden_layers"]
# Untrained tiny logits are ~0.1; INT8 keeps them within this of fp32 PyTorch.
INT8_LOGIT_ATOL = 0.05
SENTENCES = [text for text, _ in sst2_rows()[:12]]
# What ONNX Runtime's transformer optimizer makes of each variant's activation (the rest stay
# unfused: Relu, Sigmoid·Mul, Softplus·Tanh·Mul).
FUSED_OP = {
    **{act: "Gelu" for act in ("gelu", "gelu_python", "gelu_10")},
    **{
        act: "FastGelu"
        for act in (
            "gelu_new",
            "gelu_fast",
            "gelu_pytorch_tanh",
            "gelu_python_tanh",
            "gelu_accurate",
        )
    },
    "quick_gelu": "QuickGelu",
    "relu": "Relu",
    "silu": "Sigmoid",
    "swish": "Sigmoid",
    "mish": "Softplus",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable:
    """`exported(act)`: (loaded model, fp32 graph, calibration samples) for that hidden_act."""
    cache: dict[str, tuple] = {}

    def build(act: str):
        if act not in cache:
            folder = tmp_path_factory.mktemp(f"act-{act}")
            loaded = load_model(str(make_checkpoint(folder / "checkpoint", {"hidden_act": act})))
            graph = export_onnx(loaded, folder / "model.onnx")
            samples = [encode(loaded, [text], padding_to=None) for text in SENTENCES]
            cache[act] = (loaded, graph, samples)
        return cache[act]

    return build


def pytorch_logits(loaded, samples) -> list[np.ndarray]:
    with torch.no_grad():
        return [
            loaded.module(*(torch.from_numpy(s[name]) for name in loaded.input_names)).numpy()
            for s in samples
        ]


def onnx_logits(path: Path, samples) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    return [session.run(["logits"], {n: s[n] for n in names})[0] for s in samples]


def sixteen_bit_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMuls whose activation input is dequantized from a 16-bit zero point."""
    producers = {output: node for node in model.graph.node for output in node.output}
    wide = {
        init.name
        for init in model.graph.initializer
        if init.data_type in (onnx.TensorProto.UINT16, onnx.TensorProto.INT16)
    }
    return sorted(
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul"
        and (producer := producers.get(node.input[0])) is not None
        and producer.op_type == "DequantizeLinear"
        and len(producer.input) > 2
        and producer.input[2] in wide
    )


def test_the_table_covers_each_variants_export(exported) -> None:
    """The op types the table names for a variant are in its export (gelu_new: Tanh and Pow)."""
    for act in ("gelu", "gelu_new", "quick_gelu", "relu", "mish"):
        ops = Counter(node.op_type for node in onnx.load(str(exported(act)[1].path)).graph.node)
        assert all(ops[op] >= LAYERS for op in FFN_ACTIVATIONS[act] if op != "Tanh"), act
        # the pooler's Tanh is one more
        assert ops["Tanh"] >= (LAYERS + 1 if "Tanh" in FFN_ACTIVATIONS[act] else 1)


@pytest.mark.parametrize("act", SUPPORTED_HIDDEN_ACTS)
def test_the_ffn_output_projections_are_found_in_the_export(exported, act: str) -> None:
    model = onnx.load(str(exported(act)[1].path))
    found = activation_fed_matmuls(model)
    assert encoder_layers(model) == LAYERS
    assert len(found) == LAYERS
    assert all("/output/dense/" in n.name and "/attention/" not in n.name for n in found)


@pytest.mark.parametrize("act", SUPPORTED_HIDDEN_ACTS)
def test_static_recipe_widens_each_ffn_output_projection(
    exported, act: str, tmp_path: Path
) -> None:
    loaded, graph, samples = exported(act)
    recipe = PORTABLE.get(QuantizationMode.STATIC, Recipe.BERT_SAFE)
    quantized, summary = quantize_onnx_runtime(
        graph, tmp_path / "int8.onnx", recipe, samples, tmp_path
    )
    wide = sixteen_bit_matmuls(onnx.load(str(quantized.path)))
    assert len(wide) == LAYERS
    assert all("/output/dense/" in name for name in wide)
    assert summary.settings["sixteen_bit_activations"] == LAYERS
    assert summary.int8_ops["MatMul (16-bit activations)"] == LAYERS
    assert summary.notes == ()
    for want, got in zip(
        pytorch_logits(loaded, samples), onnx_logits(quantized.path, samples), strict=True
    ):
        assert np.abs(want - got).max() <= INT8_LOGIT_ATOL


@pytest.mark.parametrize("act", SUPPORTED_HIDDEN_ACTS)
def test_fused_dynamic_recipe_finds_the_projections_and_lists_the_activation_fp32(
    exported, act: str, tmp_path: Path
) -> None:
    loaded, graph, samples = exported(act)
    config = loaded.config
    fused, _ = fuse_transformer(
        graph,
        tmp_path / "fused.onnx",
        samples[:3],
        config["num_attention_heads"],
        config["hidden_size"],
    )
    recipe = MOBILE.get(QuantizationMode.DYNAMIC, Recipe.BERT_SAFE)
    quantized, summary = quantize_fused_dynamic(
        fused, tmp_path / "int8.onnx", recipe, samples[:4], tmp_path
    )
    assert summary.settings["sensitivity_candidates"] == LAYERS
    fused_model = onnx.load(str(fused.path))
    smoothable = {node.name for node in smoothable_matmuls(fused_model)}
    assert {node.name for node in activation_fed_matmuls(fused_model)} <= smoothable
    assert summary.settings["smoothed_matmuls"] in (0, len(smoothable))  # 0: no smoothing won
    op = FUSED_OP[act]
    ops = Counter(node.op_type for node in onnx.load(str(quantized.path)).graph.node)
    assert ops[op] >= LAYERS
    assert summary.fp32_ops[op] >= LAYERS and op in FP32_REASONS
    assert summary.fp32_reasons[op] == FP32_REASONS[op]
    assert summary.notes == ()
    for want, got in zip(
        pytorch_logits(loaded, samples), onnx_logits(quantized.path, samples), strict=True
    ):
        assert np.abs(want - got).max() <= INT8_LOGIT_ATOL


def test_an_unknown_activation_gets_a_note_in_each_recipe(
    exported, tmp_path: Path, without_the_contract: None
) -> None:
    """hardswish (HardSwish in ONNX) is no activation the tables know (the contract refuses it,
    exit 5): past the contract, both recipes say they found no FFN output projection rather than
    silently skipping."""
    loaded, graph, samples = exported("hardswish")
    static = PORTABLE.get(QuantizationMode.STATIC, Recipe.BERT_SAFE)
    _, summary = quantize_onnx_runtime(graph, tmp_path / "s.onnx", static, samples, tmp_path)
    assert summary.settings["sixteen_bit_activations"] == 0
    assert (
        len(summary.notes) == 1
        and f"found 0 FFN output projection(s) for {LAYERS}" in (summary.notes[0])
    )
    config = loaded.config
    fused, _ = fuse_transformer(
        graph,
        tmp_path / "f.onnx",
        samples[:2],
        config["num_attention_heads"],
        config["hidden_size"],
    )
    dynamic = MOBILE.get(QuantizationMode.DYNAMIC, Recipe.BERT_SAFE)
    _, summary = quantize_fused_dynamic(fused, tmp_path / "d.onnx", dynamic, samples[:2], tmp_path)
    assert summary.settings["sensitivity_candidates"] == 0
    assert len(summary.notes) == 1 and "sensitivity search" in summary.notes[0]
