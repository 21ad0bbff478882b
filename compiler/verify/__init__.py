"""`verify_artifact`: does a compiled artifact still do its task as well as the fp32 model?

The artifact is checked against its manifest before anything runs, then the artifact (through
its own runtime) and the fp32 PyTorch reference score every dev example at batch 1 and real
length. The report gives each metric for both, the delta in points with a paired-bootstrap 95%
CI, how often the two predict alike, how far the logits moved, batch-1 latency and batched
throughput, size, and the machines involved; it is written into the artifact's reports folder
(outside the integrity check), and the gate then fails if the headline metric dropped too far.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bertc.calibration import Example, GlueTask, compute_metrics, get_task, load_examples
from bertc.calibration.metrics import METRICS, predictions_from_logits
from bertc.compiler.core.errors import (
    ArtifactError,
    BertcError,
    GateFailedError,
    ModelFileError,
    ModelNotFoundError,
    UsageError,
)
from bertc.compiler.core.files import write_text_atomically
from bertc.compiler.core.manifest import (
    REPORTS_DIR,
    check_integrity,
    host_description,
    read_manifest,
    toolchain_versions,
)
from bertc.compiler.loading import HEAD_ENCODER, HEAD_REGRESSION, LoadedModel, load_model

Progress = Callable[[str], None]
# What each `progress(stage)` call means, for a status line.
STAGE_LABELS = {
    "integrity": "checking the artifact against its manifest",
    "data": "reading the task's examples",
    "load": "loading the fp32 reference",
    "artifact": "running the artifact at batch 1",
    "throughput": "measuring batched throughput",
    "reference": "running the fp32 reference",
    "metrics": "scoring, paired bootstrap",
    "report": "writing reports",
}

DEFAULT_MAX_DROP = 0.5
DEFAULT_BATCH_SIZE = 32
DEFAULT_BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95
WARMUP_RUNS = 5
# How many disagreeing examples the report names by line, so a user can look at them.
LISTED_DISAGREEMENTS = 20
# Bootstrap indices held in memory at once (int64): about 32 MB.
_BOOTSTRAP_BLOCK_ELEMENTS = 1 << 22
# Float noise in a points delta must not decide a gate set exactly at the observed drop.
_GATE_EPSILON = 1e-9


@dataclass(frozen=True)
class MetricDelta:
    """One task metric for reference and artifact (0-1 scale) and their paired difference."""

    name: str
    reference: float
    artifact: float
    delta_points: float
    ci_low_points: float
    ci_high_points: float


@dataclass(frozen=True)
class Agreement:
    """How alike the two models predict: the rate for classes, Pearson's r for regression scores."""

    rate: float | None
    prediction_pearson: float | None
    disagreements: int | None
    disagreement_lines: tuple[int, ...] = ()


@dataclass(frozen=True)
class OutputError:
    """Artifact logits minus reference logits over every example and output."""

    max_abs: float
    mean_abs: float
    rmse: float
    # Artifact on padded batches vs itself at batch 1: how far padding alone moves the logits.
    batch_padding_max_abs: float


@dataclass(frozen=True)
class Latency:
    """Artifact speed: batch 1 at each example's real length, and padded batches."""

    batch1_median_ms: float
    batch1_p90_ms: float
    median_tokens: float
    batch_size: int
    batch_sentences_per_s: float
    batch_padding: str = "padded to the longest sentence of each batch"


@dataclass(frozen=True)
class RunEnvironment:
    """What ran and where: a figure means little without the runtime, precision, threads and ISA."""

    target: str
    runtime: str
    runtime_version: str
    precision: str | None
    threads_requested: int | None
    runtime_threads: int | None
    build_host: Mapping[str, Any]
    verify_host: Mapping[str, Any]
    torch_version: str
    bertc_version: str = "unknown"


@dataclass(frozen=True)
class GateResult:
    metric: str
    max_drop: float
    delta_points: float
    passed: bool
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """Everything `bertc verify` measured; rendered by `bertc.compiler.verify.render`."""

    artifact_dir: Path
    task: str
    split: str
    examples: int
    reference: str
    artifact_labels: Mapping[str, str] | None
    headline_metric: str
    metrics: tuple[MetricDelta, ...]
    agreement: Agreement
    output_error: OutputError
    latency: Latency
    model_bytes: int
    model_files: tuple[str, ...]
    environment: RunEnvironment
    bootstrap_samples: int
    seed: int
    gate: GateResult
    report_files: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def headline(self) -> MetricDelta:
        return next(metric for metric in self.metrics if metric.name == self.headline_metric)


@dataclass(frozen=True)
class _Outputs:
    """Both models' logits on the split, and the artifact's timings."""

    reference_logits: np.ndarray
    artifact_logits: np.ndarray
    latency: Latency
    batch_padding_max_abs: float
    precision: str | None
    runtime_threads: int | None


def _silent(stage: str) -> None:
    del stage


def verify_artifact(
    artifact_dir: Path,
    task: str,
    *,
    data_dir: Path | None,
    max_drop: float = DEFAULT_MAX_DROP,
    reference: str | None = None,
    split: str = "dev",
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None,
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
    allow_pickle: bool = False,
    raise_on_gate_failure: bool = True,
    progress: Progress = _silent,
) -> VerifyReport:
    """Score the artifact against its fp32 reference, write the reports, then apply the gate.

    Raises ArtifactError for a tampered or incomplete artifact (before anything runs), UsageError
    for an encoder artifact or a task whose label count differs from the head's, the DataError
    family for missing or malformed data, and GateFailedError (after the reports are written)
    when the headline metric dropped by more than `max_drop` points, unless told not to.
    """
    artifact_dir = Path(artifact_dir)
    glue_task = get_task(task)
    _check_settings(max_drop, batch_size, threads, bootstrap_samples)
    progress("integrity")
    manifest = read_manifest(artifact_dir)
    check_integrity(artifact_dir, manifest)
    check_task_fits(manifest, glue_task, artifact_dir)
    progress("data")
    examples = load_examples(glue_task, split, data_dir)
    labels = _labels(glue_task, examples, split)
    progress("load")
    loaded, notes = load_reference(manifest, reference, allow_pickle)
    check_reference_fits(loaded, glue_task)
    outputs = run_both(artifact_dir, manifest, loaded, examples, batch_size, threads, progress)
    progress("metrics")
    report = build_report(
        artifact_dir,
        manifest,
        glue_task,
        split,
        examples,
        labels,
        outputs,
        loaded,
        max_drop=max_drop,
        threads=threads,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        notes=notes,
    )
    progress("report")
    write_reports(artifact_dir, report)
    if raise_on_gate_failure:
        raise_if_gate_failed(report)
    return report


def raise_if_gate_failed(report: VerifyReport) -> None:
    """GateFailedError with the gate's one-line message when the headline metric dropped too far."""
    if not report.gate.passed:
        raise GateFailedError(report.gate.message)


def _check_settings(
    max_drop: float, batch_size: int, threads: int | None, bootstrap_samples: int
) -> None:
    if not math.isfinite(max_drop) or max_drop < 0:
        raise UsageError(f"--max-drop must be a number of points >= 0 (e.g. 0.5), got {max_drop}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    if bootstrap_samples < 1:
        raise UsageError(f"--bootstrap-samples must be at least 1, got {bootstrap_samples}")


def artifact_label_count(manifest: Mapping[str, Any]) -> int:
    """Width of the artifact's head: one score for regression, else its label list."""
    model = manifest["model"]
    if model["head"] == HEAD_REGRESSION:
        return 1
    return len(model.get("labels") or {})


def check_task_fits(manifest: Mapping[str, Any], task: GlueTask, artifact_dir: Path) -> None:
    """Refuse a bare encoder, and a task whose label count the head cannot produce."""
    head = manifest["model"]["head"]
    if head == HEAD_ENCODER:
        raise UsageError(
            f"{artifact_dir} is a bare encoder (sentence embeddings, no task head): verify "
            "scores a classifier or regression artifact on a GLUE task"
        )
    width = artifact_label_count(manifest)
    if width != task.num_labels:
        kind = "a regression score" if task.is_regression else f"{task.num_labels} labels"
        raise UsageError(
            f"{artifact_dir} has a {head} head with {width} output(s) but {task.name} needs "
            f"{kind}: verify it on a task it was fine-tuned for"
        )


def _labels(task: GlueTask, examples: Sequence[Example], split: str) -> np.ndarray:
    if any(example.label is None for example in examples):
        raise UsageError(
            f"the {split} split of {task.name} is unlabelled; verify needs labels (use dev)"
        )
    dtype = np.float64 if task.is_regression else np.int64
    return np.asarray([example.label for example in examples], dtype=dtype)


def load_reference(
    manifest: Mapping[str, Any], reference: str | None, allow_pickle: bool
) -> tuple[LoadedModel, list[str]]:
    """The fp32 PyTorch model to compare with: the artifact's recorded source unless told."""
    max_length = int(manifest["model"]["max_sequence_length"])
    source = manifest["source"]
    if reference is not None:
        loaded = load_model(reference, allow_pickle=allow_pickle, max_sequence_length=max_length)
        same = _weight_hashes(loaded) == _recorded_hashes(source)
        note = (
            "" if same else " (not the checkpoint the artifact was compiled from: weights differ)"
        )
        return loaded, [f"reference is {reference}{note}"]
    try:
        loaded = load_model(
            source["path"], allow_pickle=allow_pickle, max_sequence_length=max_length
        )
    except ModelNotFoundError as error:
        raise ModelNotFoundError(
            f"the artifact's source checkpoint {source['path']} is not there any more; "
            "pass --reference with the fp32 model to compare against"
        ) from error
    if _weight_hashes(loaded) != _recorded_hashes(source):
        raise ModelFileError(
            f"the source checkpoint {source['path']} has changed since the artifact was compiled "
            "(weight sha256 differs); pass --reference to compare against it on purpose"
        )
    return loaded, []


def _weight_hashes(loaded: LoadedModel) -> dict[str, str]:
    return {weight.name: weight.sha256 for weight in loaded.weight_files}


def _recorded_hashes(source: Mapping[str, Any]) -> dict[str, str]:
    return {weight["name"]: weight["sha256"] for weight in source.get("weights", [])}


def check_reference_fits(loaded: LoadedModel, task: GlueTask) -> None:
    width = 1 if loaded.head == HEAD_REGRESSION else len(loaded.label_map or {})
    if loaded.head == HEAD_ENCODER or width != task.num_labels:
        raise UsageError(
            f"reference {loaded.source} has a {loaded.head} head with {width} output(s); "
            f"{task.name} needs {task.num_labels}: pass the fp32 classifier the artifact came from"
        )


def _encode(
    tokenizer: Any,
    examples: Sequence[Example],
    max_length: int,
    names: Sequence[str],
    padding: bool = False,
) -> dict[str, np.ndarray]:
    """Token ids as the deployed model gets them; zero token types where a tokenizer has none."""
    pair = examples[0].text_b is not None
    encoded = tokenizer(
        [example.text_a for example in examples],
        [example.text_b for example in examples] if pair else None,
        truncation=True,
        max_length=max_length,
        padding=padding,
        return_tensors="np",
    )
    arrays = {name: np.asarray(encoded[name], dtype=np.int64) for name in encoded if name in names}
    if "token_type_ids" in names and "token_type_ids" not in arrays:
        arrays["token_type_ids"] = np.zeros_like(arrays["input_ids"])
    return arrays


def load_tokenizer(artifact_dir: Path, manifest: Mapping[str, Any]) -> Any:
    """The tokenizer packaged in the artifact: the one an app will use."""
    from transformers import AutoTokenizer

    directory = artifact_dir / manifest["model"]["tokenizer_dir"]
    try:
        return AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError, TypeError) as error:
        raise ArtifactError(
            f"cannot load the artifact's tokenizer from {directory}: {error}"
        ) from error


def takes_strings(manifest: Mapping[str, Any]) -> bool:
    """Whether the artifact carries its tokenizer (fused or separate) and so takes text."""
    from bertc.targets.loader import TEXT_MODES

    return (manifest.get("tokenizer") or {}).get("mode") in TEXT_MODES


def batch_padding(manifest: Mapping[str, Any]) -> str:
    """How a batch reaches the model, as the throughput figure should be read."""
    tokenizer = manifest.get("tokenizer") or {}
    if not takes_strings(manifest):
        return Latency.batch_padding
    if manifest["runtime"]["name"] == "onnxruntime":
        return "strings, one example per run (the in-graph tokenizer op takes one example)"
    return "strings; the in-graph tokenizer pads to the longest sentence of each batch" + (
        "" if tokenizer.get("mode") == "fused" else " (tokenizer model, then the model)"
    )


def _texts(examples: Sequence[Example]) -> dict[str, Any]:
    pair = examples[0].text_b is not None
    return {
        "texts": [example.text_a for example in examples],
        "text_pairs": [example.text_b for example in examples] if pair else None,
    }


class TextRunner:
    """`loader.TextModel` behind the Runner shape: `run({"texts", "text_pairs"})`."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.compiled = model.compiled
        self.session = model.session

    def run(self, inputs: Mapping[str, Any]) -> list[np.ndarray]:
        return [self.model.logits(inputs["texts"], inputs["text_pairs"])]


def load_runner(artifact_dir: Path, manifest: Mapping[str, Any], threads: int | None) -> Any:
    """The artifact loaded by its own target; a runtime's failure becomes one ArtifactError line."""
    from bertc.targets import get_target
    from bertc.targets.loader import load

    target = get_target(manifest["target"])
    try:
        if takes_strings(manifest):
            return TextRunner(load(artifact_dir, threads))
        return target.load(artifact_dir, manifest, threads)
    except BertcError:
        raise
    except Exception as error:  # runtimes raise their own types (RuntimeError, Fail, ...)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ArtifactError(
            f"{manifest['target']} could not load {artifact_dir}: {first}"
        ) from error


def run_both(
    artifact_dir: Path,
    manifest: Mapping[str, Any],
    loaded: LoadedModel,
    examples: Sequence[Example],
    batch_size: int,
    threads: int | None,
    progress: Progress,
) -> _Outputs:
    """Artifact first (timed, nothing else running), then its padded batches, then the reference."""
    max_length = int(manifest["model"]["max_sequence_length"])
    tokenizer = load_tokenizer(artifact_dir, manifest)
    names = tuple(manifest["model"]["inputs"])
    singles = [_encode(tokenizer, [example], max_length, names) for example in examples]
    takes_text = takes_strings(manifest)
    progress("artifact")
    runner = load_runner(artifact_dir, manifest, threads)
    precision, runtime_threads = runtime_settings(runner)
    # An artifact with its tokenizer inside gets the raw text, so its own tokenizer is scored.
    artifact_inputs = [_texts([example]) for example in examples] if takes_text else singles
    artifact_logits, seconds = _run_timed(runner, artifact_inputs)
    progress("throughput")
    batches = [
        _texts(examples[start : start + batch_size])
        if takes_text
        else _encode(
            tokenizer, examples[start : start + batch_size], max_length, names, padding=True
        )
        for start in range(0, len(examples), batch_size)
    ]
    batched_logits, rate = _throughput(runner, batches, len(examples))
    progress("reference")
    reference_logits = _run_reference(loaded, singles, threads)
    lengths = [single["input_ids"].shape[1] for single in singles]
    latency = Latency(
        batch1_median_ms=float(np.median(seconds) * 1e3),
        batch1_p90_ms=float(np.percentile(seconds, 90) * 1e3),
        median_tokens=float(np.median(lengths)),
        batch_size=batch_size,
        batch_sentences_per_s=rate,
        batch_padding=batch_padding(manifest),
    )
    padding_error = float(np.max(np.abs(batched_logits - artifact_logits)))
    return _Outputs(
        reference_logits, artifact_logits, latency, padding_error, precision, runtime_threads
    )


def _logits(outputs: Sequence[np.ndarray]) -> np.ndarray:
    scores = np.asarray(outputs[0], dtype=np.float64)
    return scores.reshape(scores.shape[0], -1)


def _run_timed(
    runner: Any, singles: Sequence[Mapping[str, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Each example alone; the first few runs again first, untimed, so warm-up is not measured."""
    for single in singles[:WARMUP_RUNS]:
        runner.run(single)
    logits, seconds = [], []
    for single in singles:
        start = time.perf_counter()
        outputs = runner.run(single)
        seconds.append(time.perf_counter() - start)
        logits.append(_logits(outputs))
    return np.concatenate(logits), np.asarray(seconds)


def _throughput(
    runner: Any, batches: Sequence[Mapping[str, np.ndarray]], count: int
) -> tuple[np.ndarray, float]:
    """Sentences per second over the whole split in padded batches, after one warm-up batch."""
    runner.run(batches[0])
    logits = []
    start = time.perf_counter()
    for batch in batches:
        logits.append(_logits(runner.run(batch)))
    elapsed = time.perf_counter() - start
    return np.concatenate(logits), count / elapsed


def _run_reference(
    loaded: LoadedModel, singles: Sequence[Mapping[str, np.ndarray]], threads: int | None
) -> np.ndarray:
    """fp32 PyTorch on the same token ids, one example at a time.

    Untimed, so one thread unless told: on a busy machine torch's default pool oversubscribes the
    cores and ran MiniLM-L6 at 2 threads ten times slower than at one (measured here).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    try:
        logits = []
        with torch.inference_mode():
            for single in singles:
                tensors = [torch.from_numpy(single[name]) for name in loaded.input_names]
                logits.append(loaded.module(*tensors).double().reshape(1, -1).numpy())
    finally:
        torch.set_num_threads(previous)
    return np.concatenate(logits)


# ---- statistics: pure functions of predictions, so tests can check them by hand ----------------


def paired_bootstrap(
    task: GlueTask,
    reference_predictions: np.ndarray,
    artifact_predictions: np.ndarray,
    labels: np.ndarray,
    samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile CI of (artifact - reference) in points for each metric of the task.

    Both models are scored on the same resample of example indices, so the CI reflects how the
    two differ on the same sentences rather than the noise of the dev set itself.
    """
    rng = np.random.default_rng(seed)
    count = len(labels)
    # Resamples are drawn a block at a time so memory stays flat on large dev sets (QQP: 40k).
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // count)
    deltas: dict[str, list[np.ndarray]] = {name: [] for name in task.metrics}
    for start in range(0, samples, block):
        indices = rng.integers(0, count, size=(min(block, samples - start), count))
        for name in task.metrics:
            deltas[name].append(
                _resampled_deltas(
                    name, reference_predictions, artifact_predictions, labels, indices
                )
            )
    tail = (1 - CONFIDENCE) / 2 * 100
    intervals = {}
    for name, parts in deltas.items():
        values = np.concatenate(parts)
        if np.all(np.isnan(values)):
            intervals[name] = (math.nan, math.nan)
            continue
        low, high = np.nanpercentile(values, [tail, 100 - tail])
        intervals[name] = (float(low) * 100, float(high) * 100)
    return intervals


def _resampled_deltas(
    name: str, reference: np.ndarray, artifact: np.ndarray, labels: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    if name == "accuracy":  # vectorised: the mean of per-example correctness over each resample
        artifact_correct = (artifact == labels)[indices].mean(axis=1)
        return artifact_correct - (reference == labels)[indices].mean(axis=1)
    metric = METRICS[name]
    return np.asarray(
        [
            metric(artifact[row], labels[row]) - metric(reference[row], labels[row])
            for row in indices
        ]
    )


def compare_metrics(
    task: GlueTask,
    reference_predictions: np.ndarray,
    artifact_predictions: np.ndarray,
    labels: np.ndarray,
    samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[MetricDelta, ...]:
    reference = compute_metrics(task, reference_predictions, labels)
    artifact = compute_metrics(task, artifact_predictions, labels)
    intervals = paired_bootstrap(
        task, reference_predictions, artifact_predictions, labels, samples, seed
    )
    return tuple(
        MetricDelta(
            name=name,
            reference=reference[name],
            artifact=artifact[name],
            delta_points=round((artifact[name] - reference[name]) * 100, 9),
            ci_low_points=intervals[name][0],
            ci_high_points=intervals[name][1],
        )
        for name in task.metrics
    )


def prediction_agreement(
    task: GlueTask, reference: np.ndarray, artifact: np.ndarray, lines: Sequence[int]
) -> Agreement:
    if task.is_regression:
        pearson = METRICS["pearson"](artifact, reference)
        return Agreement(rate=None, prediction_pearson=pearson, disagreements=None)
    differ = np.flatnonzero(reference != artifact)
    return Agreement(
        rate=float(1 - len(differ) / len(reference)),
        prediction_pearson=None,
        disagreements=int(len(differ)),
        disagreement_lines=tuple(int(lines[index]) for index in differ[:LISTED_DISAGREEMENTS]),
    )


def output_error(
    reference_logits: np.ndarray, artifact_logits: np.ndarray, batch_padding_max_abs: float
) -> OutputError:
    difference = np.abs(artifact_logits - reference_logits)
    return OutputError(
        max_abs=float(difference.max()),
        mean_abs=float(difference.mean()),
        rmse=float(np.sqrt(np.mean(difference**2))),
        batch_padding_max_abs=batch_padding_max_abs,
    )


def apply_gate(task: GlueTask, headline: MetricDelta, max_drop: float) -> GateResult:
    """Fail when the headline metric fell by more than `max_drop` points (or cannot be computed)."""
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


# ---- the report ----------------------------------------------------------------------------------


def report_paths(task: GlueTask) -> tuple[str, str]:
    """Where the Markdown and JSON reports go, relative to the artifact."""
    return f"{REPORTS_DIR}/verify-{task.name}.md", f"{REPORTS_DIR}/verify-{task.name}.json"


def build_report(
    artifact_dir: Path,
    manifest: Mapping[str, Any],
    task: GlueTask,
    split: str,
    examples: Sequence[Example],
    labels: np.ndarray,
    outputs: _Outputs,
    loaded: LoadedModel,
    *,
    max_drop: float,
    threads: int | None,
    bootstrap_samples: int,
    seed: int,
    notes: Sequence[str] = (),
) -> VerifyReport:
    reference_predictions = predictions_from_logits(task, outputs.reference_logits)
    artifact_predictions = predictions_from_logits(task, outputs.artifact_logits)
    metrics = compare_metrics(
        task, reference_predictions, artifact_predictions, labels, bootstrap_samples, seed
    )
    headline = next(metric for metric in metrics if metric.name == task.headline_metric)
    model_files = _model_files(manifest)
    environment = run_environment(manifest, threads, outputs.precision, outputs.runtime_threads)
    return VerifyReport(
        artifact_dir=artifact_dir,
        task=task.name,
        split=split,
        examples=len(examples),
        reference=f"fp32 PyTorch: {loaded.source}",
        artifact_labels=manifest["model"].get("labels"),
        headline_metric=task.headline_metric,
        metrics=metrics,
        agreement=prediction_agreement(
            task,
            reference_predictions,
            artifact_predictions,
            [example.line for example in examples],
        ),
        output_error=output_error(
            outputs.reference_logits, outputs.artifact_logits, outputs.batch_padding_max_abs
        ),
        latency=outputs.latency,
        model_bytes=sum(int(manifest["files"][name]["bytes"]) for name in model_files),
        model_files=model_files,
        environment=environment,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        gate=apply_gate(task, headline, max_drop),
        report_files=report_paths(task),
        notes=tuple(notes) + tuple(_environment_notes(manifest, task, environment)),
    )


def _model_files(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The files the runtime loads, as the manifest's runtime section names them."""
    runtime = manifest["runtime"]
    return tuple(runtime[key] for key in ("model", "weights") if runtime.get(key))


def run_environment(
    manifest: Mapping[str, Any],
    threads: int | None,
    precision: str | None,
    runtime_threads: int | None,
) -> RunEnvironment:
    import torch

    runtime = manifest["runtime"]
    return RunEnvironment(
        target=manifest["target"],
        runtime=runtime["name"],
        runtime_version=str(runtime["version"]),
        precision=precision,
        threads_requested=threads,
        runtime_threads=runtime_threads,
        build_host=manifest.get("host", {}),
        verify_host=host_description(),
        torch_version=torch.__version__,
        bertc_version=toolchain_versions()["bertc"],
    )


def runtime_settings(runner: Any) -> tuple[str | None, int | None]:
    """Precision and thread count as the loaded runtime reports them, where it can."""
    compiled = getattr(runner, "compiled", None)  # OpenVINO
    if compiled is not None:
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        return getattr(precision, "get_type_name", lambda: str(precision))(), int(
            compiled.get_property("INFERENCE_NUM_THREADS")
        )
    session = getattr(runner, "session", None)  # ONNX Runtime runs the graph's own types
    if session is not None:
        intra = session.get_session_options().intra_op_num_threads
        return "as stored in the graph (ONNX Runtime's CPU provider does not down-cast)", (
            intra or None
        )
    return None, None


def _environment_notes(
    manifest: Mapping[str, Any], task: GlueTask, environment: RunEnvironment
) -> list[str]:
    """Facts that change how to read the numbers: another task, label order, a different CPU."""
    notes = []
    built_for = _compiled_task(manifest)
    if built_for and built_for != task.name:
        notes.append(f"the artifact was compiled for {built_for} but is verified on {task.name}")
    labels = manifest["model"].get("labels") or {}
    names = [str(labels[key]).lower() for key in sorted(labels, key=int)]
    if task.labels and sorted(names) == sorted(task.labels) and names != list(task.labels):
        notes.append(
            f"the artifact's labels are in the order {names} but {task.name}'s are "
            f"{list(task.labels)}: verify compares label ids, so the metric may be meaningless"
        )
    build_isa = set(environment.build_host.get("isa", []))
    lacking = sorted(build_isa - set(environment.verify_host.get("isa", [])))
    if lacking:
        notes.append(
            f"this machine lacks {', '.join(lacking)} that the build machine had: INT8 speed, "
            "and for some recipes accuracy, can differ between the two"
        )
    return notes


def _compiled_task(manifest: Mapping[str, Any]) -> str | None:
    """The GLUE task the artifact was calibrated or fine-tuned for, where it names one."""
    name = (manifest.get("calibration") or {}).get("task") or manifest["model"]["config"].get(
        "finetuning_task"
    )
    try:
        return get_task(name).name if name else None
    except UsageError:  # a fine-tuning task outside GLUE
        return None


def write_reports(artifact_dir: Path, report: VerifyReport) -> tuple[Path, ...]:
    """Markdown and JSON in the artifact's reports folder, each written then renamed into place."""
    import json

    from bertc.compiler.verify.render import render_markdown, report_to_json

    markdown_name, json_name = report.report_files
    contents = {
        markdown_name: render_markdown(report),
        json_name: json.dumps(
            report_to_json(report), indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False
        )
        + "\n",
    }
    written = []
    try:
        (artifact_dir / REPORTS_DIR).mkdir(exist_ok=True)
        for name, text in contents.items():
            written.append(write_text_atomically(artifact_dir / name, text))
    except OSError as error:
        raise ArtifactError(
            f"cannot write the verify reports into {artifact_dir / REPORTS_DIR}: {error}"
        ) from error
    return tuple(written)
