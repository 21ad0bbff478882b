"""INT8 with onnxruntime.quantization: what the written graph holds, and how close it computes.

Like onnxruntime's own quantization tests (op_test_utils.py), these read the graph's structure
as well as its numbers: which ops read int8 weights, which stay fp32, and the summary that the
manifest reports about them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from bertc.compiler.core.errors import QuantizationError
from bertc.compiler.export import DEFAULT_PARITY_ATOL, encode, export_onnx
from bertc.compiler.loading import load_model
from bertc.targets.ort.quantize import (
    FP32_REASONS,
    InputsReader,
    QuantizationMode,
    choose_fp32_matmuls,
    classify_onnx_ops,
    mean_squared_output_error,
    quantize_onnx_runtime,
)
from bertc.targets.ort.recipes import PORTABLE
from model_factory import TINY_CONFIG

LAYERS = TINY_CONFIG["num_hidden_layers"]
WEIGHT_MATMULS_PER_LAYER = 6  # query, key, value, attention output, intermediate, output
ACTIVATION_MATMULS_PER_LAYER = 2  # scores (Q·Kᵀ) and context (probabilities·V)
# INT8 logits of the tiny classifier (margins ≈ 5) stay within this of fp32 PyTorch.
INT8_LOGIT_ATOL = 0.05
MIN_AGREEMENT = 0.95


class Graph:
    """Index of an ONNX graph: who produces and who consumes each tensor, and the initializers."""

    def __init__(self, path: Path) -> None:
        self.model = onnx.load(str(path))
        self.nodes = list(self.model.graph.node)
        self.producers = {name: node for node in self.nodes for name in node.output}
        self.initializers = {init.name: init for init in self.model.graph.initializer}

    def of_type(self, op_type: str) -> list[onnx.NodeProto]:
        return [node for node in self.nodes if node.op_type == op_type]

    def producer_type(self, tensor: str) -> str | None:
        producer = self.producers.get(tensor)
        return producer.op_type if producer is not None else None

    def dequantized_initializer(self, tensor: str) -> onnx.TensorProto | None:
        """The initializer a DequantizeLinear turns into `tensor`, if that is how it is made."""
        producer = self.producers.get(tensor)
        if producer is None or producer.op_type != "DequantizeLinear":
            return None
        return self.initializers.get(producer.input[0])


def run_onnx(path: Path, batch: dict[str, np.ndarray]) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], batch)[0]


@pytest.fixture(scope="module")
def static_artifact(compile_once, tiny_classifier: Path):
    return compile_once(tiny_classifier, "onnx")


@pytest.fixture(scope="module")
def static_graph(static_artifact) -> Graph:
    return Graph(static_artifact.artifact_dir / "model.int8-qdq.onnx")


def test_static_int8_quantizes_exactly_the_weight_matmuls(static_graph: Graph) -> None:
    matmuls = static_graph.of_type("MatMul")
    weighted = [
        node for node in matmuls if static_graph.dequantized_initializer(node.input[1]) is not None
    ]
    fed_by_dequantize = [
        node
        for node in matmuls
        if any(static_graph.producer_type(name) == "DequantizeLinear" for name in node.input)
    ]
    assert len(weighted) == WEIGHT_MATMULS_PER_LAYER * LAYERS
    # Attention products read no weight: they must see fp32 activations, not a QDQ pair.
    assert fed_by_dequantize == weighted
    assert len(matmuls) - len(weighted) == ACTIVATION_MATMULS_PER_LAYER * LAYERS
    for node in weighted:
        weight = static_graph.dequantized_initializer(node.input[1])
        assert weight.data_type == onnx.TensorProto.INT8
        scale = static_graph.initializers[static_graph.producers[node.input[1]].input[1]]
        assert list(scale.dims) == [weight.dims[1]]  # per output channel


def test_norms_and_softmax_read_fp32(static_graph: Graph) -> None:
    for op_type in ("LayerNormalization", "Softmax"):
        nodes = static_graph.of_type(op_type)
        assert nodes
        for node in nodes:
            producers = {static_graph.producer_type(name) for name in node.input}
            assert "DequantizeLinear" not in producers, node.name


def test_word_embeddings_are_8_bit_and_token_types_fp32(
    static_graph: Graph, tiny_classifier: Path
) -> None:
    gathers = {node.input[1]: node for node in static_graph.of_type("Gather")}
    word = gathers["input_ids"]
    table = static_graph.dequantized_initializer(word.input[0])
    # ORT 1.32 quantizes a Gather's table with the activation type (uint8), not weight_type.
    assert table is not None and table.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    vocab_size = len((tiny_classifier / "vocab.txt").read_text().splitlines())
    assert list(table.dims) == [vocab_size, TINY_CONFIG["hidden_size"]]
    token_types = gathers["token_type_ids"]
    assert static_graph.initializers[token_types.input[0]].data_type == onnx.TensorProto.FLOAT


def sixteen_bit_activation_matmuls(graph: Graph) -> list[str]:
    """Weight MatMuls whose activation input is dequantized from 16 bits."""
    names = []
    for node in graph.of_type("MatMul"):
        producer = graph.producers.get(node.input[0])
        if producer is None or producer.op_type != "DequantizeLinear" or len(producer.input) < 3:
            continue
        zero_point = graph.initializers.get(producer.input[2])
        if zero_point is not None and zero_point.data_type in (
            onnx.TensorProto.UINT16,
            onnx.TensorProto.INT16,
        ):
            names.append(node.name)
    return names


def test_summary_reports_what_the_graph_holds(static_artifact, static_graph: Graph) -> None:
    summary = static_artifact.manifest["quantization"]
    assert summary.int8_ops == classify_onnx_ops(static_graph.model)[0]
    matmuls = {op: count for op, count in summary.int8_ops.items() if op.startswith("MatMul")}
    assert sum(matmuls.values()) == WEIGHT_MATMULS_PER_LAYER * LAYERS
    wide = sixteen_bit_activation_matmuls(static_graph)
    assert matmuls.get("MatMul (16-bit activations)", 0) == len(wide)
    assert summary.int8_ops["Gather"] == 1  # the word embeddings (the position table is small)
    assert summary.fp32_ops["MatMul"] == ACTIVATION_MATMULS_PER_LAYER * LAYERS
    assert summary.fp32_ops["LayerNormalization"] == 1 + 2 * LAYERS
    assert summary.fp32_ops["Softmax"] == LAYERS
    assert set(summary.fp32_reasons) == set(summary.fp32_ops) & set(FP32_REASONS)
    assert summary.mode == "static"
    assert summary.calibration_samples == 16
    assert summary.tool == f"onnxruntime {onnxruntime.__version__}"


def test_ffn_output_projections_read_sixteen_bit_activations(static_graph: Graph) -> None:
    """The recipe widens exactly the activations after GELU, one FFN output per layer."""
    wide = sixteen_bit_activation_matmuls(static_graph)
    assert len(wide) == LAYERS
    assert all("/output/dense/" in name and "/attention/" not in name for name in wide)


def test_static_int8_logits_stay_close_to_pytorch(static_artifact, reference) -> None:
    batch, expected = reference
    actual = run_onnx(static_artifact.artifact_dir / "model.int8-qdq.onnx", batch)
    assert set(expected.argmax(axis=1)) == {0, 1}  # both classes occur: agreement means something
    assert np.abs(actual - expected).max() <= INT8_LOGIT_ATOL
    assert (actual.argmax(axis=1) == expected.argmax(axis=1)).mean() >= MIN_AGREEMENT


def test_dynamic_int8_uses_integer_matmuls(compile_once, tiny_classifier: Path, reference) -> None:
    result = compile_once(tiny_classifier, "onnx", quantization="dynamic")
    path = result.artifact_dir / "model.int8-dynamic.onnx"
    graph = Graph(path)
    counts = Counter(node.op_type for node in graph.nodes)
    # The encoder's weight MatMuls plus the pooler and classifier (Gemm, made MatMul by ORT).
    assert counts["MatMulInteger"] == WEIGHT_MATMULS_PER_LAYER * LAYERS + 2
    assert counts["MatMul"] == ACTIVATION_MATMULS_PER_LAYER * LAYERS
    summary = result.manifest["quantization"]
    assert summary.int8_ops == {"Gather": 1, "MatMulInteger": counts["MatMulInteger"]}
    assert summary.calibration_samples == 0
    assert result.manifest["calibration"] is None
    batch, expected = reference
    actual = run_onnx(path, batch)
    assert np.abs(actual - expected).max() <= 2 * INT8_LOGIT_ATOL
    assert (actual.argmax(axis=1) == expected.argmax(axis=1)).mean() >= MIN_AGREEMENT


def test_quantization_none_copies_the_fp32_graph(compile_once, tiny_classifier: Path, reference):
    result = compile_once(tiny_classifier, "onnx", quantization="none")
    assert result.manifest["quantization"] is None
    path = result.artifact_dir / "model.fp32.onnx"
    assert not any(node.op_type.endswith("QuantizeLinear") for node in Graph(path).nodes)
    batch, expected = reference
    np.testing.assert_allclose(run_onnx(path, batch), expected, rtol=0, atol=DEFAULT_PARITY_ATOL)


def test_static_quantization_without_samples_is_refused(
    tiny_classifier: Path, tmp_path: Path
) -> None:
    graph = export_onnx(load_model(str(tiny_classifier)), tmp_path / "model.onnx")
    with pytest.raises(QuantizationError, match="calibration samples"):
        recipe = PORTABLE.get(QuantizationMode.STATIC)
        quantize_onnx_runtime(graph, tmp_path / "q.onnx", recipe, [], tmp_path)


def test_calibration_reader_replays_every_sample_after_rewind() -> None:
    samples = [{"input_ids": np.full((1, length), 7, dtype=np.int64)} for length in (3, 5, 4)]
    reader = InputsReader(samples)
    first = [reader.get_next() for _ in range(4)]
    reader.rewind()
    second = [reader.get_next() for _ in range(4)]
    for run in (first, second):
        assert [sample["input_ids"].shape[1] for sample in run[:3]] == [3, 5, 4]
        assert run[3] is None


def test_onnxruntime_qdq_ignores_matmul_const_b_only(tiny_classifier: Path, tmp_path: Path):
    """Why bertc excludes the attention MatMuls by name (compiler/quantize.py): onnxruntime's QDQ
    quantizer does not honour `MatMulConstBOnly`. When this fails, the workaround can go."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    loaded = load_model(str(tiny_classifier))
    graph = export_onnx(loaded, tmp_path / "model.onnx")
    quant_pre_process(str(graph.path), str(tmp_path / "prepared.onnx"), skip_symbolic_shape=True)
    samples = [encode(loaded, ["a warm and funny film ."], padding_to=None)]
    quantize_static(
        str(tmp_path / "prepared.onnx"),
        str(tmp_path / "quantized.onnx"),
        InputsReader(samples),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        extra_options={"MatMulConstBOnly": True},
    )
    quantized = Graph(tmp_path / "quantized.onnx")
    activation_products = [
        node
        for node in quantized.of_type("MatMul")
        if quantized.dequantized_initializer(node.input[1]) is None
    ]
    assert len(activation_products) == ACTIVATION_MATMULS_PER_LAYER * LAYERS
    assert all(
        quantized.producer_type(node.input[1]) == "DequantizeLinear" for node in activation_products
    )


def error_table(errors: dict[tuple[str, ...], float]):
    """A fake output-error measurement: the error of each fp32 set, and a log of the calls."""
    calls: list[tuple[str, ...]] = []

    def output_error(fp32: tuple[str, ...]) -> float:
        calls.append(fp32)
        return errors[tuple(sorted(fp32))]

    return output_error, calls


def test_sensitivity_search_keeps_the_matmul_that_removes_most_error() -> None:
    output_error, calls = error_table({(): 1.0, ("a",): 0.95, ("b",): 0.6, ("c",): 0.9})
    kept, measured = choose_fp32_matmuls(["a", "b", "c"], output_error, share=0.2, limit=1)
    assert kept == ("b",)
    assert measured == {"": 1.0, "a": 0.95, "b": 0.6, "c": 0.9}
    assert len(calls) == 4  # all INT8, then each candidate once


def test_sensitivity_search_keeps_nothing_below_the_share() -> None:
    output_error, _ = error_table({(): 1.0, ("a",): 0.85, ("b",): 0.9})
    kept, _ = choose_fp32_matmuls(["a", "b"], output_error, share=0.2, limit=2)
    assert kept == ()


def test_sensitivity_search_goes_on_from_the_error_it_reached() -> None:
    errors = {(): 1.0, ("a",): 0.5, ("b",): 0.9, ("a", "b"): 0.3, ("a", "c"): 0.45, ("c",): 1.0}
    output_error, _ = error_table(errors)
    kept, measured = choose_fp32_matmuls(["a", "b", "c"], output_error, share=0.2, limit=2)
    assert kept == ("a", "b")  # 0.5 -> 0.3 is 40% of what was left
    assert measured["a+b"] == 0.3 and measured["a+c"] == 0.45
    output_error, _ = error_table(errors)
    assert choose_fp32_matmuls(["a", "b", "c"], output_error, share=0.2, limit=1)[0] == ("a",)


def test_mean_squared_output_error_weighs_every_element() -> None:
    reference = [np.array([[1.0, -1.0]]), np.array([[0.0, 2.0]])]
    candidate = [np.array([[1.0, -2.0]]), np.array([[0.0, 2.0]])]
    assert mean_squared_output_error(reference, candidate) == pytest.approx(0.25)
    assert mean_squared_output_error(reference, reference) == 0.0
