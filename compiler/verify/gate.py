"""The gate: pass or fail on how far the headline metric dropped, in points."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from bertc.compiler.core.errors import GateFailedError
from bertc.compiler.verify.model import GateResult, MetricDelta, VerifyReport

if TYPE_CHECKING:
    from bertc.calibration import GlueTask

DEFAULT_MAX_DROP = 0.5
# Float noise in a points delta must not decide a gate set exactly at the observed drop.
_GATE_EPSILON = 1e-9


def apply_gate(task: GlueTask, headline: MetricDelta, max_drop: float) -> GateResult:
    """Fail when the headline metric fell by more than `max_drop` points (or cannot be computed).

    A drop exactly at `max_drop` passes; a metric undefined for both models passes, for one
    model fails. The message is one line naming the task, metric, both values and the limit.
    """
    name = f"{task.name} {headline.name}"
    values = f"({headline.reference * 100:.2f} → {headline.artifact * 100:.2f})"
    delta = headline.delta_points
    if math.isnan(delta):
        passed = math.isnan(headline.reference) and math.isnan(headline.artifact)
        message = (
            f"gate passed: {name} is undefined for both models {values}"
            if passed
            else f"gate failed: {name} is undefined for one model {values} (constant predictions?)"
        )
        return GateResult(headline.name, max_drop, delta, passed, message)
    if delta < -max_drop - _GATE_EPSILON:
        message = (
            f"gate failed: {name} dropped {-delta:.2f} points {values}, "
            f"more than --max-drop {max_drop:g}"
        )
        return GateResult(headline.name, max_drop, delta, False, message)
    change = f"dropped {-delta:.2f} points" if delta < 0 else f"rose {delta:.2f} points"
    change = "is unchanged" if delta == 0 else change
    return GateResult(
        headline.name,
        max_drop,
        delta,
        True,
        f"gate passed: {name} {change} {values}, within --max-drop {max_drop:g}",
    )


def raise_if_gate_failed(report: VerifyReport) -> None:
    """GateFailedError with the gate's one-line message when the headline metric dropped too
    far, or (`--platform`) an emulated core's logits moved too far from x86's: both named."""
    failed = [report.gate.message] if not report.gate.passed else []
    if report.platform is not None and not report.platform.passed:
        failed.append(report.platform.message)
    if failed:
        raise GateFailedError("; ".join(failed))
