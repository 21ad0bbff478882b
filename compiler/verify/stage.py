"""`verify_artifact`, the verify stage: preconditions, both runs, the report, then the gate."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from bertc.calibration import get_task, load_examples, single_sentences
from bertc.calibration.tasks import recorded_task
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.manifest import check_integrity, read_manifest
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.heads import task_columns
from bertc.compiler.verify.checks import (
    check_reference_fits,
    check_settings,
    check_task_fits,
    is_encoder,
    task_labels,
)
from bertc.compiler.verify.gate import DEFAULT_MAX_DROP, raise_if_gate_failed
from bertc.compiler.verify.measure import DEFAULT_BATCH_SIZE, MeasuredOutputs, run_both
from bertc.compiler.verify.model import VerifyReport
from bertc.compiler.verify.platform import PlatformOptions, check_platform, check_runtime
from bertc.compiler.verify.platform import prepare as prepare_platform
from bertc.compiler.verify.reference import load_reference, reference_thread_count
from bertc.compiler.verify.report import build_report, save_reports
from bertc.compiler.verify.statistics import DEFAULT_BOOTSTRAP_SAMPLES

if TYPE_CHECKING:
    from bertc.calibration import GlueTask

# What each `progress(stage)` call means, for a status line.
STAGE_LABELS = {
    "integrity": "checking the artifact against its manifest",
    "data": "reading the task's examples",
    "load": "loading the fp32 reference",
    "artifact": "running the artifact at batch 1",
    "throughput": "measuring batched throughput",
    "reference": "running the fp32 reference",
    "platform": "emulated platform: the artifact on its runtime's aarch64 build (--platform)",
    "metrics": "scoring, paired bootstrap",
    "report": "writing reports",
}


def verify_artifact(
    artifact_dir: Path,
    task: str | None = None,
    *,
    data_dir: Path | None,
    max_drop: float = DEFAULT_MAX_DROP,
    reference: str | None = None,
    split: str = "dev",
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None,
    reference_threads: int | None = None,
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = 0,
    allow_pickle: bool = False,
    raise_on_gate_failure: bool = True,
    write_reports: bool = True,
    progress: Progress = silent,
    platform: PlatformOptions | None = None,
) -> VerifyReport:
    """Score the artifact against its fp32 reference, write the reports, then apply the gate.

    `threads` is the artifact runtime's thread count (None: the runtime's own); the untimed
    PyTorch reference runs at `reference_threads` (None: one thread) whatever `threads` says.
    `max_drop` is in points of the task's headline metric. `task` None: the task the artifact
    was built for (its manifest's `task`); UsageError when it records none.

    A sentence encoder is scored on stsb only: Spearman of the cosine similarity of each pair's
    embeddings against the gold scores (see `report.build_report`), gated on its drop.

    Raises ArtifactError for a tampered or incomplete artifact (before anything runs), UsageError
    for bad settings, an encoder artifact on a task other than stsb, or a task whose label count
    differs from the head's,
    the DataError family for missing or malformed data, and GateFailedError (after the reports
    are written) when the headline metric dropped by more than `max_drop` points, unless told not
    to. Reports the file system refuses (a read-only artifact) leave the result standing, with
    `reports_not_saved` saying why; `write_reports=False` writes none (`compile --verify` writes
    them once the artifact is in place).

    `platform` (`--platform arm64`): a seeded sample also runs on emulated ARM64 cores and is
    compared with this machine's run (`verify.platform.check_platform`); the report holds it
    and the gate fails on it too. PlatformError (19) when the emulation cannot run.
    """
    artifact_dir = Path(artifact_dir)
    glue_task = get_task(task) if task is not None else None
    check_settings(max_drop, batch_size, threads, bootstrap_samples, reference_threads)
    if platform is not None:
        prepare_platform(progress)
    progress("integrity")
    manifest = read_manifest(artifact_dir)
    check_integrity(artifact_dir, manifest)
    if glue_task is None:
        glue_task = get_task(recorded_task(manifest) or _no_task(artifact_dir))
    check_task_fits(manifest, glue_task, artifact_dir)
    if platform is not None:
        check_runtime(manifest)
    encoder = is_encoder(manifest)
    artifact_columns = (
        None
        if encoder
        else task_columns(manifest["model"].get("labels"), glue_task, str(artifact_dir))
    )
    progress("data")
    examples = load_examples(glue_task, split, data_dir)
    labels = task_labels(glue_task, examples, split)
    progress("load")
    loaded, notes = load_reference(manifest, reference, allow_pickle)
    check_reference_fits(loaded, glue_task, manifest)
    reference_columns = (
        None if encoder else task_columns(loaded.label_map, glue_task, f"reference {loaded.source}")
    )
    # A sentence encoder embeds each sentence of a pair alone (a0, b0, a1, b1, ...).
    scored = single_sentences(examples) if encoder else examples
    outputs = run_both(
        artifact_dir, manifest, loaded, scored, batch_size, threads, progress, reference_threads
    )
    if artifact_columns is not None and reference_columns is not None:
        outputs = in_task_order(outputs, artifact_columns, reference_columns)
        notes = [*notes, *label_order_notes(glue_task, artifact_columns, reference_columns)]
    platform_check = None
    if platform is not None:
        progress("platform")
        platform_check = check_platform(
            artifact_dir,
            manifest,
            glue_task,
            scored,
            outputs.reference_logits,
            None if artifact_columns is None else list(artifact_columns),
            platform,
            threads,
            progress,
        )
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
        reference_threads=reference_thread_count(reference_threads),
    )
    report = dataclasses.replace(report, platform=platform_check)
    if write_reports:
        progress("report")
        report = save_reports(artifact_dir, report)
    if raise_on_gate_failure:
        raise_if_gate_failed(report)
    return report


def in_task_order(
    outputs: MeasuredOutputs, artifact_columns: list[int], reference_columns: list[int]
) -> MeasuredOutputs:
    """Both models' logits with their columns in the task's label order (`task_columns`)."""
    return dataclasses.replace(
        outputs,
        artifact_logits=outputs.artifact_logits[:, artifact_columns],
        reference_logits=outputs.reference_logits[:, reference_columns],
    )


def label_order_notes(
    task: GlueTask, artifact_columns: list[int], reference_columns: list[int]
) -> list[str]:
    """A note for each model whose outputs were reordered to the task's labels by name."""
    identity = list(range(len(artifact_columns)))
    return [
        f"the {who}'s labels were matched to {task.name}'s by name: its outputs {columns} "
        f"are scored as {task.name}'s labels {identity}"
        for who, columns in (("artifact", artifact_columns), ("reference", reference_columns))
        if columns != identity
    ]


def _no_task(artifact_dir: Path) -> str:
    raise UsageError(
        f"{artifact_dir} records no task: pass the GLUE task to score on (e.g. --task sst2)"
    )
