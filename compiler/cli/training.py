"""The training commands: finetune (and its seeds' grid), distill, prune.

Each parses its flags (`options`), calls one training function and prints the result; training
is imported inside the command, after the arguments are checked, as it pulls in torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

import typer
from bertc.compiler.cli import output
from bertc.compiler.cli.options import (
    AllowPickle,
    AsJson,
    BatchSize,
    Checkpoint,
    CheckpointOut,
    DataDir,
    Epochs,
    KeepCheckpoints,
    KeepLayers,
    LearningRate,
    MaxSeqLengthAlias,
    MaxSequenceLength,
    MaxSteps,
    Overwrite,
    Resume,
    Seed,
    StudentLayersAlias,
    Task,
    TorchThreads,
    TrainSamples,
    at_least_one,
    directory_to_create,
    resolve_alias,
)
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.files import TRAINING_OUTPUT, check_checkpoints, check_output

TRAINING_STAGES = {
    "load": "loading checkpoint",
    "read data": "reading and tokenizing the task's examples",
}


def finetune_command(
    model: Checkpoint,
    task: Task,
    out: CheckpointOut,
    data_dir: DataDir = None,
    batch_size: BatchSize = 32,
    learning_rate: LearningRate = 1e-4,
    epochs: Epochs = 4,
    max_steps: MaxSteps = None,
    train_samples: TrainSamples = None,
    max_sequence_length: MaxSequenceLength = None,
    max_seq_length: MaxSeqLengthAlias = None,
    seed: Seed = 0,
    keep_layers: KeepLayers = None,
    threads: TorchThreads = None,
    resume: Resume = False,
    keep_checkpoints: KeepCheckpoints = False,
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
        int | None,
        typer.Option(help="Run only the first N trials of the grid.", callback=at_least_one),
    ] = None,
    engine: Annotated[str, typer.Option(help="Grid engine: in-process or ray.")] = "in-process",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: a local instance).")
    ] = None,
    ray_cpus: Annotated[
        int | None, typer.Option(help="CPUs of the local Ray instance.", callback=at_least_one)
    ] = None,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Fine-tune on a GLUE task (or run the seeds' grid) and save a checkpoint for compile.

    --json prints the run's report (finetune.json, or the grid's report).
    """
    grid_flags = (grid_batch_sizes, grid_learning_rates, max_trials, ray_address, ray_cpus)
    if grid is None and (any(v is not None for v in grid_flags) or engine != "in-process"):
        raise UsageError("--grid-*, --max-trials, --engine and --ray-* need --grid")
    batch_sizes = _int_list(grid_batch_sizes, "--grid-batch-sizes")
    learning_rates = _float_list(grid_learning_rates, "--grid-learning-rates")
    max_sequence_length = resolve_alias(
        max_sequence_length,
        max_seq_length,
        None,
        "--max-sequence-length",
        "--max-seq-length",
    )
    check_output(out, overwrite, TRAINING_OUTPUT, [model, *_given(data_dir)])  # before torch
    if grid is None:
        check_checkpoints(out, [model])
    from bertc.compiler.training.finetune import FinetuneOptions, finetune_model

    options = FinetuneOptions(
        task=task,
        data_dir=data_dir,
        batch_size=batch_size,
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        train_samples=train_samples,
        max_sequence_length=max_sequence_length,
        seed=seed,
        keep_layers=keep_layers,
        threads=threads,
        resume=resume,
        keep_checkpoints=keep_checkpoints,
        allow_pickle=allow_pickle,
        overwrite=overwrite,
        progress_bar=grid is None,
    )
    if grid is not None:
        _run_grid(
            model,
            out,
            options,
            grid=grid,
            batch_sizes=batch_sizes,
            learning_rates=learning_rates,
            max_trials=max_trials,
            engine=engine,
            ray_address=ray_address,
            ray_cpus=ray_cpus,
            as_json=as_json,
        )
        return
    with output.progress("fine-tuning", TRAINING_STAGES, spinner=False) as progress:
        result = finetune_model(model, out, options, progress=progress)
    if as_json:
        output.print_json(result.report)
        return
    training = result.report["training"]
    output.stdout.print(
        f"[green]fine-tuned[/green] {model} → {result.out_dir} ({result.task}, "
        f"{result.steps} steps = {training['epochs']:g} epochs of {result.train_samples} "
        f"examples, {result.wall_time_s:.0f} s)"
    )
    output.stdout.print(f"  dev: {metrics_text(result.dev_metrics)}")


def _run_grid(
    model: str,
    out: Path,
    options: object,
    *,
    grid: str,
    batch_sizes: tuple[int, ...] | None,
    learning_rates: tuple[float, ...] | None,
    max_trials: int | None,
    engine: str,
    ray_address: str | None,
    ray_cpus: int | None,
    as_json: bool,
) -> None:
    from bertc.compiler.training.grid import Engine, GridOptions, render_table, run_grid

    try:
        chosen_engine = Engine(engine)
    except ValueError:
        raise UsageError(f"unknown --engine {engine!r}; use in-process or ray") from None
    defaults = GridOptions()
    grid_options = GridOptions(
        grid=grid,
        batch_sizes=batch_sizes or defaults.batch_sizes,
        learning_rates=learning_rates or defaults.learning_rates,
        max_trials=max_trials,
        engine=chosen_engine,
        ray_address=ray_address,
        ray_cpus=ray_cpus,
    )
    with output.progress("grid", TRAINING_STAGES, spinner=False) as progress:
        result = run_grid(model, out, options, grid_options, progress=progress)
    if as_json:
        output.print_json(result.report)
        return
    output.stdout.print(render_table(result.trials, result.headline_metric, result.winner))
    winner = result.winner
    output.stdout.print(
        f"[green]best[/green] trial {winner.trial.index} (batch {winner.trial.batch_size}, "
        f"lr {winner.trial.learning_rate:g}): {metrics_text(winner.dev_metrics)} → "
        f"{result.out_dir} ({len(result.trials)} trials on {result.engine.value}, "
        f"{result.wall_time_s:.0f} s)"
    )


def distill_command(
    teacher: Annotated[str, typer.Option(help="Checkpoint fine-tuned on the task.")],
    student: Annotated[str, typer.Option(help="Checkpoint to start the student from.")],
    task: Task,
    out: Annotated[
        Path,
        typer.Option(help="Student checkpoint directory to create.", callback=directory_to_create),
    ],
    data_dir: DataDir = None,
    keep_layers: KeepLayers = None,
    student_layers: StudentLayersAlias = None,
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
        bool,
        typer.Option(
            help="Also fine-tune the student without a teacher, same budget.", show_default=False
        ),
    ] = False,
    batch_size: BatchSize = 32,
    learning_rate: LearningRate = 1e-4,
    epochs: Epochs = 4,
    max_steps: MaxSteps = None,
    train_samples: TrainSamples = None,
    max_sequence_length: MaxSequenceLength = None,
    max_seq_length: MaxSeqLengthAlias = None,
    seed: Seed = 0,
    threads: TorchThreads = None,
    resume: Resume = False,
    keep_checkpoints: KeepCheckpoints = False,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Task distillation: KL on the teacher's soft logits + hard labels (+ TinyBERT losses).

    --keep-layers keeps N of the student's layers. --json prints distill.json.
    """
    keep_layers = resolve_alias(
        keep_layers, student_layers, None, "--keep-layers", "--student-layers"
    )
    max_sequence_length = resolve_alias(
        max_sequence_length,
        max_seq_length,
        None,
        "--max-sequence-length",
        "--max-seq-length",
    )
    check_output(out, overwrite, TRAINING_OUTPUT, [teacher, student, *_given(data_dir)])
    check_checkpoints(out, [teacher, student])
    from bertc.compiler.training.distill import DistillOptions, distill_model

    options = DistillOptions(
        task=task,
        data_dir=data_dir,
        batch_size=batch_size,
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        train_samples=train_samples,
        max_sequence_length=max_sequence_length,
        seed=seed,
        keep_layers=keep_layers,
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
    with output.progress("distilling", TRAINING_STAGES, spinner=False) as progress:
        result = distill_model(teacher, student, out, options, progress=progress)
    if as_json:
        output.print_json(result.report)
        return
    stdout = output.stdout
    stdout.print(
        f"[green]distilled[/green] {teacher} → {result.out_dir} ({result.task}, "
        f"{result.steps} steps, {result.wall_time_s:.0f} s)"
    )
    stdout.print(f"  teacher dev: {metrics_text(result.teacher_dev_metrics)}")
    stdout.print(f"  student dev (distilled): {metrics_text(result.dev_metrics)}")
    if result.alone_dev_metrics is not None:
        stdout.print(
            f"  student dev (alone, same budget): {metrics_text(result.alone_dev_metrics)}"
        )


def prune_command(
    model: Checkpoint,
    pattern: Annotated[
        str, typer.Option(help="1:2, 2:4, 4:8 (along the input), unstructured:S or block:4x1.")
    ],
    task: Task,
    out: CheckpointOut,
    data_dir: DataDir = None,
    max_steps: Annotated[
        int | None,
        typer.Option(help="Fine-tuning steps (default: 1 epoch).", callback=at_least_one),
    ] = None,
    train_samples: TrainSamples = None,
    batch_size: BatchSize = 32,
    learning_rate: LearningRate = 5e-5,
    seed: Seed = 0,
    max_sequence_length: MaxSequenceLength = None,
    max_seq_length: MaxSeqLengthAlias = None,
    allow_pickle: AllowPickle = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Magnitude-prune the encoder's Linear layers, fine-tune with the masks held, save.

    --json prints prune.json.
    """
    max_sequence_length = resolve_alias(
        max_sequence_length,
        max_seq_length,
        None,
        "--max-sequence-length",
        "--max-seq-length",
    )
    check_output(out, overwrite, TRAINING_OUTPUT, [model, *_given(data_dir)])
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
    with output.progress("pruning", TRAINING_STAGES) as progress:
        result = prune_model(model, out, options, progress=progress)
    if as_json:
        output.print_json(result.report)
        return
    output.stdout.print(
        f"[green]pruned[/green] {model} → {result.out_dir} ({result.pattern.text}, encoder "
        f"sparsity {result.encoder_sparsity:.1%}, {result.steps} steps, "
        f"{result.wall_time_s:.0f} s)"
    )
    for key in ("dense", "pruned_before_finetune", "pruned_after_finetune"):
        scores = result.dev_metrics.get(key)
        text = metrics_text(scores) if scores else "n/a"
        output.stdout.print(f"  {key.replace('_', ' ')}: {text}")
    for note in result.notes:
        output.stdout.print(f"  note: {note}")


def metrics_text(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())


def _float_list(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def _given(path: Path | None) -> list[Path]:
    """[path] when an optional input was given, else []."""
    return [] if path is None else [path]


def _int_list(text: str | None, flag: str) -> tuple[int, ...] | None:
    numbers = _float_list(text, flag)
    if numbers is not None and any(number != int(number) for number in numbers):
        raise UsageError(f"{flag} takes integers, got {text!r}")
    return None if numbers is None else tuple(int(number) for number in numbers)


COMMANDS: dict[str, Callable[..., None]] = {
    "finetune": finetune_command,
    "distill": distill_command,
    "prune": prune_command,
}
