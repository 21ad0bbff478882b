"""The accuracy-budget search of the ONNX Runtime targets (`compile --max-drop/--min-agreement`).

One plan of the recipe (targets/ort/quantize.py: the graph prepared, fused and smoothed once,
static calibration ranges computed once and reused through onnxruntime's calibration cache)
writes every graph the search tries. The first candidate is the recipe's all-INT8 graph; when it
misses the budget, the weight nodes (MatMuls with constant weights; the fused graph's Attention)
are ranked by sensitivity — the mean squared first-output error against the fp32 graph, on the
first SENSITIVITY_SAMPLES slice inputs, of a graph with that node alone quantized — and the next
candidates keep the 1, 2, 3, 4, 6, 8, ... most sensitive ones fp32, up to half of them. The
climb stops at the first candidate that meets the budget (each further fp32 node only costs
time); `budget.conclude` then picks the fastest candidate within budget, or fails.

The error alone is measured end to end rather than with onnxruntime's `qdq_loss_debug` helpers
(per-tensor SQNR): their augmented graph also returns every dequantized weight for every input
(22M floats per call on MiniLM-L6), they serve the static QDQ form only, and a local SQNR does
not say how far an error travels to the logits the budget scores.

Protected nodes go to fp32 rather than 16-bit activations: ONNX Runtime's CPU provider has no
8×16-bit MatMul kernel, so a 16-bit-activation MatMul computes in fp32 anyway
(quantize._activation_suffix), and fp32 also drops its weight's rounding.

Every candidate runs as the artifact will: an onnxruntime session of its ONNX graph with the
artifact's optimization level and disabled fusions (SessionSettings).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bertc.compiler.core.budget import Candidate, SearchRequest, conclude, evaluate, search_record
from bertc.compiler.core.errors import QuantizationError
from bertc.compiler.core.graph import OnnxGraph
from bertc.compiler.core.summary import QuantizationSummary
from bertc.targets.ort.quantize import (
    QuantizationPlan,
    calibration_count,
    make_plan,
    mean_squared_output_error,
    plan_fused_dynamic,
    plan_onnx_runtime,
    summarise_plan,
)
from bertc.targets.ort.recipes import OrtRecipe

# Slice inputs the sensitivity ranking runs each single-node graph on.
SENSITIVITY_SAMPLES = 64
HIGHER_PRECISION = "fp32"
# Candidates after all-INT8 keep this many of the most sensitive nodes fp32 (then up to half).
CLIMB = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


@dataclass(frozen=True)
class SessionSettings:
    """How the artifact's runtime loads the graph: its optimization level (an
    onnxruntime.GraphOptimizationLevel name) and the fusions it keeps off."""

    disabled_fusions: tuple[str, ...] = ()
    level: str = "ORT_ENABLE_ALL"


@dataclass(frozen=True)
class Sensitivity:
    """One weight node's damage alone: the mean squared first-output error (against the fp32
    graph, over every element of the first SENSITIVITY_SAMPLES slice outputs) of the graph in
    which only this node is quantized."""

    node: str
    error: float


@dataclass(frozen=True)
class SearchOutcome:
    """The chosen candidate's graph and fp32 nodes, and the manifest's `search` record."""

    path: Path
    fp32: tuple[str, ...]
    record: dict[str, Any]


def climb(count: int) -> tuple[int, ...]:
    """How many of `count` ranked nodes each candidate after all-INT8 keeps fp32: CLIMB's steps
    up to half of them (at least one), the half itself last. () for no nodes."""
    if count <= 0:
        return ()
    bound = max(1, count // 2)
    steps = tuple(k for k in CLIMB if k < bound)
    return (*steps, bound)


def rank_by_sensitivity(
    nodes: Sequence[str], error_of: Callable[[str], float]
) -> list[Sensitivity]:
    """Every node with its error alone, most sensitive first (ties and NaN: graph order)."""
    measured = [Sensitivity(node, float(error_of(node))) for node in nodes]
    order = sorted(
        range(len(measured)),
        key=lambda i: (-measured[i].error if np.isfinite(measured[i].error) else np.inf, i),
    )
    return [measured[i] for i in order]


def session_runner(path: Path, settings: SessionSettings) -> Callable[..., list[np.ndarray]]:
    """`run(inputs)`: every output of the graph at `path` for one slice input, on ORT's CPU
    provider loaded as the artifact is (`settings`)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, settings.level)
    session = onnxruntime.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(settings.disabled_fusions),
    )
    names = [item.name for item in session.get_inputs()]

    def run(inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, {name: inputs[name] for name in names})

    return run


def first_outputs(
    run: Callable[..., list[np.ndarray]], inputs: Sequence[Mapping[str, np.ndarray]]
) -> list[np.ndarray]:
    """The first output of `run` on each input."""
    return [np.asarray(run(item)[0]) for item in inputs]


def search_plan(
    plan: QuantizationPlan,
    request: SearchRequest,
    work_dir: Path,
    session: SessionSettings,
) -> SearchOutcome:
    """Run the search over `plan`'s weight nodes (module docstring); BudgetNotMetError (exit 12)
    when no candidate meets the budget and keep_best is off."""
    directory = work_dir / "search"
    directory.mkdir(parents=True, exist_ok=True)
    nodes = plan.weight_nodes
    steps = climb(len(nodes))
    total = 1 + len(steps)
    tried: list[Candidate] = []
    paths: dict[str, tuple[Path, tuple[str, ...]]] = {}

    def attempt(fp32: tuple[str, ...]) -> Candidate:
        number = len(tried) + 1
        path = directory / f"candidate-{number}.onnx"
        _write(plan, path, fp32, None)
        name = "all INT8" if not fp32 else f"{len(fp32)} most sensitive fp32"
        candidate = evaluate(
            name,
            {node: HIGHER_PRECISION for node in fp32},
            session_runner(path, session),
            request,
            number,
            total,
            {"onnx_bytes": path.stat().st_size},
        )
        tried.append(candidate)
        paths[name] = (path, fp32)
        return candidate

    ranking: list[Sensitivity] = []
    if not attempt(()).meets(request.budget) and nodes:
        ranking = rank_nodes(plan, request, directory, session)
        for count in steps:
            if attempt(tuple(item.node for item in ranking[:count])).meets(request.budget):
                break
    chosen, met = conclude(tried, request)
    path, fp32 = paths[chosen.name]
    record = search_record(tried, chosen, met, request, search_rule(len(nodes)))
    record["sensitivity"] = sensitivity_record(ranking, len(nodes), len(request.inputs))
    return SearchOutcome(path, fp32, record)


def rank_nodes(
    plan: QuantizationPlan, request: SearchRequest, directory: Path, session: SessionSettings
) -> list[Sensitivity]:
    """`rank_by_sensitivity` of the plan's weight nodes on the first SENSITIVITY_SAMPLES slice
    inputs, against the plan's fp32 source graph run the same way."""
    samples = list(request.inputs[:SENSITIVITY_SAMPLES])
    request.progress(
        f"budget: ranking {len(plan.weight_nodes)} weight nodes by sensitivity on "
        f"{len(samples)} slice inputs"
    )
    reference = first_outputs(session_runner(plan.source, session), samples)
    trial = directory / "sensitivity-trial.onnx"

    def error_of(node: str) -> float:
        _write(plan, trial, (), (node,))
        return mean_squared_output_error(
            reference, first_outputs(session_runner(trial, session), samples)
        )

    ranking = rank_by_sensitivity(plan.weight_nodes, error_of)
    if ranking:
        request.progress(
            f"budget: most sensitive: {ranking[0].node} (error alone {ranking[0].error:.3g})"
        )
    return ranking


def _write(
    plan: QuantizationPlan, path: Path, fp32: Sequence[str], only: Sequence[str] | None
) -> None:
    try:
        plan.write(path, fp32, only)
    except Exception as error:  # the quantizer raises bare Exceptions; say which stage failed
        raise QuantizationError(f"onnxruntime quantization failed: {error}") from error


def search_rule(nodes: int) -> str:
    """The one-line rule the manifest records."""
    steps = ", ".join(str(k) for k in climb(nodes))
    return (
        f"all INT8 first; if it misses, keep the {steps} most sensitive of {nodes} weight "
        f"nodes fp32 in turn (sensitivity: mean squared first-output error vs fp32 with that "
        f"node alone quantized, first {SENSITIVITY_SAMPLES} slice inputs), stopping at the "
        "first that meets the budget; the fastest candidate within budget is built"
    )


def sensitivity_record(ranking: Sequence[Sensitivity], nodes: int, slice_size: int) -> dict:
    """The ranking as the manifest records it (empty when all INT8 met the budget)."""
    return {
        "measure": "mean squared first-output error vs the fp32 graph, that node alone quantized",
        "samples": min(SENSITIVITY_SAMPLES, slice_size),
        "weight_nodes": nodes,
        "ranked": [{"node": item.node, "error": float(f"{item.error:.4g}")} for item in ranking],
    }


def searched_summary(
    plan: QuantizationPlan,
    outcome: SearchOutcome,
    path: Path,
    recipe: OrtRecipe,
    calibration_samples: int,
) -> QuantizationSummary:
    """The chosen graph's quantization summary: the plan's settings plus the search's fp32."""
    settings = dict(plan.settings)
    settings["fp32_by_search"] = list(outcome.fp32)
    if "excluded_nodes" in settings:
        settings["excluded_nodes"] = int(settings["excluded_nodes"]) + len(outcome.fp32)
    return summarise_plan(plan, path, recipe, calibration_samples, settings)


def _finish(
    plan: QuantizationPlan,
    graph: OnnxGraph,
    path: Path,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    request: SearchRequest,
    work_dir: Path,
    session: SessionSettings,
) -> tuple[OnnxGraph, QuantizationSummary, dict[str, Any]]:
    outcome = search_plan(plan, request, work_dir, session)
    shutil.copyfile(outcome.path, path)
    summary = searched_summary(
        plan, outcome, path, recipe, calibration_count(recipe, calibration_inputs)
    )
    quantized = OnnxGraph(path, graph.input_names, graph.output_names, graph.opset, graph.parity)
    return quantized, summary, outcome.record


def search_onnx_runtime(
    graph: OnnxGraph,
    path: Path,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
    request: SearchRequest,
    session: SessionSettings,
) -> tuple[OnnxGraph, QuantizationSummary, dict[str, Any]]:
    """`quantize_onnx_runtime`'s recipe (static QDQ, or plain dynamic) under the budget: the
    chosen candidate written to `path`, its summary and the manifest's `search` record."""
    from bertc.targets.ort.tokenizer import drop_unused_extension_domains

    plan = make_plan(plan_onnx_runtime, graph, recipe, calibration_inputs, work_dir)
    result = _finish(plan, graph, path, recipe, calibration_inputs, request, work_dir, session)
    drop_unused_extension_domains(path)
    return result


def search_fused_dynamic(
    fused: OnnxGraph,
    path: Path,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
    request: SearchRequest,
    session: SessionSettings,
) -> tuple[OnnxGraph, QuantizationSummary, dict[str, Any]]:
    """`quantize_fused_dynamic`'s recipe under the budget: SmoothQuant still chosen on the
    calibration sentences, the fp32 MatMuls chosen by the search instead of by
    `choose_fp32_matmuls`."""
    plan = make_plan(
        plan_fused_dynamic,
        fused,
        recipe,
        calibration_inputs,
        work_dir,
        session.disabled_fusions,
        False,
    )
    return _finish(plan, fused, path, recipe, calibration_inputs, request, work_dir, session)


def quantize_or_search(
    graph: OnnxGraph,
    path: Path,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
    request: SearchRequest | None,
    session: SessionSettings,
) -> tuple[OnnxGraph, QuantizationSummary | None, dict[str, Any] | None]:
    """`quantize_or_copy`, or under a budget `search_onnx_runtime`, with the `search` record:
    None without a search, and for recipes the search does not cover (fp32, library defaults;
    the compiler's notes say so)."""
    from bertc.targets.ort.quantize import quantize_or_copy

    if request is not None and recipe.quantizes and not recipe.library_defaults:
        return search_onnx_runtime(
            graph, path, recipe, calibration_inputs, work_dir, request, session
        )
    quantized, summary = quantize_or_copy(graph, path, recipe, calibration_inputs, work_dir)
    return quantized, summary, None
