"""`bertc`: the command line. It only parses, calls the pipeline and prints.

Logs and progress go to stderr, results to stdout; `--json` prints one JSON document. Expected
failures print one line and exit with the error's own code; `BERTC_DEBUG=1` shows the traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from bertc.compiler.core.enums import QuantizationMode, Recipe, TokenizerMode
from bertc.compiler.core.errors import BertcError, UsageError
from rich.console import Console

app = typer.Typer(
    name="bertc",
    help="Compile small BERT models to INT8 artifacts for OpenVINO, ORT Mobile and ONNX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True)
stdout = Console(soft_wrap=True)

UNEXPECTED_ERROR_EXIT = 70

Progress = Callable[[str], None]  # EX_SOFTWARE: a bug, not a bad input


def _quiet_libraries() -> None:
    """Keep third-party chatter (tracer warnings, load bars) off the user's terminal."""
    import logging
    import warnings

    if os.environ.get("BERTC_DEBUG"):
        return
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("nncf", "transformers", "onnxruntime", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)


@app.command("compile")
def compile_command(
    model: Annotated[
        str,
        typer.Argument(help="Hub id in the local Hugging Face cache, or a checkpoint directory."),
    ],
    target: Annotated[str, typer.Option(help="openvino, ort-mobile or onnx.")],
    out: Annotated[Path, typer.Option(help="Artifact directory to create.")],
    task: Annotated[
        str | None,
        typer.Option(help="GLUE task for calibration (default: the config's finetuning_task)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="glue_data folder (<dir>/SST-2/train.tsv, ...).")
    ] = None,
    quantization: Annotated[
        QuantizationMode, typer.Option(help="INT8 mode.")
    ] = QuantizationMode.STATIC,
    recipe: Annotated[
        Recipe, typer.Option(help="bert-safe, or the quantizer's bare defaults to compare with.")
    ] = Recipe.BERT_SAFE,
    calibration_samples: Annotated[
        int, typer.Option(help="Train sentences used to calibrate static INT8.")
    ] = 300,
    max_sequence_length: Annotated[
        int, typer.Option(help="Truncation length the artifact's tokenizer uses.")
    ] = 128,
    allow_pickle: Annotated[
        bool, typer.Option(help="Load pickle (.bin) weights; they can run code.")
    ] = False,
    tokenizer: Annotated[
        TokenizerMode | None,
        typer.Option(
            help="fused: strings in, logits out (default); separate: a tokenizer model beside "
            "the ids-in model; none: token ids in."
        ),
    ] = None,
    allow_tokenizer_mismatch: Annotated[
        bool,
        typer.Option(help="Build even if the in-graph tokenizer's ids differ from HF's."),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Verify on the task's dev set and gate the build.")
    ] = False,
    max_drop: Annotated[
        float, typer.Option(help="With --verify: largest headline-metric drop, in points.")
    ] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Checkpoint → ONNX (parity-gated) → INT8 → an artifact directory for the target runtime.

    With --verify the artifact is scored on the task's dev set as `bertc verify` does; when the
    gate fails the build fails (exit 12) and the artifact is removed.
    """
    from bertc.compiler.pipeline import CompileOptions, compile_model

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
    )
    with _progress("compiling") as progress:
        result = compile_model(model, out, options, progress=progress)
    manifest = json.loads((result.artifact_dir / "manifest.json").read_text(encoding="utf-8"))
    if not as_json:
        _print_compile_summary(result.artifact_dir, manifest)
    if verify:
        task_name = task or (manifest.get("calibration") or {}).get("task")
        if not task_name:
            shutil.rmtree(result.artifact_dir, ignore_errors=True)
            raise UsageError("--verify needs --task (the GLUE task to score on)")
        try:
            report = _run_verify(result.artifact_dir, task_name, data_dir, max_drop, as_json)
        except BertcError:
            shutil.rmtree(result.artifact_dir, ignore_errors=True)
            raise
        if not report.gate.passed:
            shutil.rmtree(result.artifact_dir, ignore_errors=True)
        from bertc.compiler.verify import raise_if_gate_failed

        raise_if_gate_failed(report)
    elif as_json:
        print(json.dumps(manifest, indent=2, sort_keys=True))


STAGE_LABELS = {
    "load": "loading checkpoint",
    "export": "exporting to ONNX",
    "parity": "checking parity with PyTorch",
    "tokenizer": "converting the tokenizer, checking its ids against HF",
    "quantize": "quantizing to INT8",
    "package": "writing artifact",
}


@contextlib.contextmanager
def _progress(label: str, stage_labels: dict[str, str] | None = None) -> Iterator[Progress]:
    """A status line on stderr and a `progress(stage)` callback for a long command.

    Libraries print progress to stdout (NNCF's bars and log); stdout is for the result alone,
    so it is sent to stderr while the command runs.
    """
    labels = stage_labels or {}
    with stderr.status(label) as status, contextlib.redirect_stdout(sys.stderr):
        yield lambda stage: _stage(status, labels.get(stage, stage))


def _stage(status: Any, stage: str) -> None:
    # Stage lines only on a terminal: a script reading stderr gets exactly one line on failure.
    if stderr.is_terminal:
        stderr.print(f"• {STAGE_LABELS.get(stage, stage)}", highlight=False)
    status.update(STAGE_LABELS.get(stage, stage))


def _print_compile_summary(artifact_dir: Path, manifest: dict[str, Any]) -> None:
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
    tokenizer = manifest.get("tokenizer") or {}
    parity = tokenizer.get("parity")
    if parity:
        stdout.print(
            f"  tokenizer {tokenizer['mode']} ({tokenizer['library']}): ids equal HF on "
            f"{parity['checked'] - parity['mismatched']}/{parity['checked']} sentences"
        )
        for item in parity["mismatches"]:
            stdout.print(f"    mismatch: {item['summary']}", highlight=False)
    for note in manifest.get("notes", []):
        stdout.print(f"  note: {note}")
        if note.startswith("token ids in"):
            stderr.print(f"note: {note}", highlight=False)


def _run_verify(
    artifact: Path, task: str, data_dir: Path | None, max_drop: float, as_json: bool, **options: Any
):
    """Run verify without raising on the gate, print the report, and return it."""
    from bertc.compiler.verify import STAGE_LABELS as VERIFY_STAGES
    from bertc.compiler.verify import verify_artifact
    from bertc.compiler.verify.render import render_table, report_to_json

    with _progress("verifying", VERIFY_STAGES) as progress:
        report = verify_artifact(
            artifact,
            task,
            data_dir=data_dir,
            max_drop=max_drop,
            raise_on_gate_failure=False,
            progress=progress,
            **options,
        )
    if as_json:
        print(json.dumps(report_to_json(report), indent=2, sort_keys=True, ensure_ascii=False))
    else:
        stdout.print(render_table(report))
        stdout.print(f"reports: {', '.join(str(artifact / name) for name in report.report_files)}")
    return report


@app.command("verify")
def verify_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory made by `bertc compile`.")],
    task: Annotated[str, typer.Option(help="GLUE task to score on (sst2, mrpc, stsb, ...).")],
    data_dir: Annotated[
        Path | None, typer.Option(help="glue_data folder; default: Hugging Face datasets.")
    ] = None,
    max_drop: Annotated[
        float, typer.Option(help="Fail (exit 12) if the headline metric drops more points.")
    ] = 0.5,
    reference: Annotated[
        str | None, typer.Option(help="fp32 checkpoint to compare with (default: the source).")
    ] = None,
    split: Annotated[str, typer.Option(help="Labelled split to score.")] = "dev",
    batch_size: Annotated[int, typer.Option(help="Batch size of the throughput figure.")] = 32,
    threads: Annotated[
        int | None, typer.Option(help="Runtime threads (default: the runtime's own).")
    ] = None,
    bootstrap_samples: Annotated[int, typer.Option(help="Paired-bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resamples.")] = 0,
    allow_pickle: Annotated[
        bool, typer.Option(help="Load a pickle (.bin) reference; it can run code.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Score an artifact against its fp32 model on a GLUE dev set; fail if it lost too much."""
    from bertc.compiler.verify import raise_if_gate_failed

    report = _run_verify(
        artifact,
        task,
        data_dir,
        max_drop,
        as_json,
        reference=reference,
        split=split,
        batch_size=batch_size,
        threads=threads,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        allow_pickle=allow_pickle,
    )
    raise_if_gate_failed(report)


@app.command("run")
def run_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact compiled with its tokenizer inside.")],
    text: Annotated[str | None, typer.Argument(help="The text to label.")] = None,
    text_pair: Annotated[
        str | None, typer.Argument(help="Second text, for a sentence-pair artifact.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(help="One example per line; a pair as two texts separated by a tab."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Runtime threads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per example.")] = False,
) -> None:
    """Label text with the artifact on its runtime alone (no torch, no transformers)."""
    from bertc.compiler.running import read_inputs, run_artifact

    texts, pairs = read_inputs(text, text_pair, file)
    for line in run_artifact(artifact, texts, pairs, threads, as_json):
        print(line)


@app.command("prune")
def prune_command(
    model: Annotated[str, typer.Argument(help="Cached hub id or checkpoint directory.")],
    pattern: Annotated[
        str, typer.Option(help="1:2, 2:4, 4:8 (along the input), unstructured:S or block:4x1.")
    ],
    task: Annotated[str, typer.Option(help="GLUE task to fine-tune and score on (e.g. sst2).")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to create.")],
    data_dir: Annotated[Path | None, typer.Option(help="glue_data folder.")] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Fine-tuning steps (default: 1 epoch).")
    ] = None,
    train_samples: Annotated[int | None, typer.Option(help="Seeded train sample size.")] = None,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="AdamW peak learning rate.")] = 5e-5,
    seed: Annotated[int, typer.Option(help="Seed for sampling, order and dropout.")] = 0,
    max_sequence_length: Annotated[int, typer.Option(help="Truncation length.")] = 128,
    allow_pickle: Annotated[bool, typer.Option(help="Load pickle (.bin) weights.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print prune.json.")] = False,
) -> None:
    """Magnitude-prune the encoder's Linear layers, fine-tune with the masks held, save."""
    from bertc.compiler.training.prune import PruneOptions, prune_model

    options = PruneOptions(
        pattern=pattern,
        task=task,
        data_dir=data_dir,
        max_steps=max_steps,
        train_samples=train_samples,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        max_sequence_length=max_sequence_length,
        allow_pickle=allow_pickle,
        overwrite=overwrite,
    )
    with _progress("pruning") as progress:
        result = prune_model(model, out, options, progress=progress)
    if as_json:
        print(json.dumps(result.report, indent=2, sort_keys=True))
        return
    stdout.print(
        f"[green]pruned[/green] {model} → {result.out_dir} ({result.pattern.text}, encoder "
        f"sparsity {result.encoder_sparsity:.1%}, {result.steps} steps, "
        f"{result.wall_time_s:.0f} s)"
    )
    for key in ("dense", "pruned_before_finetune", "pruned_after_finetune"):
        scores = result.dev_metrics.get(key)
        text = (
            ", ".join(f"{name} {value:.4f}" for name, value in scores.items()) if scores else "n/a"
        )
        stdout.print(f"  {key.replace('_', ' ')}: {text}")
    for note in result.notes:
        stdout.print(f"  note: {note}")


def _float_list(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())


@contextlib.contextmanager
def _training_progress() -> Iterator[Progress]:
    """Stage and step lines on a terminal (the step bar is tqdm's); stdout kept for results."""

    def show(message: str) -> None:
        if stderr.is_terminal:
            stderr.print(f"• {message}", highlight=False)

    with contextlib.redirect_stdout(sys.stderr):
        yield show


@app.command("finetune")
def finetune_command(
    model: Annotated[str, typer.Argument(help="Cached hub id or checkpoint directory.")],
    task: Annotated[str, typer.Option(help="GLUE task (cola, sst2, mrpc, stsb, rte, ...).")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to create.")],
    data_dir: Annotated[Path | None, typer.Option(help="glue_data folder.")] = None,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="AdamW peak learning rate.")] = 1e-4,
    epochs: Annotated[int, typer.Option(help="Epochs (unless --max-steps).")] = 4,
    max_steps: Annotated[
        int | None, typer.Option(help="Optimizer steps; overrides --epochs (a CPU budget).")
    ] = None,
    train_samples: Annotated[int | None, typer.Option(help="Seeded train sample size.")] = None,
    max_seq_length: Annotated[
        int, typer.Option("--max-seq-length", "--max-sequence-length", help="Truncation length.")
    ] = 128,
    seed: Annotated[int, typer.Option(help="Seed for the head, sampling, order, dropout.")] = 0,
    keep_layers: Annotated[
        int | None, typer.Option(help="Start from N of the checkpoint's layers (uniform).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from the last epoch checkpoint in OUT.checkpoints/.")
    ] = False,
    keep_checkpoints: Annotated[
        bool, typer.Option(help="Keep OUT.checkpoints/ after a successful run.")
    ] = False,
    grid: Annotated[
        str | None, typer.Option(help="'seed': the BERT miniatures' grid, best on dev.")
    ] = None,
    grid_batch_sizes: Annotated[
        str | None, typer.Option(help="Subset of the grid's batch sizes, e.g. 16,32.")
    ] = None,
    grid_learning_rates: Annotated[
        str | None, typer.Option(help="Subset of the grid's learning rates, e.g. 1e-4,5e-5.")
    ] = None,
    max_trials: Annotated[
        int | None, typer.Option(help="Run only the first N trials of the grid.")
    ] = None,
    engine: Annotated[str, typer.Option(help="Grid engine: in-process or ray.")] = "in-process",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: a local instance).")
    ] = None,
    ray_cpus: Annotated[int | None, typer.Option(help="CPUs of the local Ray instance.")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Load pickle (.bin) weights.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fine-tune on a GLUE task (or run the seeds' grid) and save a checkpoint for compile."""
    from bertc.compiler.training.finetune import FinetuneOptions, finetune_model

    options = FinetuneOptions(
        task=task,
        data_dir=data_dir,
        batch_size=batch_size,
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        train_samples=train_samples,
        max_sequence_length=max_seq_length,
        seed=seed,
        keep_layers=keep_layers,
        threads=threads,
        resume=resume,
        keep_checkpoints=keep_checkpoints,
        allow_pickle=allow_pickle,
        overwrite=overwrite,
        progress_bar=grid is None,
    )
    if grid is None:
        if any(v is not None for v in (grid_batch_sizes, grid_learning_rates, max_trials)) or (
            engine != "in-process" or ray_address
        ):
            raise UsageError("--grid-*, --max-trials, --engine and --ray-address need --grid")
        with _training_progress() as progress:
            result = finetune_model(model, out, options, progress=progress)
        if as_json:
            print(json.dumps(result.report, indent=2, sort_keys=True))
            return
        training = result.report["training"]
        stdout.print(
            f"[green]fine-tuned[/green] {model} → {result.out_dir} ({result.task}, "
            f"{result.steps} steps = {training['epochs']:g} epochs of {result.train_samples} "
            f"examples, {result.wall_time_s:.0f} s)"
        )
        stdout.print(f"  dev: {_metrics_text(result.dev_metrics)}")
        return
    _run_grid_command(
        model,
        out,
        options,
        grid,
        grid_batch_sizes,
        grid_learning_rates,
        max_trials,
        engine,
        ray_address,
        ray_cpus,
        as_json,
    )


def _run_grid_command(
    model,
    out,
    options,
    grid,
    batch_sizes,
    learning_rates,
    max_trials,
    engine,
    address,
    cpus,
    as_json,
) -> None:
    from bertc.compiler.training.grid import Engine, GridOptions, render_table, run_grid

    try:
        chosen_engine = Engine(engine)
    except ValueError:
        raise UsageError(f"unknown --engine {engine!r}; use in-process or ray") from None
    sizes = _float_list(batch_sizes, "--grid-batch-sizes")
    if sizes is not None and any(size != int(size) for size in sizes):
        raise UsageError(f"--grid-batch-sizes takes integers, got {batch_sizes!r}")
    defaults = GridOptions()
    grid_options = GridOptions(
        grid=grid,
        batch_sizes=tuple(int(size) for size in sizes) if sizes else defaults.batch_sizes,
        learning_rates=_float_list(learning_rates, "--grid-learning-rates")
        or defaults.learning_rates,
        max_trials=max_trials,
        engine=chosen_engine,
        ray_address=address,
        ray_cpus=cpus,
    )
    with _training_progress() as progress:
        result = run_grid(model, out, options, grid_options, progress=progress)
    if as_json:
        print(json.dumps(result.report, indent=2, sort_keys=True))
        return
    stdout.print(render_table(result.trials, result.headline_metric, result.winner))
    winner = result.winner
    stdout.print(
        f"[green]best[/green] trial {winner.trial.index} (batch {winner.trial.batch_size}, "
        f"lr {winner.trial.learning_rate:g}): {_metrics_text(winner.dev_metrics)} → "
        f"{result.out_dir} ({len(result.trials)} trials on {result.engine.value}, "
        f"{result.wall_time_s:.0f} s)"
    )


@app.command("distill")
def distill_command(
    teacher: Annotated[str, typer.Option(help="Checkpoint fine-tuned on the task.")],
    student: Annotated[str, typer.Option(help="Checkpoint to start the student from.")],
    task: Annotated[str, typer.Option(help="GLUE task (cola, sst2, mrpc, stsb, rte, ...).")],
    out: Annotated[Path, typer.Option(help="Student checkpoint directory to create.")],
    data_dir: Annotated[Path | None, typer.Option(help="glue_data folder.")] = None,
    student_layers: Annotated[
        int | None, typer.Option(help="Keep N of the student's layers (uniform, e.g. 6 -> 3).")
    ] = None,
    alpha: Annotated[
        float, typer.Option(help="Weight of the teacher's soft loss (1 - alpha: hard labels).")
    ] = 0.5,
    temperature: Annotated[float, typer.Option(help="Softmax temperature of the KL.")] = 2.0,
    hidden_weight: Annotated[
        float, typer.Option(help="TinyBERT hidden-state MSE weight (0: off).")
    ] = 0.0,
    attention_weight: Annotated[
        float, typer.Option(help="TinyBERT attention-map MSE weight (0: off).")
    ] = 0.0,
    compare_alone: Annotated[
        bool, typer.Option(help="Also fine-tune the student without a teacher, same budget.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="AdamW peak learning rate.")] = 1e-4,
    epochs: Annotated[int, typer.Option(help="Epochs (unless --max-steps).")] = 4,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (a CPU budget).")] = None,
    train_samples: Annotated[int | None, typer.Option(help="Seeded train sample size.")] = None,
    max_seq_length: Annotated[
        int, typer.Option("--max-seq-length", "--max-sequence-length", help="Truncation length.")
    ] = 128,
    seed: Annotated[int, typer.Option(help="Seed for the head, sampling, order, dropout.")] = 0,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT.checkpoints/.")] = False,
    keep_checkpoints: Annotated[bool, typer.Option(help="Keep OUT.checkpoints/.")] = False,
    allow_pickle: Annotated[bool, typer.Option(help="Load pickle (.bin) weights.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print distill.json.")] = False,
) -> None:
    """Task distillation: KL on the teacher's soft logits + hard labels (+ TinyBERT losses)."""
    from bertc.compiler.training.distill import DistillOptions, distill_model

    options = DistillOptions(
        task=task,
        data_dir=data_dir,
        batch_size=batch_size,
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        train_samples=train_samples,
        max_sequence_length=max_seq_length,
        seed=seed,
        keep_layers=student_layers,
        alpha=alpha,
        temperature=temperature,
        hidden_weight=hidden_weight,
        attention_weight=attention_weight,
        compare_alone=compare_alone,
        threads=threads,
        resume=resume,
        keep_checkpoints=keep_checkpoints,
        allow_pickle=allow_pickle,
        overwrite=overwrite,
        progress_bar=True,
    )
    with _training_progress() as progress:
        result = distill_model(teacher, student, out, options, progress=progress)
    if as_json:
        print(json.dumps(result.report, indent=2, sort_keys=True))
        return
    stdout.print(
        f"[green]distilled[/green] {teacher} → {result.out_dir} ({result.task}, "
        f"{result.steps} steps, {result.wall_time_s:.0f} s)"
    )
    stdout.print(f"  teacher dev: {_metrics_text(result.teacher_dev_metrics)}")
    stdout.print(f"  student dev (distilled): {_metrics_text(result.dev_metrics)}")
    if result.alone_dev_metrics is not None:
        stdout.print(
            f"  student dev (alone, same budget): {_metrics_text(result.alone_dev_metrics)}"
        )


@app.command("pack")
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
    stdout.print(f"packed {artifact} ({raw:,} bytes) → {pack} ({pack.stat().st_size:,} bytes)")


@app.command("unpack")
def unpack_command(
    pack: Annotated[Path, typer.Argument(help="A .bertcpack file.")],
    out: Annotated[Path, typer.Option(help="Artifact directory to create.")],
) -> None:
    """Restore an artifact from its pack, checked file by file against its manifest."""
    from bertc.compiler.packing import unpack_artifact

    stdout.print(f"unpacked {pack} → {unpack_artifact(pack, out)} (integrity ok)")


@app.command("inspect")
def inspect_command(
    path: Annotated[
        str,
        typer.Argument(help="An artifact directory, a checkpoint directory or a cached hub id."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """A table of layers, sizes, sparsity and what is quantized."""
    from bertc.compiler.inspection import inspect_path, render_inspection

    inspection = inspect_path(path)
    if as_json:
        print(json.dumps(inspection, indent=2, sort_keys=True))
        return
    for renderable in render_inspection(inspection):
        stdout.print(renderable)


def main() -> None:
    """Console-script entry point: map BertcError to its exit code and one line on stderr."""
    _quiet_libraries()
    try:
        app(standalone_mode=False)
    except BertcError as error:
        _fail(f"error: {error}", error.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except Exception as error:  # click usage errors carry their own exit code
        import click

        # typer >= 0.2x vendors click (typer._click), whose errors derive from TyperException.
        usage_errors = (click.exceptions.ClickException, getattr(typer, "TyperException", ()))
        if isinstance(error, usage_errors):
            _fail(f"error: {error.format_message()}", error.exit_code)
        if isinstance(error, (click.exceptions.Exit, typer.Exit)):
            sys.exit(error.exit_code)
        _fail(f"internal error ({type(error).__name__}): {error}", UNEXPECTED_ERROR_EXIT)


def _fail(message: str, code: int) -> None:
    if os.environ.get("BERTC_DEBUG"):
        traceback.print_exc()
    print(" ".join(message.split()) or "error", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
