"""The search's choice (compiler/core/budget.py) on fabricated candidates: the fastest that meets
the budget, else the most accurate, and what `conclude` and `search_record` make of it."""

from __future__ import annotations

import math

import pytest
from bertc.compiler.core.budget import (
    Budget,
    BudgetNotMetError,
    Candidate,
    SearchRequest,
    SliceFigures,
    choose,
    conclude,
    search_record,
)

BUDGET = Budget(max_drop=0.5, min_agreement=0.99)


def figures(agreement: float, drop: float) -> SliceFigures:
    return SliceFigures(
        metric="accuracy",
        regression=False,
        agreement=agreement,
        fp32_metric=0.9,
        int8_metric=0.9 - drop / 100,
        headline_drop=drop,
        max_abs_error=0.1,
        rms_error=0.01,
        examples=200,
    )


def candidate(name: str, agreement: float, drop: float, latency: float) -> Candidate:
    return Candidate(
        name, {name: "fp32"} if name != "all INT8" else {}, figures(agreement, drop), latency
    )


def request(keep_best: bool = False) -> SearchRequest:
    return SearchRequest(BUDGET, [{}] * 200, lambda outputs: figures(1.0, 0.0), keep_best=keep_best)


def test_the_fastest_candidate_within_budget_wins_not_the_first_or_the_most_accurate() -> None:
    tried = [
        candidate("all INT8", 0.97, 1.0, 1.0),  # fastest, misses
        candidate("slow but exact", 1.0, 0.0, 2.0),
        candidate("just within", 0.99, 0.5, 1.2),
        candidate("within, slower", 0.995, 0.1, 1.5),
    ]
    chosen, met = choose(tried, BUDGET)
    assert (chosen.name, met) == ("just within", True)


def test_equal_latency_keeps_the_earlier_candidate() -> None:
    tried = [candidate("a", 0.995, 0.0, 1.0), candidate("b", 1.0, 0.0, 1.0)]
    assert choose(tried, BUDGET)[0].name == "a"


def test_none_within_budget_gives_the_most_accurate_and_false() -> None:
    tried = [
        candidate("all INT8", 0.95, 2.0, 1.0),
        candidate("best agreement", 0.98, 1.5, 1.3),
        candidate("same agreement, more drop", 0.98, 1.8, 1.1),
    ]
    chosen, met = choose(tried, BUDGET)
    assert (chosen.name, met) == ("best agreement", False)


@pytest.mark.parametrize(("agreement", "drop"), [(math.nan, 0.0), (1.0, math.nan), (1.0, math.inf)])
def test_undefined_figures_never_meet_a_budget(agreement: float, drop: float) -> None:
    assert not candidate("x", agreement, drop, 1.0).meets(BUDGET)


def test_conclude_raises_exit_12_unless_keep_best() -> None:
    tried = [candidate("all INT8", 0.95, 2.0, 1.0), candidate("1 fp32", 0.97, 1.0, 1.2)]
    with pytest.raises(BudgetNotMetError) as caught:
        conclude(tried, request())
    assert caught.value.exit_code == 12
    assert "best of 2: 1 fp32" in str(caught.value)
    chosen, met = conclude(tried, request(keep_best=True))
    assert (chosen.name, met) == ("1 fp32", False)


def test_the_record_marks_the_chosen_and_each_verdict() -> None:
    tried = [candidate("all INT8", 0.97, 1.0, 1.0), candidate("1 fp32", 0.995, 0.0, 1.2)]
    chosen, met = choose(tried, BUDGET)
    record = search_record(tried, chosen, met, request(), "rule")
    assert record["chosen"] == "1 fp32" and record["met"] is True and record["kept_best"] is False
    assert [c["meets_budget"] for c in record["candidates"]] == [False, True]
    assert record["candidates"][1]["precision"] == {"1 fp32": "fp32"}
