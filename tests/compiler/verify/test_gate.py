"""The gate: a drop in points against `--max-drop`, and its one-line message."""

from __future__ import annotations

import math

from bertc.calibration import get_task
from bertc.compiler.verify.gate import apply_gate
from bertc.compiler.verify.model import MetricDelta


def _delta(reference: float, artifact: float) -> MetricDelta:
    return MetricDelta(
        "accuracy", reference, artifact, (artifact - reference) * 100, math.nan, math.nan
    )


def test_gate_message_and_threshold_in_points() -> None:
    sst2 = get_task("sst2")
    failed = apply_gate(sst2, _delta(0.8704, 0.8624), 0.5)
    assert not failed.passed
    assert failed.message == (
        "gate failed: sst2 accuracy dropped 0.80 points (87.04 → 86.24), more than --max-drop 0.5"
    )
    assert apply_gate(
        sst2, _delta(0.8704, 0.8624), 0.8
    ).passed  # a drop exactly at the limit passes
    assert apply_gate(sst2, _delta(0.8704, 0.8624), 0.81).passed
    assert not apply_gate(sst2, _delta(0.8704, 0.8624), 0.79).passed
    assert apply_gate(sst2, _delta(0.8704, 0.8704), 0.0).passed  # zero tolerance: no drop at all
    assert not apply_gate(sst2, _delta(0.8704, 0.8703), 0.0).passed
    assert apply_gate(sst2, _delta(0.8704, 0.9000), 0.0).passed  # a gain is never a failure


def test_gate_fails_when_the_headline_metric_is_undefined_for_the_artifact() -> None:
    stsb = get_task("stsb")
    undefined = MetricDelta("pearson", 0.8, math.nan, math.nan, math.nan, math.nan)
    result = apply_gate(stsb, undefined, 100.0)
    assert not result.passed and "undefined" in result.message
