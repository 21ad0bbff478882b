"""The ONNX Runtime targets' accuracy-budget search (targets/ort/search.py) on a tiny seeded BERT
regressor (STS-B-style: its scores vary smoothly with the input, so the slice's Pearson with fp32
measures INT8 noise; the saturated tiny classifier never flips) with one deliberately sensitive
MatMul: layer 1's attention output projection reads an outlier
channel (the value projection's channel 0 scaled by OUTLIER, the projection's input row divided
by it: the same fp32 function), so one activation scale per tensor cannot hold its input. The
search must find that node, keep it fp32, and build an artifact within the budget."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from bertc.calibration.slices import scorer
from bertc.calibration.tasks import get_task
from bertc.compiler.core.budget import Budget, BudgetNotMetError, SearchRequest
from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.targets.base import BuildRequest, get_target
from bertc.targets.ort.search import (
    SessionSettings,
    climb,
    rank_by_sensitivity,
    session_runner,
)
from model_factory import make_checkpoint, sst2_rows

OUTLIER = 400.0
LAYER = 1
CHANNEL = 0
CALIBRATION = 16
SLICE = 200
PLANTED = f"/model/bert/encoder/layer.{LAYER}/attention/output/dense/MatMul"
# What all-INT8 misses and the planted node's fp32 copy meets on the tiny model (measured:
# Pearson with fp32 0.9948 / 0.9909 all INT8, 0.9983 / 0.9997 planted fp32, dynamic / static).
BUDGET = Budget(max_drop=0.3, min_agreement=0.997)


def plant_outlier(source: Path, destination: Path) -> Path:
    """A copy of the checkpoint with one outlier channel in front of PLANTED."""
    import shutil

    import torch
    from transformers import BertForSequenceClassification

    shutil.copytree(source, destination)
    model = BertForSequenceClassification.from_pretrained(str(source)).eval()
    layer = model.bert.encoder.layer[LAYER].attention
    with torch.no_grad():
        layer.self.value.weight[CHANNEL] *= OUTLIER
        layer.self.value.bias[CHANNEL] *= OUTLIER
        layer.output.dense.weight[:, CHANNEL] /= OUTLIER
    model.save_pretrained(str(destination))
    return destination


def sentences(count: int) -> list[str]:
    """Distinct sentences made of the tiny SST-2 rows, two at a time."""
    texts = [text for text, _ in sst2_rows()]
    return [f"{a} {b}" for a, b in itertools.islice(itertools.permutations(texts, 2), count)]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    """The planted regressor's fp32 ONNX, calibration inputs and slice inputs (one example
    each, at its real length), and the fp32 graph's scores on the slice."""
    from bertc.compiler.export import encode, export_onnx
    from bertc.compiler.loading import load_model

    regressor = make_checkpoint(
        tmp_path_factory.mktemp("regressor"), head="regression", train_steps=60
    )
    directory = plant_outlier(regressor, tmp_path_factory.mktemp("planted") / "model")
    loaded = load_model(str(directory))
    graph = export_onnx(loaded, tmp_path_factory.mktemp("planted-onnx") / "model.onnx")
    encoded = [encode(loaded, [text], padding_to=None) for text in sentences(CALIBRATION + SLICE)]
    run = session_runner(graph.path, SessionSettings())
    reference = np.concatenate([run(item)[0] for item in encoded[CALIBRATION:]])
    return graph, encoded[:CALIBRATION], encoded[CALIBRATION:], reference, loaded.config


def search_request(planted, budget: Budget = BUDGET, keep_best: bool = False, lines=None):
    _, _, inputs, reference, _ = planted
    labels = reference[:, 0].tolist()  # gold = fp32: the headline drop is (1 - Pearson) x 100
    return SearchRequest(
        budget,
        inputs,
        scorer(get_task("stsb"), reference, labels),
        regression=True,
        keep_best=keep_best,
        progress=(lines.append if lines is not None else lambda line: None),
    )


def build(planted, target: str, mode: str, request: SearchRequest, tmp_path: Path):
    graph, calibration, _, _, config = planted
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir(parents=True)
    out.mkdir(parents=True)
    build_request = BuildRequest(
        QuantizationMode(mode),
        calibration,
        work,
        Recipe.BERT_SAFE,
        num_attention_heads=config["num_attention_heads"],
        hidden_size=config["hidden_size"],
        search=request,
    )
    return get_target(target).build(graph, build_request, out), out


def artifact_figures(planted, out: Path, model_file: str, request: SearchRequest):
    """The written model file on the slice, scored as the search scored it."""
    run = session_runner(out / model_file, SessionSettings())
    return request.score([run(item)[0] for item in request.inputs])


CASES = [
    ("ort-mobile", "dynamic", "model.ort"),
    ("ort-mobile", "static", "model.ort"),
    ("onnx", "static", "model.int8-qdq.onnx"),
    ("onnx", "dynamic", "model.int8-dynamic.onnx"),
]


@pytest.mark.parametrize(("target", "mode", "model_file"), CASES)
def test_search_protects_the_planted_layer_and_meets_the_budget(
    planted, target: str, mode: str, model_file: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    request = search_request(planted, lines=lines)
    result, out = build(planted, target, mode, request, tmp_path)
    record = result.search
    first, *rest = record["candidates"]
    assert first["name"] == "all INT8" and first["precision"] == {}
    assert not first["meets_budget"]
    assert record["sensitivity"]["ranked"][0]["node"] == PLANTED
    chosen = next(c for c in record["candidates"] if c["name"] == record["chosen"])
    assert record["met"] is True and chosen["meets_budget"]
    assert chosen["precision"] == {PLANTED: "fp32"}
    assert result.quantization.settings["fp32_by_search"] == [PLANTED]
    assert artifact_figures(planted, out, model_file, request).meets(BUDGET)
    assert any(line.startswith("budget: candidate 1 of ") for line in lines)
    assert any("ranking" in line for line in lines)


def test_a_loose_budget_keeps_all_int8_without_ranking(planted, tmp_path: Path) -> None:
    request = search_request(planted, Budget(max_drop=100.0, min_agreement=0.0))
    result, _ = build(planted, "ort-mobile", "static", request, tmp_path)
    assert [c["name"] for c in result.search["candidates"]] == ["all INT8"]
    assert result.search["chosen"] == "all INT8" and result.search["met"] is True
    assert result.search["sensitivity"]["ranked"] == []
    assert result.quantization.settings["fp32_by_search"] == []


def test_an_unmeetable_budget_fails_and_keep_best_builds_the_best(planted, tmp_path: Path) -> None:
    impossible = Budget(max_drop=-1.0, min_agreement=1.0)  # better than fp32 itself
    with pytest.raises(BudgetNotMetError) as caught:
        build(planted, "ort-mobile", "dynamic", search_request(planted, impossible), tmp_path / "a")
    assert caught.value.exit_code == 12 and "no INT8 candidate met" in str(caught.value)
    request = search_request(planted, impossible, keep_best=True)
    result, out = build(planted, "ort-mobile", "dynamic", request, tmp_path / "b")
    record = result.search
    assert record["met"] is False and record["kept_best"] is True
    assert len(record["candidates"]) == 1 + len(climb(len(record["sensitivity"]["ranked"])))
    best = max(record["candidates"], key=lambda c: c["figures"]["agreement"])
    assert (
        best["figures"]["agreement"]
        == next(c for c in record["candidates"] if c["name"] == record["chosen"])["figures"][
            "agreement"
        ]
    )
    assert (out / "model.ort").is_file()


def test_climb_goes_up_to_half_the_nodes() -> None:
    assert climb(0) == ()
    assert climb(1) == (1,)
    assert climb(8) == (1, 2, 3, 4)
    assert climb(12) == (1, 2, 3, 4, 6)
    assert climb(24) == (1, 2, 3, 4, 6, 8, 12)
    assert climb(37) == (1, 2, 3, 4, 6, 8, 12, 16, 18)


def test_ranking_puts_the_largest_error_first_and_keeps_graph_order_on_ties() -> None:
    errors = {"a": 0.1, "b": 0.5, "c": 0.1, "d": float("nan"), "e": 0.7}
    ranked = rank_by_sensitivity(list(errors), errors.__getitem__)
    assert [item.node for item in ranked] == ["e", "b", "a", "c", "d"]
