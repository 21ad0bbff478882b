"""The compiler's side of the accuracy budget: when a search runs, on what, and the options."""

from __future__ import annotations

from pathlib import Path

import pytest
from bertc.calibration import get_task, load_examples, sample_examples
from bertc.compiler.core.budget import MIN_SLICE, SLICE_SAMPLES
from bertc.compiler.core.enums import QuantizationMode
from bertc.compiler.core.errors import UsageError
from bertc.compiler.loading import HEAD_CLASSIFIER, HEAD_ENCODER
from bertc.compiler.options import CompileOptions
from bertc.compiler.search import plan_slice

SST2 = get_task("sst2")


def options(data_dir: Path, **overrides) -> CompileOptions:
    settings = dict(target="ort-mobile", task="sst2", data_dir=data_dir, calibration_samples=16)
    settings.update(overrides)
    return CompileOptions(**settings)


def test_the_slice_is_held_out_train_after_the_calibration_sample(budget_glue_dir: Path) -> None:
    plan = plan_slice(SST2, options(budget_glue_dir), HEAD_CLASSIFIER, 0)
    train = load_examples(SST2, "train", budget_glue_dir)
    calibration = sample_examples(train, 16, seed=0)
    assert plan.reason is None
    assert len(plan.examples) == min(SLICE_SAMPLES, len(train) - 16) >= MIN_SLICE
    assert not {e.line for e in plan.examples} & {e.line for e in calibration}
    dev_lines = {(e.text_a, e.line) for e in load_examples(SST2, "dev", budget_glue_dir)}
    assert not {(e.text_a, e.line) for e in plan.examples} & dev_lines


@pytest.mark.parametrize(
    ("overrides", "head", "task", "reason"),
    [
        ({"max_drop": None}, HEAD_CLASSIFIER, SST2, None),
        ({"quantization": QuantizationMode.NONE}, HEAD_CLASSIFIER, SST2, None),
        ({}, HEAD_ENCODER, SST2, "sentence encoder"),
        ({"task": None}, HEAD_CLASSIFIER, None, "no task"),
        ({"calibration_samples": 200}, HEAD_CLASSIFIER, SST2, "the budget needs 200 held out"),
    ],
    ids=["budget none", "fp32", "encoder", "no task", "slice too small"],
)
def test_no_search_and_why(budget_glue_dir: Path, overrides, head, task, reason) -> None:
    plan = plan_slice(task, options(budget_glue_dir, **overrides), head, 0)
    assert plan.examples == ()
    if reason is None:
        assert plan.reason is None
    else:
        assert reason in plan.reason


def test_the_tiny_data_leaves_too_few_for_a_search(glue_data_dir: Path) -> None:
    plan = plan_slice(SST2, options(glue_data_dir), HEAD_CLASSIFIER, 0)
    assert plan.examples == ()
    assert "24 train examples are left" in plan.reason


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_drop": -0.1},
        {"max_drop": float("nan")},
        {"max_drop": float("inf")},
        {"max_drop": "0.5"},
        {"max_drop": True},
        {"min_agreement": 1.01},
        {"min_agreement": -0.5},
        {"min_agreement": float("nan")},
    ],
    ids=str,
)
def test_bad_budget_options_are_usage_errors(overrides) -> None:
    with pytest.raises(UsageError, match="max_drop|min_agreement"):
        CompileOptions(target="ort-mobile", **overrides)


def test_default_budget_is_on() -> None:
    chosen = CompileOptions(target="openvino")
    assert chosen.max_drop == 0.5
    assert chosen.min_agreement is None
    assert not chosen.keep_best
