"""ONNX export and the parity gate: the fp32 graph computes what PyTorch computes, at any shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from bertc.compiler.core.errors import ParityError
from bertc.compiler.export import (
    DEFAULT_OPSET,
    DEFAULT_PARITY_ATOL,
    FIRST_TOKEN_REWRITE,
    PARITY_BATCH_SIZES,
    PARITY_SENTENCES,
    FirstTokenLastLayer,
    check_parity,
    encode,
    export_onnx,
    module_for_export,
)
from bertc.compiler.loading import load_model
from model_factory import read_sst2_dev


def torch_outputs(loaded, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = loaded.module(*(torch.from_numpy(batch[name]) for name in loaded.input_names))
    return [output.numpy() for output in (outputs if isinstance(outputs, tuple) else (outputs,))]


def onnx_outputs(path: Path, names, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(list(names), batch)


@pytest.fixture(scope="module")
def exported_classifier(tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory):
    loaded = load_model(str(tiny_classifier))
    graph = export_onnx(loaded, tmp_path_factory.mktemp("export") / "model.fp32.onnx")
    return loaded, graph


@pytest.fixture(scope="module")
def exported_encoder(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory):
    loaded = load_model(str(tiny_encoder))
    graph = export_onnx(loaded, tmp_path_factory.mktemp("export") / "encoder.fp32.onnx")
    return loaded, graph


def test_graph_is_standard_onnx_at_the_declared_opset(exported_classifier) -> None:
    _, graph = exported_classifier
    model = onnx.load(str(graph.path))
    assert graph.opset == DEFAULT_OPSET
    assert {entry.domain for entry in model.opset_import} <= {"", "ai.onnx"}
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    assert [value.name for value in model.graph.input] == list(graph.input_names)
    assert [value.name for value in model.graph.output] == ["logits"]
    layers = 2
    # One LayerNormalization op per norm (opset 17), not the decomposed mean/variance arithmetic.
    op_types = [node.op_type for node in model.graph.node]
    assert op_types.count("LayerNormalization") == 1 + 2 * layers


@pytest.mark.parametrize(("batch_size", "padding_to"), [(1, None), (5, None), (40, None), (3, 96)])
def test_fp32_graph_matches_pytorch_at_shapes_it_was_not_traced_at(
    exported_classifier, glue_data_dir: Path, batch_size: int, padding_to: int | None
) -> None:
    loaded, graph = exported_classifier
    sentences = [text for text, _ in read_sst2_dev(glue_data_dir)][:batch_size]
    batch = encode(loaded, sentences, padding_to=padding_to)
    (expected,) = torch_outputs(loaded, batch)
    (actual,) = onnx_outputs(graph.path, graph.output_names, batch)
    assert actual.shape == (len(sentences), 2)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=DEFAULT_PARITY_ATOL)


def test_parity_gate_checks_every_batch_size_and_the_full_length(exported_classifier) -> None:
    loaded, graph = exported_classifier
    checked = check_parity(loaded, graph)
    parity = checked.parity
    assert parity.passed
    assert parity.tolerance == DEFAULT_PARITY_ATOL
    assert 0 <= parity.max_abs_diff <= DEFAULT_PARITY_ATOL
    assert {batch for batch, _ in parity.shapes_checked} >= set(PARITY_BATCH_SIZES)
    assert (3, loaded.max_sequence_length) in parity.shapes_checked
    assert len({length for _, length in parity.shapes_checked}) >= 2


def test_parity_gate_fails_with_the_numbers_when_the_graph_differs(
    tiny_classifier: Path, tmp_path: Path
) -> None:
    loaded = load_model(str(tiny_classifier))
    graph = export_onnx(loaded, tmp_path / "model.onnx")
    with torch.no_grad():  # PyTorch now computes something else than the exported graph
        loaded.module.model.classifier.bias.add_(0.01)
    with pytest.raises(ParityError) as raised:
        check_parity(loaded, graph)
    message = str(raised.value)
    assert "\n" not in message
    assert f"within {DEFAULT_PARITY_ATOL:g}" in message
    # Every batch misses by about the bias change, and each miss is named with its shape.
    assert message.count("logits at batch×length") == len(PARITY_BATCH_SIZES) + 1
    assert "max |Δ| 1.00e-02" in message


def test_encoder_graph_outputs_states_and_masked_mean_embedding(
    exported_encoder, glue_data_dir: Path
) -> None:
    loaded, graph = exported_encoder
    model = onnx.load(str(graph.path))
    assert [value.name for value in model.graph.output] == [
        "last_hidden_state",
        "sentence_embedding",
    ]
    sentences = [text for text, _ in read_sst2_dev(glue_data_dir)][:7]
    batch = encode(loaded, sentences, padding_to=None)
    hidden, embedding = onnx_outputs(graph.path, graph.output_names, batch)
    expected_hidden, expected_embedding = torch_outputs(loaded, batch)
    np.testing.assert_allclose(hidden, expected_hidden, rtol=0, atol=DEFAULT_PARITY_ATOL)
    np.testing.assert_allclose(embedding, expected_embedding, rtol=0, atol=DEFAULT_PARITY_ATOL)
    mask = batch["attention_mask"][..., None].astype(np.float64)
    assert mask.min() == 0  # padded rows: a mean over all positions would differ
    numpy_mean = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
    np.testing.assert_allclose(embedding, numpy_mean, rtol=0, atol=1e-5)
    assert not np.allclose(embedding, hidden.mean(axis=1), atol=1e-3)


def last_layer_row_counts(path: Path, batch: dict[str, np.ndarray]) -> dict[str, int]:
    """Rows (the sequence axis) that each MatMul of the last encoder layer reads when the graph
    runs on `batch`: 1 where the rewrite cut the layer, the batch's length where it did not."""
    model = onnx.load(str(path))
    matmuls = [
        node for node in model.graph.node if node.op_type == "MatMul" and "layer." in node.name
    ]
    last = max(int(node.name.split("layer.")[1].split("/")[0]) for node in matmuls)
    probed = {
        node.name.split(f"layer.{last}/")[1]: node.input[0]
        for node in matmuls
        if f"layer.{last}/" in node.name
    }
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in probed.values())
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    values = session.run(list(probed.values()), batch)
    return {key: value.shape[1] for key, value in zip(probed, values, strict=True)}


def test_classifier_last_layer_runs_its_feed_forward_on_the_first_token_only(
    exported_classifier,
) -> None:
    loaded, graph = exported_classifier
    batch = encode(loaded, PARITY_SENTENCES[:2], padding_to=None)
    length = batch["input_ids"].shape[1]
    rows = last_layer_row_counts(graph.path, batch)
    assert graph.rewrites == (FIRST_TOKEN_REWRITE,)
    assert rows["intermediate/dense/MatMul"] == 1
    assert rows["output/dense/MatMul"] == 1
    # Attention still reads every position: the query, key and value projections are not cut.
    assert rows["attention/self/query/MatMul"] == length > 1
    assert rows["attention/self/key/MatMul"] == length


def test_first_token_rewrite_is_exact_on_padded_batches(tiny_classifier: Path) -> None:
    loaded = load_model(str(tiny_classifier))
    rewritten, rewrites = module_for_export(loaded)
    assert rewrites == (FIRST_TOKEN_REWRITE,)
    assert isinstance(rewritten.model.bert.encoder.layer[-1], FirstTokenLastLayer)
    assert not isinstance(loaded.module.model.bert.encoder.layer[-1], FirstTokenLastLayer)
    batch = encode(loaded, ["a short one", "a much longer sentence with padding after it"], None)
    with torch.no_grad():
        args = [torch.from_numpy(batch[name]) for name in loaded.input_names]
        expected, actual = loaded.module(*args), rewritten(*args)
    assert batch["attention_mask"].min() == 0  # the batch really is padded
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_encoder_is_exported_without_rewrites(exported_encoder) -> None:
    loaded, graph = exported_encoder
    assert graph.rewrites == ()
    assert module_for_export(loaded)[0] is loaded.module
    batch = encode(loaded, PARITY_SENTENCES[:2], padding_to=None)
    rows = last_layer_row_counts(graph.path, batch)
    assert rows["output/dense/MatMul"] == batch["input_ids"].shape[1] > 1
