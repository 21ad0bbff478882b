"""INT8 quantization recipes, written with the runtimes' own quantizers.

ONNX Runtime graphs (the `onnx` and `ort-mobile` targets) use `onnxruntime.quantization`;
OpenVINO uses `nncf.quantize` (see targets/openvino.py). Both report what they quantized in the
same `QuantizationSummary`, read back from the graph they wrote rather than from their settings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from bertc.compiler.core.enums import QuantizationMode
from bertc.compiler.core.errors import QuantizationError
from bertc.compiler.core.graph import OnnxGraph
from bertc.compiler.core.summary import (
    FP32_REASONS,
    WEIGHTED_OP_TYPES,
    QuantizationSummary,
    tool_version,
)
from bertc.targets.ort.patterns import (  # noqa: F401  (GELU_OP_TYPES: the old name)
    GELU_OP_TYPES,
    activation_fed_matmuls,
    encoder_layers,
    missing_ffn_note,
)
from bertc.targets.ort.recipes import POSITION_TABLE_REASON, OrtRecipe


class InputsReader:
    """Feeds calibration samples to onnxruntime's calibrator one at a time, at their real length."""

    def __init__(self, samples: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._samples = samples
        self._iterator: Iterator[Mapping[str, np.ndarray]] = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self._iterator, None)
        return None if sample is None else dict(sample)

    def rewind(self) -> None:
        self._iterator = iter(self._samples)


# Embedding tables with at least this many rows are quantized (word and position embeddings);
# smaller ones (token types: 2 rows) cost nothing in fp32.
EMBEDDING_MIN_ROWS = 256


def _embedding_tables(model: onnx.ModelProto, position_tables: bool = True) -> set[str]:
    """Gather tables large enough to matter: the word embeddings (read with the token ids, a
    graph input) and, with `position_tables`, the position embeddings (read with computed
    position ids)."""
    rows = {init.name: int(init.dims[0]) for init in model.graph.initializer if len(init.dims) == 2}
    inputs = {item.name for item in model.graph.input}
    return {
        node.input[0]
        for node in model.graph.node
        if node.op_type == "Gather"
        and rows.get(node.input[0], 0) >= EMBEDDING_MIN_ROWS
        and (position_tables or node.input[1] in inputs)
    }


def _nodes_to_exclude(model: onnx.ModelProto, position_tables: bool = True) -> list[str]:
    """Gathers other than the word and (with `position_tables`) position embeddings (token
    types, shapes), and MatMuls without a constant weight (attention scores and context).

    The MatMuls are listed by name because onnxruntime 1.32's QDQ quantizer ignores the
    `MatMulConstBOnly` option (only its QOperator path reads it), and would otherwise quantize
    the attention products, which ORT then runs as QLinearMatMul.
    """
    tables = _embedding_tables(model, position_tables)
    constants = {init.name for init in model.graph.initializer}
    return sorted(
        node.name
        for node in model.graph.node
        if (node.op_type == "Gather" and node.input[0] not in tables)
        or (node.op_type == "MatMul" and node.input[1] not in constants)
    )


def ffn_output_activations(model: onnx.ModelProto) -> list[str]:
    """Activation inputs of the FFN output projections (`activation_fed_matmuls`).

    The FFN activation's output has BERT's widest activation range (up to ~24 in MiniLM-L6's
    first layer against ~3 elsewhere), so 8-bit steps there are coarsest; bertc gives these
    inputs 16 bits.
    """
    return sorted({node.input[0] for node in activation_fed_matmuls(model)})


def preprocess_for_quantization(graph: OnnxGraph, path: Path) -> OnnxGraph:
    """Fold constants and infer shapes so the quantizer sees every MatMul's weights.

    Symbolic shape inference is skipped: with transformers 5's mask code it stops with
    "Incomplete symbolic shape inference" (onnxruntime 1.32); ONNX shape inference suffices.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(graph.path), str(path), skip_symbolic_shape=True)
    return OnnxGraph(path, graph.input_names, graph.output_names, graph.opset, graph.parity)


@dataclass(frozen=True)
class QuantizationPlan:
    """A recipe ready to write INT8 graphs, the calibration (if any) done once.

    source: the fp32 graph the quantizer reads (prepared, or fused and smoothed).
    weight_nodes: the nodes with constant weights the recipe quantizes, in graph order (MatMuls;
    the fused graph's Attention too): what the accuracy-budget search may keep fp32.
    write(destination, fp32, only): the recipe's INT8 graph with the nodes `fp32` left fp32
    besides the recipe's own exclusions, or (only not None) with just the nodes `only`
    quantized; the quantizer's bare Exceptions pass through.
    settings, notes: the quantization summary's, for the recipe as planned.
    """

    source: Path
    weight_nodes: tuple[str, ...]
    write: Callable[[Path, Sequence[str], Sequence[str] | None], None]
    settings: dict[str, Any]
    notes: tuple[str, ...] = ()


def weight_nodes(
    model: onnx.ModelProto, exclude: Sequence[str], op_types: Sequence[str]
) -> tuple[str, ...]:
    """Names of the MatMuls with a constant weight (and fused Attention nodes, whose weight is
    the QKV projection) that a recipe quantizing `op_types` reaches, `exclude` aside."""
    constants = {init.name for init in model.graph.initializer}
    skipped = set(exclude)
    return tuple(
        node.name
        for node in model.graph.node
        if node.name not in skipped
        and node.op_type in op_types
        and (
            (node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in constants)
            or node.op_type == "Attention"
        )
    )


def _supports_calibration_cache() -> bool:
    """onnxruntime's quantize_static reuses computed tensor ranges from `calibration_cache_path`
    (1.32); older versions calibrate on every call."""
    import inspect

    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def plan_onnx_runtime(
    graph: OnnxGraph,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
) -> QuantizationPlan:
    """The plan of `quantize_onnx_runtime`'s recipes (bertc's static and plain dynamic ones, and
    the library defaults): the graph prepared once, static calibration ranges computed by the
    first write and reused by the next ones (onnxruntime's calibration cache)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    prepared = preprocess_for_quantization(graph, work_dir / "prepared.onnx")
    model = onnx.load(str(prepared.path))
    static = recipe.mode is QuantizationMode.STATIC
    if static and not calibration_inputs:
        raise QuantizationError("static quantization needs calibration samples")
    exclude = [] if recipe.library_defaults else _nodes_to_exclude(model)
    settings = recipe.record()
    notes: tuple[str, ...] = ()
    source = str(prepared.path)
    cache: dict[str, Any] = {}
    if static and _supports_calibration_cache():
        cache_path = work_dir / "calibration-ranges.json"
        cache_path.unlink(missing_ok=True)
        cache = {"calibration_cache_path": str(cache_path)}

    def scope(fp32: Sequence[str], only: Sequence[str] | None) -> dict[str, Any]:
        return dict(nodes_to_exclude=[*exclude, *fp32], nodes_to_quantize=list(only or []))

    if recipe.library_defaults:

        def write(destination: Path, fp32: Sequence[str], only: Sequence[str] | None) -> None:
            if static:
                reader = InputsReader(calibration_inputs)
                quantize_static(source, str(destination), reader, **scope(fp32, only), **cache)
            else:
                quantize_dynamic(source, str(destination), **scope(fp32, only))

        return QuantizationPlan(prepared.path, (), write, settings)
    common: dict[str, Any] = dict(
        per_channel=recipe.per_channel,
        weight_type=QuantType[recipe.weight_type],
        op_types_to_quantize=list(recipe.op_types_to_quantize),
    )
    settings["excluded_nodes"] = len(exclude)
    if static:
        wide = ffn_output_activations(model) if recipe.sixteen_bit_ffn_outputs else []
        settings["sixteen_bit_activations"] = len(wide)
        if recipe.sixteen_bit_ffn_outputs:
            note = missing_ffn_note(
                len(wide), encoder_layers(model), "static recipe's 16-bit FFN activations"
            )
            notes += (note,) if note else ()
        options = dict(
            quant_format=QuantFormat[recipe.quant_format],
            activation_type=QuantType[recipe.activation_type],
            calibrate_method=CalibrationMethod[recipe.calibrate_method],
            extra_options={
                "OpTypesToExcludeOutputQuantization": (
                    [] if recipe.matmul_outputs_quantized else ["MatMul"]
                ),
                "TensorQuantOverrides": {
                    tensor: [{"quant_type": QuantType.QUInt16}] for tensor in wide
                },
            },
            **common,
            **cache,
        )

        source = _opset_for_overrides(model, recipe, options["extra_options"], work_dir) or source

        def write(destination: Path, fp32: Sequence[str], only: Sequence[str] | None) -> None:
            reader = InputsReader(calibration_inputs)
            quantize_static(source, str(destination), reader, **options, **scope(fp32, only))

    else:

        def write(destination: Path, fp32: Sequence[str], only: Sequence[str] | None) -> None:
            quantize_dynamic(
                source,
                str(destination),
                extra_options={"MatMulConstBOnly": True},
                **common,
                **scope(fp32, only),
            )

    nodes = weight_nodes(model, exclude, recipe.op_types_to_quantize)
    return QuantizationPlan(Path(source), nodes, write, settings, notes)


def _opset_for_overrides(
    model: onnx.ModelProto, recipe: OrtRecipe, extra_options: Mapping[str, Any], work_dir: Path
) -> str | None:
    """The prepared graph at the opset its 16-bit overrides need (21), written once, or None when
    it has it already. quantize_static converts it itself on every call (onnxruntime 1.32's
    `update_opset_version`, ~1.3 s of a 2.4 s call on MiniLM-L6): the search calls it dozens of
    times, and the same helper run once gives the same graph."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.quant_utils import update_opset_version

    try:
        updated = update_opset_version(
            model,
            QuantType[recipe.weight_type],
            QuantType[recipe.activation_type],
            tensor_quant_overrides=extra_options.get("TensorQuantOverrides"),
        )
    except TypeError:  # an onnxruntime whose helper takes no overrides: it converts per call
        return None
    if updated is model:
        return None
    path = work_dir / "prepared-opset.onnx"
    onnx.save(updated, str(path))
    return str(path)


def quantize_onnx_runtime(
    graph: OnnxGraph,
    path: Path,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
) -> tuple[OnnxGraph, QuantizationSummary]:
    """Quantize `graph` into `path` with `onnxruntime.quantization` as `recipe` says
    (targets/ort/recipes.py), and read back what ran in INT8.

    bertc's static recipe is QDQ, per-channel int8 weights, uint8 activations (the u8s8 kernels
    are ORT's fast path on x86 and ARM), MatMuls with constant weights and the word-embedding
    table in INT8, everything listed in FP32_REASONS in fp32. Two documented options make it
    accurate on MiniLM-L6 SST-2 (agreement with fp32 97.3% → 99.5%): MatMul outputs are not
    quantized (they feed the bias and the residual stream, where BERT's outlier channels live),
    and the FFN output projections read 16-bit activations (`TensorQuantOverrides`; weights stay
    int8, so the bytes do not change). Raises QuantizationError naming the failed stage.
    """
    plan = make_plan(plan_onnx_runtime, graph, recipe, calibration_inputs, work_dir)
    _written(plan, path, ())
    return _quantized_graph(graph, path), summarise_plan(
        plan, path, recipe, calibration_count(recipe, calibration_inputs)
    )


def calibration_count(recipe: OrtRecipe, inputs: Sequence[Mapping[str, np.ndarray]]) -> int:
    """Calibration sentences a recipe read: static calibration, or the fused dynamic recipe's
    choices; plain dynamic reads none."""
    return len(inputs) if recipe.mode is QuantizationMode.STATIC or recipe.fused else 0


def make_plan(planner: Callable[..., QuantizationPlan], *args: Any) -> QuantizationPlan:
    """`planner(*args)`, its bare quantizer Exceptions raised as QuantizationError."""
    try:
        return planner(*args)
    except QuantizationError:
        raise
    except Exception as error:  # the quantizer raises bare Exceptions; say which stage failed
        raise QuantizationError(f"onnxruntime quantization failed: {error}") from error


def _written(plan: QuantizationPlan, path: Path, fp32: Sequence[str]) -> None:
    try:
        plan.write(path, fp32, None)
    except Exception as error:  # the quantizer raises bare Exceptions; say which stage failed
        raise QuantizationError(f"onnxruntime quantization failed: {error}") from error


def _quantized_graph(graph: OnnxGraph, path: Path) -> OnnxGraph:
    return OnnxGraph(path, graph.input_names, graph.output_names, graph.opset, graph.parity)


def summarise_plan(
    plan: QuantizationPlan,
    path: Path,
    recipe: OrtRecipe,
    calibration_samples: int,
    settings: Mapping[str, Any] | None = None,
) -> QuantizationSummary:
    """The summary of the graph a plan wrote to `path` (settings: the plan's unless given)."""
    return summarise_onnx(
        onnx.load(str(path)),
        mode=recipe.mode.value,
        recipe=recipe.recipe.value,
        tool=tool_version("onnxruntime"),
        calibration_samples=calibration_samples,
        settings=plan.settings if settings is None else settings,
        notes=plan.notes,
    )


# A GELU-fed MatMul stays fp32 when its fp32 copy alone removes at least this share of the INT8
# model's mean squared output error on the calibration sentences; each one costs what INT8 saved
# on it. MiniLM-L6 SST-2 (2 threads, batch 1, real lengths, Optimum's dynamic INT8 at 1.78 ms in
# the same run): after smoothing, layer 0's FFN output removes 21% of the error; keeping it
# fp32 would take agreement on the dev set from 99.20% to 99.31% and the latency from 1.31 to
# 1.42 ms, so the bar is set above that. Unsmoothed, the same layer removes 25%.
SENSITIVE_ERROR_SHARE = 0.25
# At most this many MatMuls stay fp32. Unsmoothed, a second one (layer 1's, -22% error) took
# the latency from 1.31 to 1.41 ms and agreement from 99.20% to 98.97%.
MAX_FP32_MATMULS = 1


def choose_fp32_matmuls(
    candidates: Sequence[str],
    output_error: Callable[[tuple[str, ...]], float],
    share: float = SENSITIVE_ERROR_SHARE,
    limit: int = MAX_FP32_MATMULS,
) -> tuple[tuple[str, ...], dict[str, float]]:
    """Greedy sensitivity search: keep in fp32 the candidate whose fp32 copy lowers the output
    error most, while that lowers it by at least `share`; return the kept ones and every error
    measured (keyed by the fp32 set, "" for all INT8)."""
    kept: tuple[str, ...] = ()
    error = output_error(kept)
    measured = {"": error}
    while len(kept) < limit:
        trials = {name: output_error((*kept, name)) for name in candidates if name not in kept}
        measured.update({"+".join((*kept, name)): value for name, value in trials.items()})
        best = min(trials, key=trials.__getitem__, default=None)
        if best is None or trials[best] > (1 - share) * error:
            break
        kept, error = (*kept, best), trials[best]
    return kept, measured


def mean_squared_output_error(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]
) -> float:
    """Mean squared difference of the first output over all samples and elements.

    Not a relative error: a sentence whose logits sit near zero would dominate that, and it is
    the absolute shift of the logits that moves a decision.
    """
    return float(
        np.mean(
            np.concatenate(
                [
                    np.square(got - want).ravel()
                    for want, got in zip(reference, candidate, strict=True)
                ]
            )
        )
    )


# SmoothQuant strengths tried on the calibration sentences (compiler/smoothing.py); the one with
# the least output error wins, or no smoothing if that is better. MiniLM-L6 SST-2: 0.8 (mean
# squared logit error 0.0056 unsmoothed, 0.0151 / 0.0042 / 0.0022 / 0.0026 at 0.5 / 0.65 / 0.8 /
# 0.9); dev-set agreement with fp32 98.97% -> 99.20%, margin error (RMS) 0.25 -> 0.13.
SMOOTHING_ALPHAS = (0.5, 0.65, 0.8, 0.9)


@dataclass(frozen=True)
class CalibratedChoice:
    """What the calibration sentences decided for the fused dynamic recipe."""

    source: Path
    alpha: float | None
    smoothed_matmuls: tuple[str, ...]
    alpha_errors: Mapping[str, float]
    fp32_matmuls: tuple[str, ...]
    fp32_errors: Mapping[str, float]


def quantize_fused_dynamic(
    fused: OnnxGraph,
    path: Path,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
    disabled_fusions: Sequence[str] = (),
) -> tuple[OnnxGraph, QuantizationSummary]:
    """bertc's dynamic recipe (`recipes.MOBILE`'s dynamic entry) for ONNX Runtime's fused
    transformer graph (targets/ort/fusion.py): per-channel int8 weights for every MatMul (pooler
    and classifier included: they read one row, so their cost is the weights' bytes), Attention
    (as QAttention) and the word and position embeddings, activations quantized per call.

    Per-tensor activation scales cannot hold LayerNorm and GELU outputs with outlier channels
    (MiniLM-L6 layer 0's GELU: one channel at 24.2 against a median of 1.6); unsmoothed, all-INT8
    agreed with fp32 on 98.97% of SST-2 dev. Two measured choices on the calibration sentences
    answer it (`choose_with_calibration`); without sentences neither is made and the summary
    says so.
    """
    plan = make_plan(
        plan_fused_dynamic, fused, recipe, calibration_inputs, work_dir, disabled_fusions
    )
    _written(plan, path, ())
    summary = summarise_plan(plan, path, recipe, calibration_count(recipe, calibration_inputs))
    return _quantized_graph(fused, path), summary


def plan_fused_dynamic(
    fused: OnnxGraph,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
    disabled_fusions: Sequence[str] = (),
    fp32_by_sensitivity: bool = True,
) -> QuantizationPlan:
    """The fused dynamic recipe's plan: SmoothQuant strength chosen on the calibration sentences,
    then (fp32_by_sensitivity) `choose_fp32_matmuls`; the accuracy-budget search turns that off
    and keeps MatMuls fp32 by its own measure (targets/ort/search.py).

    Both choices are measured with the position table in int8, the graph SENSITIVE_ERROR_SHARE
    was set on; the written graph then keeps it fp32 when the recipe says so
    (`recipes.POSITION_TABLE_REASON`). Measured on MiniLM-L6 SST-2: choosing on the written
    graph instead kept layer 0's FFN output fp32 (it then removed 40% of a smaller error), which
    took dev agreement with fp32 from 99.20% to 99.08%, the aarch64-vs-x86 max |Δ logit| from
    0.047 to 0.072, and cost that MatMul's INT8 speed."""
    model = onnx.load(str(fused.path))
    measured_without = _nodes_to_exclude(model)
    exclude = _nodes_to_exclude(model, recipe.position_embeddings_int8)
    candidates = _gelu_fed_matmuls(model)
    if calibration_inputs:
        choice = choose_with_calibration(
            fused.path,
            recipe,
            candidates if fp32_by_sensitivity else [],
            measured_without,
            calibration_inputs,
            work_dir,
            disabled_fusions,
        )
    else:
        choice = CalibratedChoice(fused.path, None, (), {}, (), {})
    settings = _fused_dynamic_settings(
        recipe, choice, exclude, candidates, bool(calibration_inputs), fp32_by_sensitivity
    )
    note = missing_ffn_note(
        len(candidates), encoder_layers(model), "dynamic recipe's sensitivity search"
    )
    kept = [*exclude, *choice.fp32_matmuls]

    def write(destination: Path, fp32: Sequence[str], only: Sequence[str] | None) -> None:
        _quantize_dynamic_graph(recipe, choice.source, destination, [*kept, *fp32], only)

    nodes = weight_nodes(model, kept, recipe.op_types_to_quantize)
    return QuantizationPlan(choice.source, nodes, write, settings, (note,) if note else ())


def choose_with_calibration(
    fused_path: Path,
    recipe: OrtRecipe,
    candidates: Sequence[str],
    exclude: Sequence[str],
    samples: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
    disabled_fusions: Sequence[str],
) -> CalibratedChoice:
    """First the SmoothQuant strength (or none) whose INT8 graph moves the outputs least, then
    `choose_fp32_matmuls` on that graph among `candidates`; every error measured against the
    fused fp32 graph."""
    from bertc.targets.ort.smoothing import smooth_graph, smoothing_statistics

    reference = _first_outputs(fused_path, samples, disabled_fusions)
    trial = work_dir / "calibration-trial.onnx"

    def output_error(source: Path, fp32_matmuls: Sequence[str]) -> float:
        _quantize_dynamic_graph(recipe, source, trial, [*exclude, *fp32_matmuls])
        return mean_squared_output_error(
            reference, _first_outputs(trial, samples, disabled_fusions)
        )

    amax = smoothing_statistics(fused_path, samples)
    sources: dict[float | None, tuple[Path, list[str]]] = {None: (fused_path, [])}
    for alpha in SMOOTHING_ALPHAS:
        smoothed = work_dir / f"smoothed-{alpha}.onnx"
        sources[alpha] = (smoothed, smooth_graph(fused_path, smoothed, amax, alpha))
    errors = {alpha: output_error(source, ()) for alpha, (source, _) in sources.items()}
    alpha = min(errors, key=errors.__getitem__)
    source, smoothed_matmuls = sources[alpha]
    kept, measured = ((), {})
    if candidates:
        kept, measured = choose_fp32_matmuls(candidates, lambda fp32: output_error(source, fp32))
    return CalibratedChoice(
        source,
        alpha,
        tuple(smoothed_matmuls),
        {("none" if key is None else str(key)): value for key, value in errors.items()},
        kept,
        measured,
    )


def _quantize_dynamic_graph(
    recipe: OrtRecipe,
    source: Path,
    destination: Path,
    exclude: Sequence[str],
    only: Sequence[str] | None = None,
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(destination),
        per_channel=recipe.per_channel,
        weight_type=QuantType[recipe.weight_type],
        op_types_to_quantize=list(recipe.op_types_to_quantize),
        nodes_to_exclude=list(exclude),
        nodes_to_quantize=list(only or []),
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _significant(values: Mapping[str, float]) -> dict[str, float]:
    return {name: float(f"{value:.4g}") for name, value in values.items()}


def _fused_dynamic_settings(
    recipe: OrtRecipe,
    choice: CalibratedChoice,
    exclude: Sequence[str],
    candidates: Sequence[str],
    calibrated: bool,
    fp32_by_sensitivity: bool = True,
) -> dict[str, Any]:
    not_run = "not run: no calibration sentences (pass --task and --data-dir)"
    sensitivity_rule = (
        f"keep a GELU-fed MatMul fp32 when that alone cuts the mean squared output error "
        f"on the calibration sentences by >= {SENSITIVE_ERROR_SHARE:.0%} (at most "
        f"{MAX_FP32_MATMULS})"
        if calibrated
        else not_run
    )
    if not fp32_by_sensitivity:
        sensitivity_rule = "replaced by the accuracy-budget search (the manifest's search)"
    return dict(
        **recipe.record(),
        excluded_nodes=len(exclude) + len(choice.fp32_matmuls),
        position_embeddings="int8" if recipe.position_embeddings_int8 else POSITION_TABLE_REASON,
        smoothquant_alpha=choice.alpha,
        smoothed_matmuls=len(choice.smoothed_matmuls),
        smoothquant_errors=_significant(choice.alpha_errors),
        smoothquant_rule=(
            f"alpha from {list(SMOOTHING_ALPHAS)} or none, least mean squared output error on "
            "the calibration sentences"
            if calibrated
            else not_run
        ),
        fp32_by_sensitivity=list(choice.fp32_matmuls),
        sensitivity_candidates=len(candidates),
        sensitivity_errors={
            name or "all INT8": value for name, value in _significant(choice.fp32_errors).items()
        },
        sensitivity_rule=sensitivity_rule,
    )


def _gelu_fed_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMuls that read the FFN activation (the FFN output projections), fused
    (Gelu, FastGelu, QuickGelu) or not (ReLU, SiLU, Mish)."""
    return [node.name for node in activation_fed_matmuls(model)]


def _first_outputs(
    path: Path, samples: Sequence[Mapping[str, np.ndarray]], disabled_fusions: Sequence[str]
) -> list[np.ndarray]:
    """The graph's first output for each sample, run as the artifact will run."""
    from bertc.targets.ort.fusion import session_outputs

    return [outputs[0] for outputs in session_outputs(path, samples, disabled_fusions)]


def summarise_onnx(
    model: onnx.ModelProto,
    *,
    mode: str,
    recipe: str,
    tool: str,
    calibration_samples: int,
    settings: Mapping[str, Any],
    notes: tuple[str, ...] = (),
) -> QuantizationSummary:
    """Classify each weighted op of a quantized ONNX graph as INT8 or fp32 by its inputs."""
    int8_ops, fp32_ops = classify_onnx_ops(model)
    return QuantizationSummary(
        mode=mode,
        recipe=recipe,
        tool=tool,
        calibration_samples=calibration_samples,
        int8_ops=int8_ops,
        fp32_ops=fp32_ops,
        fp32_reasons={op: FP32_REASONS[op] for op in fp32_ops if op in FP32_REASONS},
        settings=dict(settings),
        notes=notes,
    )


def classify_onnx_ops(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, int]]:
    """Count compute ops reading dequantized or integer inputs (INT8) versus float ones (fp32)."""
    producers = {output: node for node in model.graph.node for output in node.output}
    # Dynamic (QOperator) quantization gathers from the int8 table itself, then dequantizes.
    integer_tables = {
        init.name
        for init in model.graph.initializer
        if init.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    }
    wide_zero_points = {
        init.name
        for init in model.graph.initializer
        if init.data_type in (onnx.TensorProto.UINT16, onnx.TensorProto.INT16)
    }
    int8: Counter[str] = Counter()
    fp32: Counter[str] = Counter()
    integer_ops = {
        "MatMulInteger",
        "QLinearMatMul",
        "ConvInteger",
        "QLinearConv",
        "DynamicQuantizeMatMul",
        "QAttention",
    }
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
            continue
        reads_int8 = node.op_type in integer_ops or (
            node.op_type in WEIGHTED_OP_TYPES
            and (
                _reads_dequantized_weight(node, producers)
                or any(name in integer_tables for name in node.input)
            )
        )
        if reads_int8:
            int8[node.op_type + _activation_suffix(node, producers, wide_zero_points)] += 1
        elif node.op_type in FP32_REASONS and _is_float_compute(node):
            fp32[node.op_type] += 1
    return dict(sorted(int8.items())), dict(sorted(fp32.items()))


def _activation_suffix(
    node: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto], wide_zero_points: set[str]
) -> str:
    """` (16-bit activations)` where an input is dequantized from 16 bits: ORT's CPU EP has no
    8×16-bit kernel, so such a MatMul keeps int8 weights but computes in fp32."""
    for name in node.input:
        producer = producers.get(name)
        if (
            producer is not None
            and producer.op_type == "DequantizeLinear"
            and len(producer.input) > 2
            and producer.input[2] in wide_zero_points
        ):
            return " (16-bit activations)"
    return ""


def _reads_dequantized_weight(
    node: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto]
) -> bool:
    """A DequantizeLinear of a constant (an int8 initializer) feeds this node."""
    for name in node.input:
        producer = producers.get(name)
        if (
            producer is not None
            and producer.op_type == "DequantizeLinear"
            and producer.input[0] not in producers
        ):
            return True
    return False


def _is_float_compute(node: onnx.NodeProto) -> bool:
    """Shape-index Gathers and mask arithmetic are not compute worth reporting."""
    return not (node.op_type == "Gather" and "Shape" in node.input[0])


def quantize_or_copy(
    graph: OnnxGraph,
    path: Path,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
) -> tuple[OnnxGraph, QuantizationSummary | None]:
    """The graph quantized as `recipe` says (or copied as fp32), and its quantization summary."""
    import shutil

    from bertc.targets.ort.tokenizer import drop_unused_extension_domains

    if not recipe.quantizes:
        shutil.copyfile(graph.path, path)
        return OnnxGraph(
            path, graph.input_names, graph.output_names, graph.opset, graph.parity
        ), None
    quantized, summary = quantize_onnx_runtime(graph, path, recipe, calibration_inputs, work_dir)
    drop_unused_extension_domains(quantized.path)
    return quantized, summary
