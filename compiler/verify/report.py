"""Assembling the `VerifyReport` from what was measured, and writing it into the artifact.

The reports go to the artifact's reports folder (outside the integrity check) as Markdown and
JSON, each written to a temporary sibling and renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bertc.calibration import GlueTask
from bertc.calibration.metrics import predictions_from_logits
from bertc.calibration.tasks import recorded_task
from bertc.compiler.core.errors import OutputWriteError
from bertc.compiler.core.files import write_text_atomically
from bertc.compiler.core.manifest import REPORTS_DIR, host_description, toolchain_versions
from bertc.compiler.verify.checks import ENCODER_HEADLINE_METRIC, is_encoder
from bertc.compiler.verify.gate import apply_gate
from bertc.compiler.verify.model import RunEnvironment, VerifyReport
from bertc.compiler.verify.reference import DEFAULT_REFERENCE_THREADS, SENTENCE_EMBEDDING
from bertc.compiler.verify.render import render_markdown, report_to_json
from bertc.compiler.verify.statistics import (
    compare_metrics,
    embedding_agreement,
    output_error,
    pair_cosines,
    prediction_agreement,
)

if TYPE_CHECKING:
    from bertc.calibration import Example
    from bertc.compiler.loading import LoadedModel
    from bertc.compiler.verify.measure import MeasuredOutputs


ENCODER_NOTE = (
    "a sentence encoder: each sentence is embedded alone; a pair's score is the cosine "
    "similarity of its two embeddings, and Spearman's rank correlation with the gold scores "
    "is the headline (Pearson's r is shown too)"
)


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
    outputs: MeasuredOutputs,
    loaded: LoadedModel,
    *,
    max_drop: float,
    threads: int | None,
    bootstrap_samples: int,
    seed: int,
    notes: Sequence[str] = (),
    reference_threads: int = DEFAULT_REFERENCE_THREADS,
) -> VerifyReport:
    """Score both models' logits against `labels` (shape (examples,)), compare, and judge.

    For a sentence encoder the outputs are its embeddings of each example's two sentences
    (a0, b0, a1, b1, ...): a pair's prediction is their cosine similarity, the headline metric
    Spearman's rank correlation, and agreement the cosine between the two models' embeddings.
    `reference_threads` is the torch thread count the reference actually ran with.
    """
    encoder = is_encoder(manifest)
    if encoder:
        reference_predictions = pair_cosines(outputs.reference_logits)
        artifact_predictions = pair_cosines(outputs.artifact_logits)
        headline_metric = ENCODER_HEADLINE_METRIC
        agreement = embedding_agreement(
            outputs.reference_logits,
            outputs.artifact_logits,
            reference_predictions,
            artifact_predictions,
        )
    else:
        reference_predictions = predictions_from_logits(task, outputs.reference_logits)
        artifact_predictions = predictions_from_logits(task, outputs.artifact_logits)
        headline_metric = task.headline_metric
        agreement = prediction_agreement(
            task,
            reference_predictions,
            artifact_predictions,
            [example.line for example in examples],
        )
    metrics = compare_metrics(
        task, reference_predictions, artifact_predictions, labels, bootstrap_samples, seed
    )
    headline = next(metric for metric in metrics if metric.name == headline_metric)
    model_files = _model_files(manifest)
    environment = run_environment(
        manifest,
        threads,
        outputs.precision,
        outputs.runtime_threads,
        reference_threads=reference_threads,
    )
    return VerifyReport(
        artifact_dir=artifact_dir,
        task=task.name,
        split=split,
        examples=len(examples),
        reference=f"fp32 PyTorch: {loaded.source}",
        artifact_labels=manifest["model"].get("labels"),
        headline_metric=headline_metric,
        metrics=metrics,
        agreement=agreement,
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
        notes=tuple(notes)
        + ((ENCODER_NOTE,) if encoder else ())
        + tuple(environment_notes(manifest, task, environment)),
        compared_output=SENTENCE_EMBEDDING if encoder else "logits",
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
    *,
    reference_threads: int = DEFAULT_REFERENCE_THREADS,
) -> RunEnvironment:
    """The build machine (from the manifest), this machine, the runtime and its settings."""
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
        reference_threads=reference_threads,
    )


def environment_notes(
    manifest: Mapping[str, Any], task: GlueTask, environment: RunEnvironment
) -> list[str]:
    """Facts that change how to read the numbers: another task, label order, a different CPU."""
    notes = []
    built_for = recorded_task(manifest)
    if built_for and built_for != task.name:
        notes.append(f"the artifact was compiled for {built_for} but is verified on {task.name}")
    build_isa = set(environment.build_host.get("isa", []))
    lacking = sorted(build_isa - set(environment.verify_host.get("isa", [])))
    if lacking:
        notes.append(
            f"this machine lacks {', '.join(lacking)} that the build machine had: INT8 speed, "
            "and for some recipes accuracy, can differ between the two"
        )
    return notes


def save_reports(artifact_dir: Path, report: VerifyReport) -> VerifyReport:
    """`write_reports`; where the file system refuses (read-only artifact, full disk), the report
    with `reports_not_saved` saying why: the measured result stands without its files."""
    try:
        write_reports(artifact_dir, report)
    except OutputWriteError as error:
        return dataclasses.replace(report, reports_not_saved=str(error))
    return report


def write_reports(artifact_dir: Path, report: VerifyReport) -> tuple[Path, ...]:
    """Markdown and JSON in the artifact's reports folder, each written then renamed into place.

    Returns the written paths; raises OutputWriteError (exit 17) when they cannot be written.
    """
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
        raise OutputWriteError(
            f"cannot write the verify reports into {artifact_dir / REPORTS_DIR}: {error}"
        ) from error
    return tuple(written)
