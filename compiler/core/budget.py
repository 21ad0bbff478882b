"""The accuracy budget of `bertc compile --max-drop/--min-agreement`, and the candidate search.

A target that offers a search builds candidate INT8 models (the same recipe with a different
precision map: some MatMuls in fp32 or with 16-bit activations), runs each on a held-out slice
of the task's train split (never the dev set, which `bertc verify` reports; never the
calibration sample), scores it against fp32 PyTorch on that slice (`SearchRequest.score`, made
by the compiler) and times it at batch 1. Among the candidates that meet the budget the fastest
wins (`choose`); when none does the compile fails with BudgetNotMetError (exit 12), unless
`keep_best` writes the best one, marked. Everything here is runtime-free: the targets hand in a
`run` callable of their own runtime.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bertc.compiler.core.errors import GateFailedError
from bertc.compiler.core.progress import Progress, silent

# Defaults of `--max-drop` (points of the task's headline metric) and `--min-agreement`
# (share of the slice whose class is the fp32 model's; for regression, the Pearson correlation
# of the INT8 predictions with fp32's, whose default is the stricter REGRESSION_MIN_CORRELATION).
DEFAULT_MAX_DROP = 0.5
DEFAULT_MIN_AGREEMENT = 0.995
REGRESSION_MIN_CORRELATION = 0.999
# Held-out train examples the search scores on, drawn after the calibration sample of the same
# seeded shuffle (so the two never overlap); fewer than MIN_SLICE cannot measure a 99.5%
# agreement (one flip is 0.5% of 200), and the build then runs without a search, with a note.
SLICE_SAMPLES = 500
MIN_SLICE = 200
# Batch-1 latency: the first LATENCY_SAMPLES slice inputs at their real lengths, best of
# LATENCY_REPEATS passes (the least disturbed pass on a shared machine).
LATENCY_SAMPLES = 64
LATENCY_REPEATS = 3

if TYPE_CHECKING:  # numpy is imported where a search runs: `compiler.options` stays light
    import numpy as np

Run = Callable[[Mapping[str, "np.ndarray"]], Sequence["np.ndarray"]]


@dataclass(frozen=True)
class Budget:
    """What an INT8 build may cost, measured on the held-out slice against fp32 PyTorch.

    max_drop: points (0-100 scale) the task's headline metric may fall (fp32 − INT8).
    min_agreement: share in [0, 1] of slice examples whose argmax equals fp32's; for a
    regression task the Pearson correlation of INT8 with fp32 predictions (None: the default
    for the task kind, DEFAULT_MIN_AGREEMENT or REGRESSION_MIN_CORRELATION).
    """

    max_drop: float = DEFAULT_MAX_DROP
    min_agreement: float | None = None

    def agreement_floor(self, regression: bool) -> float:
        if self.min_agreement is not None:
            return self.min_agreement
        return REGRESSION_MIN_CORRELATION if regression else DEFAULT_MIN_AGREEMENT

    def describe(self, regression: bool) -> str:
        what = "Pearson with fp32" if regression else "agreement"
        floor = self.agreement_floor(regression)
        return f"--max-drop {self.max_drop:g} --min-agreement {floor:g} ({what})"


@dataclass(frozen=True)
class SliceFigures:
    """One candidate on the held-out slice, against fp32 PyTorch.

    agreement: share of examples with fp32's class (classification) or Pearson of the INT8
    predictions with fp32's (regression). headline_drop: fp32 metric − INT8 metric, in points
    (positive: INT8 is worse). max_abs_error / rms_error: over every element of the first output
    (logits or scores).
    """

    metric: str
    regression: bool
    agreement: float
    fp32_metric: float
    int8_metric: float
    headline_drop: float
    max_abs_error: float
    rms_error: float
    examples: int

    def meets(self, budget: Budget) -> bool:
        floor = budget.agreement_floor(self.regression)
        drop_ok = math.isfinite(self.headline_drop) and self.headline_drop <= budget.max_drop + 1e-9
        return drop_ok and math.isfinite(self.agreement) and self.agreement >= floor - 1e-12

    def describe(self) -> str:
        kind = "Pearson vs fp32" if self.regression else "agreement"
        shown = f"{self.agreement:.4f}" if self.regression else f"{self.agreement:.2%}"
        change = -self.headline_drop + 0.0  # + 0.0: no "-0.00"
        return f"{kind} {shown}, {self.metric} Δ {change:+.2f} pt, max |Δ| {self.max_abs_error:.3g}"


@dataclass(frozen=True)
class SearchRequest:
    """What the compiler hands a target's search: the budget, the slice (ids, one example per
    mapping, at its real length), and `score`, which turns the candidate's first output on each
    slice input (in order) into SliceFigures."""

    budget: Budget
    inputs: Sequence[Mapping[str, np.ndarray]]
    score: Callable[[Sequence[np.ndarray]], SliceFigures]
    regression: bool = False
    keep_best: bool = False
    progress: Progress = silent


@dataclass(frozen=True)
class Candidate:
    """One INT8 build tried by the search. precision: the nodes that differ from the recipe's
    all-INT8 build, name → "fp32" or "int16 activations" (empty: all INT8)."""

    name: str
    precision: Mapping[str, str]
    figures: SliceFigures
    latency_ms: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def meets(self, budget: Budget) -> bool:
        return self.figures.meets(budget)


def measure_latency(
    run: Run,
    inputs: Sequence[Mapping[str, np.ndarray]],
    samples: int = LATENCY_SAMPLES,
    repeats: int = LATENCY_REPEATS,
) -> float:
    """Mean milliseconds per batch-1 call over the first `samples` inputs, best of `repeats`
    passes after one warm-up call."""
    chosen = list(inputs[:samples])
    if not chosen:
        return math.nan
    run(chosen[0])
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for item in chosen:
            run(item)
        best = min(best, (time.perf_counter() - start) / len(chosen))
    return best * 1000.0


def evaluate(
    name: str,
    precision: Mapping[str, str],
    run: Run,
    request: SearchRequest,
    number: int,
    of: int | str,
    extra: Mapping[str, Any] | None = None,
) -> Candidate:
    """Run `run` on every slice input, score it, time it, and say so on progress as
    "budget: candidate N of M: NAME: figures, latency"."""
    import numpy as np

    outputs = [np.asarray(run(item)[0]) for item in request.inputs]
    figures = request.score(outputs)
    latency = measure_latency(run, request.inputs)
    verdict = "meets" if figures.meets(request.budget) else "misses"
    request.progress(
        f"budget: candidate {number} of {_at_most(of)}: {name}: {figures.describe()}, "
        f"{latency:.2f} ms, {verdict} the budget"
    )
    return Candidate(name, dict(precision), figures, latency, dict(extra or {}))


def _at_most(of: int | str) -> str:
    """The search stops at the first candidate within budget: M is a bound, not a count."""
    return f"at most {of}" if isinstance(of, int) else of


def choose(candidates: Sequence[Candidate], budget: Budget) -> tuple[Candidate, bool]:
    """The fastest candidate that meets the budget (ties: the earlier, i.e. fewer changes), and
    True; or, when none meets it, the most accurate one (highest agreement, then least drop) and
    False. ValueError for no candidates."""
    if not candidates:
        raise ValueError("the search tried no candidate")
    meeting = [c for c in candidates if c.meets(budget)]
    if meeting:
        return min(meeting, key=lambda c: c.latency_ms), True
    return max(candidates, key=lambda c: (c.figures.agreement, -c.figures.headline_drop)), False


class BudgetNotMetError(GateFailedError):
    """No candidate of the search met the accuracy budget (exit 12, nothing written)."""


def not_met(best: Candidate, budget: Budget, tried: int) -> BudgetNotMetError:
    """The error for a search that found nothing within budget: the best candidate's figures and
    the budget it would meet."""
    figures = best.figures
    if math.isfinite(figures.headline_drop) and math.isfinite(figures.agreement):
        drop = max(0.0, math.ceil(figures.headline_drop * 100) / 100)
        floor = math.floor(figures.agreement * 10000) / 10000
        would = f"--max-drop {drop:g} --min-agreement {floor:g}"
    else:  # a constant prediction or constant gold labels: the metric is undefined
        would = "no budget: its figures are undefined (constant predictions or labels)"
    return BudgetNotMetError(
        f"no INT8 candidate met the accuracy budget ({budget.describe(figures.regression)}) on "
        f"{figures.examples} held-out train examples; best of {tried}: {best.name}: "
        f"{figures.describe()}, which would meet {would}; "
        "pass a looser budget, --keep-best to write that candidate anyway, or --max-drop none "
        "for the single-recipe build"
    )


def conclude(candidates: Sequence[Candidate], request: SearchRequest) -> tuple[Candidate, bool]:
    """`choose`, raising `not_met` when nothing meets the budget and keep_best is off."""
    chosen, met = choose(candidates, request.budget)
    if not met and not request.keep_best:
        raise not_met(chosen, request.budget, len(candidates))
    return chosen, met


def search_record(
    candidates: Sequence[Candidate], chosen: Candidate, met: bool, request: SearchRequest, rule: str
) -> dict[str, Any]:
    """The manifest's `quantization.search`: the budget, every candidate with its precision
    map, slice figures and latency, which one was chosen and whether it met the budget."""
    budget = request.budget
    return {
        "budget": {
            "max_drop_points": budget.max_drop,
            "min_agreement": budget.agreement_floor(request.regression),
            "agreement_means": "Pearson of INT8 with fp32 predictions"
            if request.regression
            else "share of examples with fp32's class",
        },
        "slice": {
            "split": "train (held out: after the calibration sample in the same seeded shuffle)",
            "examples": len(request.inputs),
        },
        "rule": rule,
        "latency": f"batch 1, mean ms per call over the first {LATENCY_SAMPLES} slice inputs at "
        f"their real lengths, best of {LATENCY_REPEATS} passes, on the build machine",
        "candidates": [
            {
                "name": c.name,
                "precision": dict(c.precision),
                "figures": _figures_record(c.figures),
                "latency_ms": _finite(c.latency_ms, 4),
                "meets_budget": c.meets(budget),
                **dict(c.extra),
            }
            for c in candidates
        ],
        "chosen": chosen.name,
        "met": met,
        "kept_best": not met,
    }


def _finite(value: float, digits: int) -> float | None:
    """`value` rounded, or None where it is undefined (a constant prediction's correlation):
    the manifest is strict JSON."""
    return round(float(value), digits) if math.isfinite(value) else None


def _figures_record(figures: SliceFigures) -> dict[str, Any]:
    return {
        "metric": figures.metric,
        "agreement": _finite(figures.agreement, 6),
        "fp32_metric": _finite(figures.fp32_metric, 6),
        "int8_metric": _finite(figures.int8_metric, 6),
        "headline_drop_points": _finite(figures.headline_drop, 4),
        "max_abs_error": _finite(figures.max_abs_error, 6),
        "rms_error": _finite(figures.rms_error, 6),
        "examples": figures.examples,
    }
