"""The OpenVINO target's accuracy-budget search (`bertc compile --max-drop/--min-agreement`).

Candidates, each scored and timed by `budget.evaluate` on the held-out slice the way the
artifact runs (static [1, bucket] shapes, f32 inference precision):

1. the recipe as it is (all INT8); when it meets the budget the search stops there;
2. the recipe with the pooler and task head (the MatMuls after the last LayerNorm, which read
   the [CLS] vector alone) in floating point: on a regression head the score is one dot
   product of 384 8-bit inputs, whose rounding nothing averages away (MiniLM-L6 STS-B: the
   noisiest INT8 input by 6x; fp32 head: dev Pearson drop -2.27 -> +0.62 points); they cost
   almost nothing at batch 1;
3. `nncf.quantize_with_accuracy_control` with a validation function that returns the negative
   of the budget shortfall on the slice plus one (1 when the budget holds), so NNCF's absolute
   `max_drop=0` means "the budget holds"; NNCF ranks the quantizer groups by the normalized MSE
   of the outputs and reverts the worst to fp32 activations one at a time. Its verdict is not
   trusted: it validates on dynamic shapes, stops silently after `max_num_iterations` or when
   it has reverted every group, and has been reported to miss its budget (geti #6084);
4. when NNCF's model misses bertc's check: the head and the k MatMuls whose INT8 input is
   noisiest (the noise-to-signal ratio of their FakeQuantize on slice inputs, per channel, so
   one outlier channel that drowns the rest shows), kept in floating point through NNCF's
   ignored_scope, k = 1, 2, 4, 8, stopping at the first that meets the budget (more fp32 is
   slower). NNCF restores only activations: its weight restore undoes SmoothQuant (see
   quantize.quantize_with_accuracy_control).

`budget.conclude` picks the fastest candidate that meets the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bertc.compiler.core import budget
from bertc.compiler.core.budget import Budget, Candidate, SearchRequest, SliceFigures
from bertc.targets.loader import StaticShapeBuckets
from bertc.targets.ov.quantize import (
    quantize_with_accuracy_control,
    quantize_with_nncf,
    reads_int8,
)
from bertc.targets.ov.recipes import INFERENCE_PRECISION, OvRecipe
from bertc.targets.ov.shapes import sequence_buckets

FP32 = "fp32"
FP32_ACTIVATIONS = "fp32 activations, int8 weights"
# NNCF's ranking subset (the slice examples whose outputs moved most) and the most quantizer
# groups it may revert. NNCF ranks every group (46 on MiniLM-L6) on the subset, and again
# whenever a revert makes things worse: with 100 and 8 it took over 15 minutes on MiniLM-L6
# STS-B on a loaded 2-core VM, and reverted encoder ops that did not help.
RANKING_SUBSET = 50
MAX_REVERTED_GROUPS = 6
# Extra candidates when NNCF's model misses: this many of the noisiest MatMuls kept fp32.
EXTRA_STEPS = (1, 2, 4, 8)
# Slice inputs the noise of each INT8 MatMul input is measured on.
NOISE_SAMPLES = 32
# Ops between an activation FakeQuantize and the MatMul that reads it (attention's Q/K/V).
_PASS_THROUGH = ("Reshape", "Transpose", "Convert", "Multiply", "Subtract")
_COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION}
# The ops a precision map names: Linear layers and OpenVINO's fused attention (its frontend
# turns BERT's Q·Kᵀ / softmax / ·V into one ScaledDotProductAttention, whose Q and K NNCF's
# transformer recipe quantizes).
MATMUL_TYPES = ("MatMul", "ScaledDotProductAttention")

Run = Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class SearchResult:
    """The chosen model (an `openvino.Model`), the manifest's search record, and whether the
    chosen candidate met the budget."""

    model: Any
    record: Mapping[str, Any]
    met: bool


def shortfall(figures: SliceFigures, limits: Budget) -> float:
    """How far `figures` miss the budget, ≥ 0 (0: met): the larger of the agreement's gap to
    its floor and the headline drop's excess over max_drop in points / 100; 1 when a figure is
    undefined."""
    if not (math.isfinite(figures.agreement) and math.isfinite(figures.headline_drop)):
        return 1.0
    floor = limits.agreement_floor(figures.regression)
    excess = (figures.headline_drop - limits.max_drop) / 100.0
    return max(0.0, floor - figures.agreement, excess)


def bucket_runner(model, max_sequence_length: int, threads: int | None = None) -> Run:
    """`model` run as the artifact runs single inputs: [1, bucket] static copies compiled with
    the artifact's compile config (`loader.StaticShapeBuckets`)."""
    import openvino

    config: dict[str, Any] = dict(_COMPILE_CONFIG)
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    static = StaticShapeBuckets(
        openvino.Core(), model, config, list(sequence_buckets(max_sequence_length))
    )
    names = [port.get_any_name() for port in model.inputs]

    def run(feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        outputs = static.run({name: np.asarray(feeds[name]) for name in names})
        if outputs is None:  # longer than the last bucket: the slice is cut to the maximum
            raise ValueError("a slice input is longer than the maximum sequence length")
        return outputs

    return run


def matmul_precisions(model) -> dict[str, str]:
    """Each MatMul (and fused attention) of an NNCF-quantized model: "int8" (an activation
    FakeQuantize feeds it), FP32_ACTIVATIONS (only an int8 weight), or FP32 (neither)."""
    found = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() not in MATMUL_TYPES:
            continue
        sources = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        if any(_reads_activation_quantizer(source) for source in sources):
            found[op.get_friendly_name()] = "int8"
        elif any(reads_int8(source) for source in sources):
            found[op.get_friendly_name()] = FP32_ACTIVATIONS
        else:
            found[op.get_friendly_name()] = FP32
    return found


def _reads_activation_quantizer(node, depth: int = 0) -> bool:
    """A FakeQuantize of an activation (not of a constant) feeds `node`, through reshapes."""
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return node.input_value(0).get_node().get_type_name() != "Constant"
    if kind in _PASS_THROUGH and depth < 4:
        return _reads_activation_quantizer(node.input_value(0).get_node(), depth + 1)
    return False


def floating_point_matmuls(model) -> set[str]:
    """Names of the MatMuls of an NNCF-quantized model whose activations are not INT8."""
    return {name for name, kind in matmul_precisions(model).items() if kind != "int8"}


def precision_map(all_int8, candidate) -> dict[str, str]:
    """MatMuls that run INT8 in the recipe's build but not in `candidate`: name → FP32, or
    FP32_ACTIVATIONS where the candidate keeps their int8 weights."""
    before, after = matmul_precisions(all_int8), matmul_precisions(candidate)
    return {
        name: after[name]
        for name in sorted(after)
        if after[name] != "int8" and before.get(name) == "int8"
    }


def _reading_matmuls(port) -> set[str]:
    """MatMuls that read `port`, directly or through reshapes and dequantization."""
    found: set[str] = set()
    pending = [target.get_node() for target in port.get_target_inputs()]
    for _ in range(4):
        later = []
        for node in pending:
            kind = node.get_type_name()
            if kind in MATMUL_TYPES:
                found.add(node.get_friendly_name())
            elif kind in _PASS_THROUGH:
                later += [t.get_node() for t in node.output(0).get_target_inputs()]
        pending = later
    return found


def input_noise(
    quantized, inputs: Sequence[Mapping[str, np.ndarray]]
) -> list[tuple[float, tuple[str, ...]]]:
    """Each activation FakeQuantize of an NNCF model, noisiest first: (noise-to-signal ratio
    ‖FQ(x) − x‖² / ‖x‖² of each channel (last axis) over `inputs`, averaged over channels (each
    capped at 1); the MatMuls that read it). Dynamic shapes, f32."""
    import openvino

    probe = quantized.clone()
    quantizers = [
        op
        for op in probe.get_ordered_ops()
        if op.get_type_name() == "FakeQuantize"
        and op.input_value(0).get_node().get_type_name() != "Constant"
    ]
    readers = [tuple(sorted(_reading_matmuls(fq.output(0)))) for fq in quantizers]
    if not quantizers:
        return []
    ports = [fq.input_value(0) for fq in quantizers] + [fq.output(0) for fq in quantizers]
    probe = openvino.Model(ports, probe.get_parameters(), "noise_probe")
    compiled = openvino.Core().compile_model(probe, "CPU", _COMPILE_CONFIG)
    count = len(quantizers)
    noise: list[Any] = [0.0] * count
    signal: list[Any] = [0.0] * count
    names = [port.get_any_name() for port in quantized.inputs]
    for feeds in inputs:
        results = compiled({name: np.asarray(feeds[name]) for name in names})
        for i in range(count):
            x = np.asarray(results[compiled.outputs[i]], dtype=np.float64)
            y = np.asarray(results[compiled.outputs[count + i]], dtype=np.float64)
            channels = x.shape[-1] if x.ndim else 1
            noise[i] = noise[i] + np.sum(np.square(y - x).reshape(-1, channels), axis=0)
            signal[i] = signal[i] + np.sum(np.square(x).reshape(-1, channels), axis=0)
    # The mean over channels of each channel's ratio: one outlier channel that sets the 8-bit
    # scale and drowns the others shows (their ratios near 1), where the ratio of sums hides it.
    ratios = [
        float(np.mean(np.minimum(n / np.maximum(s, 1e-30), 1.0)))
        for n, s in zip(noise, signal, strict=True)
    ]
    ranked = sorted(zip(ratios, readers, strict=True), key=lambda item: -item[0])
    return [(ratio, names_) for ratio, names_ in ranked if names_]


def noisiest_matmuls(ranked: Iterable[tuple[float, tuple[str, ...]]]) -> list[str]:
    """MatMul names in order of their noisiest INT8 input, each once."""
    order: list[str] = []
    for _, names in ranked:
        order += [name for name in names if name not in order]
    return order


def validation_function(request: SearchRequest) -> Callable[[Any, Iterable[Any]], tuple]:
    """NNCF's validation_fn over (index, inputs) items of the slice: the metric is
    1 − shortfall (1 when the budget holds, so NNCF's absolute max_drop is 0; not 0 itself:
    nncf 3.4's calculate_accuracy_drop divides by the initial metric even for an absolute drop);
    the per-item values are each item's outputs, so NNCF ranks quantizers by how far they move
    the outputs (its normalized MSE). A call on part of the slice (NNCF's probe of its first
    item) returns metric 1."""
    count = len(request.inputs)

    def validate(compiled, items: Iterable[Any]) -> tuple[float, list[list[np.ndarray]]]:
        ports = list(compiled.outputs)
        names = [port.get_any_name() for port in compiled.inputs]
        rows: dict[int, list[np.ndarray]] = {}
        for index, feeds in items:
            results = compiled({name: feeds[name] for name in names})
            rows[index] = [np.asarray(results[port]) for port in ports]
        ordered = [rows[i] for i in sorted(rows)]
        if len(rows) != count:
            return 1.0, ordered
        figures = request.score([outputs[0] for outputs in ordered])
        return 1.0 - shortfall(figures, request.budget), ordered

    return validate


class _Search:
    """One search: the candidates tried so far, their models and runners."""

    def __init__(self, model, recipe: OvRecipe, request, max_sequence_length: int) -> None:
        self.model, self.recipe, self.request = model, recipe, request
        self.search: SearchRequest = request.search
        self.max_sequence_length = max_sequence_length
        self.candidates: list[Candidate] = []
        self.models: list[Any] = []
        self.all_int8 = None

    @property
    def planned(self) -> str:
        return f"at most {3 + len(EXTRA_STEPS)}"  # recipe, head, NNCF, then EXTRA_STEPS

    def add(self, name: str, model, extra: Mapping[str, Any] | None = None) -> Candidate:
        precision = precision_map(self.all_int8, model) if self.all_int8 is not None else {}
        run = bucket_runner(model, self.max_sequence_length)
        candidate = budget.evaluate(
            name, precision, run, self.search, len(self.candidates) + 1, self.planned, extra
        )
        self.candidates.append(candidate)
        self.models.append(model)
        return candidate

    def quantize(self, ignored: Sequence[str] = ()):
        return quantize_with_nncf(
            self.model.clone(), self.recipe, self.request.calibration_inputs, ignored
        )

    def accuracy_control(self):
        items = list(enumerate(dict(feeds) for feeds in self.search.inputs))
        return quantize_with_accuracy_control(
            self.model.clone(),
            self.recipe,
            self.request.calibration_inputs,
            items,
            validation_function(self.search),
            inference_input=lambda item: item[1],
            max_drop=0.0,
            ranking_subset_size=min(RANKING_SUBSET, len(items)),
            max_num_iterations=MAX_REVERTED_GROUPS,
        )


def search_openvino(model, recipe: OvRecipe, request) -> SearchResult:
    """Search precision maps of `recipe` on `request.search`'s slice (see the module's doc) and
    return the fastest candidate within budget. `model`: the fp32 `openvino.Model` (left as it
    is); `request`: the target's BuildRequest with `search` set. Raises BudgetNotMetError (exit
    12) when nothing meets the budget and keep_best is off; QuantizationError from NNCF."""
    state = _Search(model, recipe, request, request.max_sequence_length)
    limits = request.search.budget
    state.all_int8 = state.quantize()
    first = state.add("recipe (all INT8)", state.all_int8, {"method": "nncf.quantize"})
    if not first.meets(limits):
        _restore(state)
    chosen, met = budget.conclude(state.candidates, request.search)
    rule = (
        "the fastest candidate meeting the budget on the held-out slice (bertc's own check at "
        "static shapes; NNCF's verdict is not trusted); none meeting: the most accurate"
    )
    record = budget.search_record(state.candidates, chosen, met, request.search, rule)
    return SearchResult(state.models[state.candidates.index(chosen)], record, met)


def head_matmuls(model) -> list[str]:
    """The MatMuls after the encoder's last LayerNorm (OpenVINO's MVN): the pooler and the
    task head, which read the [CLS] vector only."""
    ops = list(model.get_ordered_ops())
    norms = [i for i, op in enumerate(ops) if op.get_type_name() == "MVN"]
    start = norms[-1] if norms else len(ops)
    return [op.get_friendly_name() for op in ops[start:] if op.get_type_name() == "MatMul"]


def _restore(state: _Search) -> None:
    """Candidates 2 and on, until one meets the budget: the task head in floating point; NNCF's
    accuracy control; the head plus the k MatMuls with the noisiest INT8 input, k growing."""
    limits = state.search.budget
    head = head_matmuls(state.model)
    if head:
        candidate = state.add(
            "pooler and task head in fp32",
            state.quantize(head),
            {"method": "nncf.quantize(ignored_scope)", "ignored_scope": head},
        )
        if candidate.meets(limits):
            return
    restored = state.accuracy_control()
    candidate = state.add(
        "nncf.quantize_with_accuracy_control",
        restored,
        {"method": "nncf.quantize_with_accuracy_control (max_drop 0 on 1 − shortfall)"},
    )
    if candidate.meets(limits):
        return
    ranked = input_noise(state.all_int8, state.search.inputs[:NOISE_SAMPLES])
    order = [name for name in noisiest_matmuls(ranked) if name not in head]
    for step in EXTRA_STEPS:
        ignored = [*head, *order[:step]]
        if len(order) < step and step != EXTRA_STEPS[0]:
            break
        candidate = state.add(
            f"the head and the {min(step, len(order))} MatMul(s) with the noisiest INT8 "
            "input in fp32",
            state.quantize(ignored),
            {"method": "nncf.quantize(ignored_scope)", "ignored_scope": ignored},
        )
        if candidate.meets(limits):
            return
