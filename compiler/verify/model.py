"""What `verify_artifact` returns: frozen records of every figure it measured.

Plain data only (no numpy, no torch), so a test or a renderer can build and read a report by hand.
Metric values are on a 0-1 scale; deltas and CI bounds are in points (x100).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    """How alike the two models predict: the rate for classes, Pearson's r for regression scores
    (for a sentence encoder: of the pairs' cosine similarities, and how close each sentence's
    embedding stays to fp32's as the cosine between the two)."""

    rate: float | None
    prediction_pearson: float | None
    disagreements: int | None
    disagreement_lines: tuple[int, ...] = ()
    embedding_cosine_mean: float | None = None
    embedding_cosine_min: float | None = None
    embedded_sentences: int | None = None


@dataclass(frozen=True)
class OutputError:
    """Artifact logits minus reference logits over every example and output (for a sentence
    encoder: its sentence embeddings, over every sentence and dimension)."""

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
    # PyTorch threads of the untimed fp32 reference run (independent of the runtime's threads).
    reference_threads: int = 1


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on the headline metric: its drop in points against `max_drop`."""

    metric: str
    max_drop: float
    delta_points: float
    passed: bool
    message: str


# `PlatformRow.core` of this machine's own rows (the x86 run the emulated cores are compared with).
HOST_CORE = "host"


@dataclass(frozen=True)
class PlatformRow:
    """One way of running the artifact on one machine, against the x86 run of the same way on
    the same sampled examples and against fp32 PyTorch. Agreement: the share predicting the
    same class (None for regression scores and embeddings); errors over every example and output.
    `seconds`: the way's wall time (load included), a note only: emulated time is no latency.
    A way whose runtime failed there has `error` and no figures, and fails the gate."""

    platform: str
    core: str
    way: str
    examples: int
    agreement_x86: float | None
    max_abs_x86: float | None
    mean_abs_x86: float | None
    agreement_fp32: float | None
    max_abs_fp32: float | None
    seconds: float
    passed: bool
    # The runtime failed on this machine (it could not compile or run the artifact): why.
    error: str | None = None


@dataclass(frozen=True)
class PlatformCheck:
    """`verify --platform`: each emulated core's rows (and the x86 rows they are compared with),
    the sample they ran on, and the gate on the emulated rows against x86."""

    platform: str
    cores: tuple[str, ...]
    examples: int
    split_examples: int
    sample_seed: int
    max_error: float
    min_agreement: float
    rows: tuple[PlatformRow, ...]
    passed: bool
    message: str
    emulator: str
    runtime_versions: Mapping[str, str]
    notes: tuple[str, ...] = ()


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
    # The model output both runs compared: "logits", or a sentence encoder's "sentence_embedding".
    compared_output: str = "logits"
    # Why the report files could not be written (a read-only or full disk); None once written.
    reports_not_saved: str | None = None
    # `--platform`: the artifact on emulated cores against its x86 run (None: not asked for).
    platform: PlatformCheck | None = None

    @property
    def headline(self) -> MetricDelta:
        """The metric the gate judges (the task's headline metric)."""
        return next(metric for metric in self.metrics if metric.name == self.headline_metric)
