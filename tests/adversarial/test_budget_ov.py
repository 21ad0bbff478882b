"""The OpenVINO accuracy-budget search against what goes wrong (targets/ov/search.py).

Kinds: a budget no candidate can meet (exit 12, or --keep-best's marked best); NNCF's accuracy
control returning a model that misses the budget while claiming it holds (its verdict is not
trusted: bertc's own check and its noise-ranked candidates take over); NNCF's accuracy control
failing inside (exit 9, one line); figures that are undefined (a constant prediction's
correlation) or infinite, which count as a miss, never as a pass.
"""

from __future__ import annotations

import math

import pytest
from bertc.compiler.core.budget import Budget, BudgetNotMetError, SliceFigures
from bertc.compiler.core.enums import QuantizationMode, Recipe
from bertc.compiler.core.errors import QuantizationError
from bertc.targets.ov import recipes
from bertc.targets.ov import search as ov_search
from model_factory import make_checkpoint
from ov_search_helpers import TinySearch, tiny_search

RECIPE = recipes.RECIPES.get(QuantizationMode.STATIC, Recipe.BERT_SAFE)
PLANTED = "/model/bert/encoder/layer.1/attention/self/MatMul_1"
# Above any agreement: no candidate can meet it.
UNMEETABLE = Budget(max_drop=0.0, min_agreement=1.0 + 1e-6)


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> TinySearch:
    work = tmp_path_factory.mktemp("ov-budget-control")
    checkpoint = make_checkpoint(work / "c", train_steps=60, query_outlier=(1, 0.0, 8.0))
    return tiny_search(checkpoint, work)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> TinySearch:
    work = tmp_path_factory.mktemp("ov-budget-planted")
    checkpoint = make_checkpoint(work / "c", train_steps=60, query_outlier=(1, 1e4, 8.0))
    return tiny_search(checkpoint, work)


@pytest.fixture
def short_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer NNCF iterations and extra candidates: an unmeetable budget tries them all (the
    recipe, the head in fp32, NNCF's, the head and the noisiest MatMul)."""
    monkeypatch.setattr(ov_search, "MAX_REVERTED_GROUPS", 1)
    monkeypatch.setattr(ov_search, "EXTRA_STEPS", (1,))


@pytest.mark.parametrize("keep_best", [False, True], ids=["fails", "keep-best"])
def test_an_unmeetable_budget(control: TinySearch, short_search, keep_best: bool) -> None:
    request = control.request(UNMEETABLE, keep_best=keep_best)
    if not keep_best:
        with pytest.raises(BudgetNotMetError) as caught:
            ov_search.search_openvino(control.fp32_model(), RECIPE, request)
        message = str(caught.value)
        assert caught.value.exit_code == 12 and "\n" not in message
        assert "no INT8 candidate met the accuracy budget" in message and "best of 4" in message
        return
    result = ov_search.search_openvino(control.fp32_model(), RECIPE, request)
    record = result.record
    assert not result.met and record["met"] is False and record["kept_best"] is True
    assert len(record["candidates"]) == 4 and not any(
        c["meets_budget"] for c in record["candidates"]
    )
    best = max(c["figures"]["agreement"] for c in record["candidates"])
    chosen = next(c for c in record["candidates"] if c["name"] == record["chosen"])
    assert chosen["figures"]["agreement"] == best


def test_nncf_claiming_a_model_that_misses(planted: TinySearch, monkeypatch) -> None:
    """NNCF hands back the all-INT8 model (as if its budget held): bertc's check marks it as
    missing and the noise-ranked candidate protects the planted op."""

    def claims(model, recipe, calibration_inputs, *_args, **_kwargs):
        return ov_search.quantize_with_nncf(model, recipe, calibration_inputs)

    monkeypatch.setattr(ov_search, "quantize_with_accuracy_control", claims)
    result = ov_search.search_openvino(planted.fp32_model(), RECIPE, planted.request(Budget()))
    candidates = result.record["candidates"]
    head = ov_search.head_matmuls(planted.fp32_model())
    assert candidates[1]["precision"] == dict.fromkeys(head, ov_search.FP32)
    assert candidates[2]["name"] == "nncf.quantize_with_accuracy_control"
    assert not any(c["meets_budget"] for c in candidates[:3])
    assert result.met and result.record["chosen"] == candidates[3]["name"]
    assert candidates[3]["precision"] == dict.fromkeys([*head, PLANTED], ov_search.FP32)


def test_nncf_failing_inside_is_one_quantization_error(planted: TinySearch, monkeypatch) -> None:
    import nncf

    def broken(*_args, **_kwargs):
        raise RuntimeError("internal ranking failure\nwith a second line")

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", broken)
    with pytest.raises(QuantizationError) as caught:
        ov_search.search_openvino(planted.fp32_model(), RECIPE, planted.request(Budget()))
    assert caught.value.exit_code == 9
    assert str(caught.value).startswith("NNCF accuracy control failed: internal ranking failure")


def _figures(agreement: float, drop: float, regression: bool) -> SliceFigures:
    return SliceFigures("m", regression, agreement, 0.9, 0.9 - drop / 100, drop, 0.0, 0.0, 300)


@pytest.mark.parametrize(
    ("agreement", "drop"),
    [(math.nan, 0.0), (1.0, math.nan), (1.0, math.inf), (-math.inf, 0.0), (math.nan, math.nan)],
)
@pytest.mark.parametrize("regression", [False, True])
def test_undefined_figures_are_a_miss(agreement: float, drop: float, regression: bool) -> None:
    figures = _figures(agreement, drop, regression)
    assert ov_search.shortfall(figures, Budget()) == 1.0
    assert not figures.meets(Budget())


@pytest.mark.parametrize(
    ("agreement", "drop", "regression", "expected"),
    [
        (1.0, 0.0, False, 0.0),
        (0.995, 0.5, False, 0.0),
        (0.990, 0.0, False, 0.005),
        (1.0, 0.8, False, 0.003),
        (0.9985, 0.0, True, 0.0005),
        (0.999, 0.2, True, 0.0),
    ],
)
def test_the_shortfall_is_zero_exactly_when_the_budget_holds(
    agreement: float, drop: float, regression: bool, expected: float
) -> None:
    figures = _figures(agreement, drop, regression)
    assert ov_search.shortfall(figures, Budget()) == pytest.approx(expected, abs=1e-9)
    assert (ov_search.shortfall(figures, Budget()) <= 1e-12) == figures.meets(Budget())
