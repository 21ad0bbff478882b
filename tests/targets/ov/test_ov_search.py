"""The OpenVINO target's accuracy-budget search (targets/ov/search.py) on tiny seeded BERTs.

The planted model has one deliberately sensitive op: layer 1's query carries a constant
outlier channel whose key channel is zero (`model_factory.plant_query_outlier`), so fp32 is
unchanged but the attention-scores input's 8-bit scale drowns every other channel. The control
model is the same with the outlier at 0: the same fp32 function, nothing to protect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bertc.compiler.core.budget import Budget
from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.targets.ov import recipes
from bertc.targets.ov import search as ov_search
from model_factory import make_checkpoint
from ov_search_helpers import TinySearch, tiny_search

LAYER = 1
OUTLIER = 1e4
SHARPEN = 8.0
# OpenVINO's frontend fuses the layer's Q·Kᵀ / softmax / ·V into this op.
PLANTED = f"/model/bert/encoder/layer.{LAYER}/attention/self/MatMul_1"
RECIPE = recipes.RECIPES.get(QuantizationMode.STATIC, Recipe.BERT_SAFE)


def _tiny(tmp_path_factory: pytest.TempPathFactory, outlier: float) -> TinySearch:
    work = tmp_path_factory.mktemp(f"ov-search-{outlier:g}")
    checkpoint = make_checkpoint(
        work / "checkpoint", train_steps=60, query_outlier=(LAYER, outlier, SHARPEN)
    )
    return tiny_search(checkpoint, work)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> TinySearch:
    return _tiny(tmp_path_factory, OUTLIER)


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> TinySearch:
    return _tiny(tmp_path_factory, 0.0)


@pytest.fixture(scope="module")
def planted_search(planted: TinySearch):
    lines: list[str] = []
    request = planted.request(Budget(), lines=lines)
    return ov_search.search_openvino(planted.fp32_model(), RECIPE, request), lines


def test_the_planted_outlier_leaves_fp32_unchanged(planted: TinySearch, control: TinySearch):
    np.testing.assert_allclose(planted.reference, control.reference, atol=1e-4)


def test_a_model_int8_runs_well_stops_at_the_recipe(control: TinySearch) -> None:
    lines: list[str] = []
    result = ov_search.search_openvino(
        control.fp32_model(), RECIPE, control.request(Budget(), lines=lines)
    )
    record = result.record
    assert result.met and record["met"] and not record["kept_best"]
    assert [c["name"] for c in record["candidates"]] == ["recipe (all INT8)"]
    assert record["candidates"][0]["precision"] == {}
    assert not ov_search.floating_point_matmuls(result.model)
    assert len(lines) == 1 and lines[0].startswith("budget: candidate 1 of ")


def test_the_head_is_what_follows_the_last_layer_norm(control: TinySearch) -> None:
    assert ov_search.head_matmuls(control.fp32_model()) == [
        "/model/bert/pooler/dense/Gemm/WithoutBiases",
        "/model/classifier/Gemm/WithoutBiases",
    ]


def test_the_noise_measure_ranks_the_planted_op_first(planted: TinySearch) -> None:
    all_int8 = ov_search.quantize_with_nncf(planted.fp32_model(), RECIPE, planted.calibration)
    ranked = ov_search.input_noise(all_int8, planted.slice_inputs[: ov_search.NOISE_SAMPLES])
    assert ov_search.noisiest_matmuls(ranked)[0] == PLANTED
    assert ranked[0][0] > 10 * ranked[1][0]


def test_the_search_protects_the_planted_op_and_meets_the_budget(planted_search) -> None:
    result, lines = planted_search
    record = result.record
    candidates = record["candidates"]
    assert not candidates[0]["meets_budget"]  # all INT8 breaks on the outlier
    chosen = next(c for c in candidates if c["name"] == record["chosen"])
    assert result.met and record["met"] and chosen["meets_budget"]
    assert chosen["precision"].get(PLANTED) == ov_search.FP32
    assert PLANTED in ov_search.floating_point_matmuls(result.model)
    agreement = chosen["figures"]["agreement"]
    assert agreement >= Budget().agreement_floor(regression=False)
    # the fastest of those meeting the budget
    meeting = [c for c in candidates if c["meets_budget"]]
    assert chosen["latency_ms"] == min(c["latency_ms"] for c in meeting)
    assert len(lines) == len(candidates)
    for number, line in enumerate(lines, start=1):
        assert line.startswith(f"budget: candidate {number} of ")


def test_the_chosen_model_is_what_the_artifact_runs(planted: TinySearch, planted_search) -> None:
    result, _ = planted_search
    run = ov_search.bucket_runner(result.model, planted.max_sequence_length)
    outputs = [run(inputs)[0] for inputs in planted.slice_inputs]
    figures = planted.request(Budget()).search.score(outputs)
    chosen = next(c for c in result.record["candidates"] if c["name"] == result.record["chosen"])
    assert figures.agreement == pytest.approx(chosen["figures"]["agreement"])
    assert figures.meets(Budget())


def test_the_openvino_target_writes_the_chosen_model_and_its_record(
    planted: TinySearch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """targets/openvino.py's build runs the search when the request carries one."""
    import openvino
    from bertc.compiler.core.graph import OnnxGraph
    from bertc.targets.base import get_target

    calls: list[int] = []
    real = ov_search.search_openvino

    def counted(model, recipe, request):
        calls.append(1)
        return real(model, recipe, request)

    monkeypatch.setattr("bertc.targets.openvino.search_openvino", counted)
    monkeypatch.setattr(ov_search, "quantize_with_accuracy_control", _fail_if_called)
    request = planted.request(Budget(max_drop=100.0, min_agreement=0.0))  # any candidate meets
    graph = OnnxGraph(planted.onnx, tuple(planted.calibration[0]), ("logits",), 17)
    build = get_target("openvino").build(graph, request, tmp_path)
    assert calls == [1]
    assert build.search is not None and build.search["met"]
    assert build.search["chosen"] == "recipe (all INT8)"
    assert (tmp_path / "model.xml").is_file()
    written = openvino.Core().read_model(str(tmp_path / "model.xml"))
    assert sum(op.get_type_name() == "FakeQuantize" for op in written.get_ordered_ops()) > 0


def _fail_if_called(*_args, **_kwargs):
    raise AssertionError("a met budget must not run NNCF's accuracy control")
