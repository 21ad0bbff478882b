"""The artifact commands: compile, verify, run, inspect, pack, unpack.

Each parses its flags (`options`), calls one pipeline function and prints the result; the
pipeline is imported inside the command, after the arguments are checked, as it pulls in torch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from bertc.compiler.cli import output
from bertc.compiler.cli.options import (
    DEFAULT_CALIBRATION_SAMPLES,
    AllowPickle,
    ArtifactDir,
    ArtifactOut,
    AsJson,
    BudgetMaxDrop,
    CalibrationSamples,
    Checkpoint,
    CompileTask,
    DataDir,
    KeepBest,
    MaxDrop,
    MaxSeqLengthAlias,
    MaxSequenceLength,
    MinAgreement,
    Overwrite,
    Quantization,
    QuantizationRecipe,
    ReferenceThreads,
    RuntimeThreads,
    Seed,
    Target,
    Tokenizer,
    VerifyTask,
    at_least_one,
    resolve_alias,
)
from bertc.compiler.cli.platforms import (
    PlatformLimit,
    PlatformMaxError,
    PlatformMinAgreement,
    PlatformSpec,
    platform_spec,
)
from bertc.compiler.cli.signing import PublicKey, SignKey, check_signature
from bertc.compiler.core.enums import Recipe
from bertc.compiler.core.errors import GateFailedError, UsageError
from bertc.compiler.core.files import ARTIFACT, check_output
from bertc.compiler.core.manifest import read_manifest
from bertc.compiler.core.progress import Progress

TOKEN_IDS_NOTE = "token ids in"
# verify --platform's defaults (bertc.compiler.verify.platform's, which imports numpy: held
# equal by a test).
DEFAULT_PLATFORM_LIMIT = 50
DEFAULT_PLATFORM_MAX_ERROR = 0.05
DEFAULT_PLATFORM_MIN_AGREEMENT = 0.995
# The --verify gate of `compile --max-drop none` (no budget): verify's own default.
DEFAULT_GATE_DROP = 0.5


def compile_command(
    model: Checkpoint,
    target: Target,
    out: ArtifactOut,
    task: CompileTask = None,
    data_dir: DataDir = None,
    quantization: Quantization = None,
    recipe: QuantizationRecipe = Recipe.BERT_SAFE,
    calibration_samples: CalibrationSamples = DEFAULT_CALIBRATION_SAMPLES,
    max_sequence_length: MaxSequenceLength = None,
    max_seq_length: MaxSeqLengthAlias = None,
    allow_pickle: AllowPickle = False,
    tokenizer: Tokenizer = None,
    allow_tokenizer_mismatch: Annotated[
        bool,
        typer.Option(
            help="Build even if the in-graph tokenizer's ids differ from HF's.", show_default=False
        ),
    ] = False,
    overwrite: Overwrite = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Verify the staged artifact on the task's dev set; gate the build."
        ),
    ] = False,
    max_drop: BudgetMaxDrop = "0.5",
    min_agreement: MinAgreement = None,
    keep_best: KeepBest = False,
    as_json: AsJson = False,
    sign_key: SignKey = None,
) -> None:
    """Checkpoint → ONNX (parity-gated) → INT8 → an artifact directory for the target runtime.

    With --verify the staged artifact is scored on the task's dev set as `bertc verify` does,
    before it replaces anything: when the gate fails the build fails (exit 12) and --out, with
    any artifact already there, is left as it was. --sign-key signs the staged artifact
    (model.sig) before it is moved into place. --json prints the manifest, or with --verify
    the verify report.
    """
    max_sequence_length = resolve_alias(
        max_sequence_length,
        max_seq_length,
        None,
        "--max-sequence-length",
        "--max-seq-length",
    )
    inputs = [model] if data_dir is None else [model, data_dir]
    check_output(out, overwrite, ARTIFACT, inputs)  # compile_model again, after torch loads
    from bertc.compiler.pipeline import CompileOptions, compile_model, compile_task

    options = CompileOptions(
        target=target,
        task=task,
        data_dir=data_dir,
        quantization=quantization,
        recipe=recipe,
        calibration_samples=calibration_samples,
        max_sequence_length=max_sequence_length,
        allow_pickle=allow_pickle,
        overwrite=overwrite,
        tokenizer=tokenizer,
        allow_tokenizer_mismatch=allow_tokenizer_mismatch,
        sign_key=sign_key,
        max_drop=max_drop,
        min_agreement=min_agreement,
        keep_best=keep_best,
    )
    if verify and compile_task(model, options) is None:
        raise UsageError(
            "--verify needs a GLUE task to score on: pass --task, or compile a checkpoint "
            "whose config names its finetuning_task"
        )
    gate = None
    try:
        with output.progress("compiling", output.compile_stages(quantization)) as progress:
            gate_drop = DEFAULT_GATE_DROP if max_drop is None else max_drop
            gate = VerifyGate(out, data_dir, gate_drop, progress) if verify else None
            result = compile_model(model, out, options, progress=progress, gate=gate)
    except GateFailedError as error:
        if gate is not None and gate.report is not None:  # its files went with the staging
            print_verify_report(gate.report, as_json, saved=False)
        kept = "the artifact already there is kept" if out.exists() else "nothing was written"
        raise GateFailedError(f"{error}; {out} not replaced: {kept}") from error
    manifest = read_manifest(result.artifact_dir)
    for text in manifest.get("notes", []):
        if text.startswith(TOKEN_IDS_NOTE):
            output.note(text)
    search = manifest.get("search") or {}
    if search and not search.get("met", True):  # --keep-best: said even with --json
        output.warning(
            f"no candidate met the accuracy budget; {search.get('chosen')} was written anyway "
            "(--keep-best; the manifest's search.met is false)"
        )
    if not as_json:
        print_compile_summary(result.artifact_dir, manifest)
    if gate is not None and gate.report is not None:
        from bertc.compiler.verify import save_reports

        print_verify_report(save_reports(result.artifact_dir, gate.report), as_json)
    elif as_json:
        output.print_json(manifest)


class VerifyGate:
    """`compile --verify`: run verify on the staged artifact, keep its report (naming `out`,
    where the artifact goes if it passes; no files yet), raise on a fail."""

    def __init__(self, out: Path, data_dir: Path | None, max_drop: float, progress: Progress):
        self.out = out
        self.data_dir = data_dir
        self.max_drop = max_drop
        self.progress = progress
        self.report: Any = None

    def __call__(self, staged: Path, manifest: Mapping[str, Any]) -> None:
        from bertc.compiler.verify import STAGE_LABELS, raise_if_gate_failed, verify_artifact

        report = verify_artifact(
            staged,
            manifest["task"],
            data_dir=self.data_dir,
            max_drop=self.max_drop,
            raise_on_gate_failure=False,
            write_reports=False,
            progress=lambda stage: self.progress(f"verify: {STAGE_LABELS.get(stage, stage)}"),
        )
        self.report = dataclasses.replace(report, artifact_dir=self.out)
        raise_if_gate_failed(self.report)


def print_compile_summary(artifact_dir: Path, manifest: Mapping[str, Any]) -> None:
    stdout = output.stdout
    size = manifest["size"]
    quantization = manifest.get("quantization") or {}
    parity = manifest["parity"]
    stdout.print(
        f"[green]compiled[/green] {manifest['source']['id']} → {artifact_dir} "
        f"({manifest['target']})"
    )
    stdout.print(
        f"  model bytes {size['model_bytes']:,} = {size['ratio_to_fp32_onnx']:.1%} of fp32 ONNX "
        f"({size['fp32_onnx_bytes']:,})"
    )
    stdout.print(
        f"  parity max |Δ| {parity['max_abs_diff']:.2e} (tolerance {parity['tolerance']:g})"
    )
    if quantization:
        int8 = ", ".join(f"{op}×{count}" for op, count in quantization["int8_ops"].items())
        stdout.print(f"  INT8 ({quantization['mode']}, {quantization['tool']}): {int8}")
    search = manifest.get("search")
    if search:
        chosen = next(c for c in search["candidates"] if c["name"] == search["chosen"])
        figures = chosen["figures"]
        verdict = "within" if search["met"] else "NOT within (--keep-best)"

        def shown(value: Any, unit: str = "") -> str:  # null in the manifest: undefined
            return "undefined" if value is None else f"{value:g}{unit}"

        stdout.print(
            f"  budget: {search['chosen']}, {verdict} the budget, {len(search['candidates'])} "
            f"candidate(s) tried; on {figures['examples']} held-out train examples agreement "
            f"{shown(figures['agreement'])}, {figures['metric']} drop "
            f"{shown(figures['headline_drop_points'], ' pt')}, "
            f"{shown(chosen['latency_ms'], ' ms')} at batch 1",
            highlight=False,
        )
    tokenizer = manifest.get("tokenizer") or {}
    tokenizer_parity = tokenizer.get("parity")
    if tokenizer_parity:
        checked, mismatched = tokenizer_parity["checked"], tokenizer_parity["mismatched"]
        stdout.print(
            f"  tokenizer {tokenizer['mode']} ({tokenizer['library']}): ids equal HF on "
            f"{checked - mismatched}/{checked} sentences"
        )
        for item in tokenizer_parity["mismatches"]:
            stdout.print(f"    mismatch: {item['summary']}", highlight=False)
    for text in manifest.get("notes", []):
        if not text.startswith(TOKEN_IDS_NOTE):  # already on stderr, once
            stdout.print(f"  note: {text}", highlight=False)


def print_verify_report(report: Any, as_json: bool, saved: bool = True) -> None:
    """The report as a table (with where its files are, when written) or as JSON; a warning on
    stderr when the file system refused the report files."""
    from bertc.compiler.verify.render import render_table, report_to_json

    if report.reports_not_saved:
        output.warning(f"the reports were not saved: {report.reports_not_saved}")
    if as_json:
        output.print_json(report_to_json(report))
        return
    output.stdout.print(render_table(report))
    if saved and not report.reports_not_saved:
        files = ", ".join(str(report.artifact_dir / name) for name in report.report_files)
        output.stdout.print(f"reports: {files}")


def verify_command(
    artifact: ArtifactDir,
    task: VerifyTask = None,
    data_dir: DataDir = None,
    max_drop: MaxDrop = 0.5,
    reference: Annotated[
        str | None, typer.Option(help="fp32 checkpoint to compare with (default: the source).")
    ] = None,
    split: Annotated[str, typer.Option(help="Labelled split to score.")] = "dev",
    batch_size: Annotated[
        int, typer.Option(help="Batch size of the throughput figure.", callback=at_least_one)
    ] = 32,
    threads: RuntimeThreads = None,
    reference_threads: ReferenceThreads = None,
    bootstrap_samples: Annotated[
        int, typer.Option(help="Paired-bootstrap resamples.", callback=at_least_one)
    ] = 1000,
    seed: Seed = 0,
    allow_pickle: Annotated[
        bool,
        typer.Option(help="Load a pickle (.bin) reference; it can run code.", show_default=False),
    ] = False,
    as_json: AsJson = False,
    public_key: PublicKey = None,
    platform: PlatformSpec = None,
    limit: PlatformLimit = str(DEFAULT_PLATFORM_LIMIT),
    platform_max_error: PlatformMaxError = DEFAULT_PLATFORM_MAX_ERROR,
    platform_min_agreement: PlatformMinAgreement = DEFAULT_PLATFORM_MIN_AGREEMENT,
) -> None:
    """Score an artifact against its fp32 model on a GLUE dev set; fail if it lost too much.

    A sentence encoder is scored on stsb: Spearman of the cosine similarity of each pair's
    embeddings against the gold scores. --json prints the report. With --public-key the
    artifact's signature is checked first (exit 16 when unsigned, wrongly signed or edited).
    --platform arm64 also runs a seeded sample (--limit) on emulated ARM64 cores and gates on
    their logits' distance from this machine's (exit 12; exit 19 when emulation cannot run).
    """
    cores = platform_spec(platform)
    platform_flags = (limit, platform_max_error, platform_min_agreement)
    defaults = (DEFAULT_PLATFORM_LIMIT, DEFAULT_PLATFORM_MAX_ERROR, DEFAULT_PLATFORM_MIN_AGREEMENT)
    if cores is None and platform_flags != defaults:
        raise UsageError(
            "--limit, --platform-max-error and --platform-min-agreement apply to --platform: "
            "pass --platform arm64 (or arm64:CORE)"
        )
    check_signature(artifact, public_key)
    task = task or task_of(artifact)
    from bertc.compiler.verify import STAGE_LABELS, raise_if_gate_failed, verify_artifact
    from bertc.compiler.verify.platform import PlatformOptions

    # Only when given: verify_artifact takes reference_threads from the version that has it.
    extra: dict[str, Any] = (
        {} if reference_threads is None else {"reference_threads": reference_threads}
    )
    if cores is not None:
        extra["platform"] = PlatformOptions(
            cores=cores,
            limit=limit,  # type: ignore[arg-type]  (the callback made it an int or None)
            seed=seed,
            max_error=platform_max_error,
            min_agreement=platform_min_agreement,
        )

    with output.progress("verifying", STAGE_LABELS) as progress:
        report = verify_artifact(
            artifact,
            task,
            data_dir=data_dir,
            max_drop=max_drop,
            reference=reference,
            split=split,
            batch_size=batch_size,
            threads=threads,
            bootstrap_samples=bootstrap_samples,
            seed=seed,
            allow_pickle=allow_pickle,
            raise_on_gate_failure=False,
            progress=progress,
            **extra,
        )
    print_verify_report(report, as_json)
    raise_if_gate_failed(report)


def task_of(artifact: Path) -> str:
    """The GLUE task the artifact's manifest records, for a `verify` without --task (the rule
    `verify_artifact` applies, read here before anything heavy is imported)."""
    from bertc.calibration.tasks import recorded_task

    task = recorded_task(read_manifest(artifact))
    if not task:
        raise UsageError(
            f"{artifact}'s manifest records no GLUE task to score on; pass --task "
            "(e.g. --task stsb for a sentence encoder)"
        )
    return str(task)


def run_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact compiled with its tokenizer inside.")],
    text: Annotated[str | None, typer.Argument(help="The text to label (or embed).")] = None,
    text_pair: Annotated[
        str | None,
        typer.Argument(help="Second text: a sentence-pair artifact's, or for an encoder's cosine."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="One example per line (split at \\n only; an empty line is refused); a pair "
            "as two texts separated by a tab. Output line N answers input line N."
        ),
    ] = None,
    threads: RuntimeThreads = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per example.")] = False,
    public_key: PublicKey = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Recompute the artifact's golden outputs here and compare them with the build "
            "machine's (exit 12 when not reproduced); takes no TEXT.",
        ),
    ] = False,
) -> None:
    """Label text with the artifact on its runtime alone (no torch, no transformers).

    A sentence encoder prints each text's embedding (dimension, norm, first values; --json: all
    of them), or with two texts (a tab-separated pair per --file line) their cosine similarity.
    --check runs the golden inputs recorded at compile time instead and reports whether this
    runtime on this CPU reproduces the build machine's outputs (exit 12 when not, 11 when the
    artifact has no golden outputs or was edited).
    """
    from bertc.compiler.running import argument_inputs, run_artifact, run_file

    check_signature(artifact, public_key)
    if check:
        check_command(artifact, text, file, threads, as_json)
        return
    if file is not None and text is not None:
        raise UsageError("give either TEXT or --file, not both")
    if file is not None:
        lines = run_file(artifact, file, threads, as_json)
    else:
        lines = run_artifact(artifact, argument_inputs(text, text_pair), threads, as_json)
    for line in lines:
        print(line)


def check_command(
    artifact: Path, text: str | None, file: Path | None, threads: int | None, as_json: bool
) -> None:
    """`bertc run ARTIFACT --check`: the report (lines, or one JSON object), then the verdict:
    GateFailedError (exit 12) when the golden outputs are not reproduced here."""
    from bertc.compiler.running import check_artifact

    if text is not None or file is not None:
        raise UsageError("--check runs the artifact's own golden inputs: give no TEXT or --file")
    report = check_artifact(artifact, threads)
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        for line in report.lines():
            output.stdout.print(line, highlight=False, markup=False)
    if not report.passed:
        raise GateFailedError(f"golden outputs not reproduced here: {report.problems[0]}")


def inspect_command(
    path: Annotated[
        str,
        typer.Argument(help="An artifact directory, a checkpoint directory or a cached hub id."),
    ],
    allow_pickle: AllowPickle = False,
    as_json: AsJson = False,
) -> None:
    """A table of layers, sizes, sparsity and what is quantized."""
    from bertc.compiler.inspection import inspect_path, render_inspection

    inspection = inspect_path(path, allow_pickle=allow_pickle)
    if as_json:
        output.print_json(inspection)
        return
    for renderable in render_inspection(inspection):
        output.stdout.print(renderable)


def pack_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory to pack for download.")],
    out: Annotated[
        Path | None, typer.Option(help="Pack file (default: ARTIFACT.bertcpack).")
    ] = None,
) -> None:
    """One download file: each file as a zero-bitmap + non-zero bytes, deflated (lossless)."""
    from bertc.compiler.packing import pack_artifact

    pack = pack_artifact(artifact, out)
    raw = sum(path.stat().st_size for path in artifact.rglob("*") if path.is_file())
    output.stdout.print(
        f"packed {artifact} ({raw:,} bytes) → {pack} ({pack.stat().st_size:,} bytes)"
    )


def unpack_command(
    pack: Annotated[Path, typer.Argument(help="A .bertcpack file.")],
    out: ArtifactOut,
) -> None:
    """Restore an artifact from its pack, checked file by file against its manifest."""
    from bertc.compiler.packing import unpack_artifact

    output.stdout.print(f"unpacked {pack} → {unpack_artifact(pack, out)} (integrity ok)")


COMMANDS: dict[str, Callable[..., None]] = {
    "compile": compile_command,
    "verify": verify_command,
    "run": run_command,
    "inspect": inspect_command,
    "pack": pack_command,
    "unpack": unpack_command,
}
