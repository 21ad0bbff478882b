"""`finetune_model`: fine-tune a BERT checkpoint on a GLUE task and save what `compile` consumes.

The output is a Hugging Face checkpoint (safetensors, config with id2label/label2id and
`finetuning_task`, tokenizer) plus `finetune.json` with the settings, the wall time and the dev
metrics. The recipe is the BERT miniatures' (Turc et al., 2019): AdamW, linear warmup over 6% of
the steps then decay, batch 32 and lr 1e-4 by default, 4 epochs; `bertc.compiler.training.grid`
searches its whole grid. A checkpoint each epoch goes to `OUT.checkpoints/` so `--resume` can
continue.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from bertc.calibration import GlueTask, get_task, load_examples, sample_examples
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.files import (
    TRAINING_OUTPUT,
    check_checkpoints,
    check_output,
    checkpoint_dir_for,
    make_staging_dir,
    move_into_place,
    report_text,
    writing,
)
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.options import sequence_length
from bertc.compiler.training import loop as training

REPORT_FILE = "finetune.json"


@dataclass(frozen=True)
class FinetuneOptions:
    """Everything `bertc finetune` takes besides the model and the output directory."""

    task: str
    data_dir: Path | None = None
    batch_size: int = 32
    learning_rate: float = 1e-4
    epochs: int = 4
    max_steps: int | None = None
    train_samples: int | None = None
    max_sequence_length: int | None = None  # None: 128, capped by the position table
    seed: int = 0
    keep_layers: int | None = None
    threads: int | None = None
    resume: bool = False
    keep_checkpoints: bool = False
    allow_pickle: bool = False
    overwrite: bool = False
    log_every: int = 20
    progress_bar: bool = False


@dataclass(frozen=True)
class FinetuneResult:
    out_dir: Path
    task: str
    dev_metrics: Mapping[str, float]
    headline_metric: str
    steps: int
    train_samples: int
    wall_time_s: float  # training alone; the report also holds the whole run's
    notes: tuple[str, ...]
    report: Mapping[str, Any]

    @property
    def headline(self) -> float:
        return self.dev_metrics[self.headline_metric]


def keep_layers(model: torch.nn.Module, count: int) -> list[int]:
    """Keep `count` of the encoder's layers, evenly spaced from the first (6 -> 3: 0, 2, 4).

    The layer-dropping start of DistilBERT and of paraphrase-MiniLM-L3 (a MiniLM-L6 with every
    other layer); returns the kept indices.
    """
    layers = model.bert.encoder.layer
    total = len(layers)
    if not 1 <= count <= total:
        raise UsageError(f"cannot keep {count} of the model's {total} layers")
    kept = [index * total // count for index in range(count)]
    model.bert.encoder.layer = torch.nn.ModuleList([layers[index] for index in kept])
    model.config.num_hidden_layers = count
    return kept


@dataclass(frozen=True)
class PreparedRun:
    """A loaded model and tokenized data, ready to train: shared by finetune, distill, prune."""

    model: torch.nn.Module
    tokenizer: Any
    task: GlueTask
    directory: Path
    head_is_new: bool  # a bare encoder's checkpoint, given a freshly initialised task head
    train: training.Batcher
    dev: training.Batcher
    max_length: int
    steps: int
    notes: tuple[str, ...]
    kept_layers: tuple[int, ...] | None


def prepare_run(source: str, options: Any, progress: Progress = silent) -> PreparedRun:
    """Seed, load (dropping layers if asked), read and tokenize train and dev, count the steps.

    `options` is a FinetuneOptions, its subclass DistillOptions, or a PruneOptions.
    """
    task = get_task(options.task)
    training.set_threads(options.threads)
    progress("load")
    torch.manual_seed(options.seed)  # the fresh head, then dropout, draw from it
    model, tokenizer, directory, head_is_new, notes = training.load_classifier(
        source, task, options.allow_pickle
    )
    kept = None
    if options.keep_layers is not None:
        kept = tuple(keep_layers(model, options.keep_layers))
        notes.append(f"kept encoder layers {list(kept)} of the checkpoint (uniform layer drop)")
    max_length = sequence_length(options.max_sequence_length, model.config.max_position_embeddings)
    progress("read data")
    train = load_examples(task, "train", options.data_dir)
    dev = load_examples(task, "dev", options.data_dir)
    train = sample_examples(train, options.train_samples or len(train), seed=options.seed)
    train_data = training.tokenize(tokenizer, task, train, max_length)
    dev_data = training.tokenize(tokenizer, task, dev, max_length)
    steps = options.max_steps or options.epochs * training.steps_per_epoch(
        len(train_data), options.batch_size
    )
    return PreparedRun(
        model=model,
        tokenizer=tokenizer,
        task=task,
        directory=directory,
        head_is_new=head_is_new,
        train=training.Batcher(tokenizer, train_data),
        dev=training.Batcher(tokenizer, dev_data),
        max_length=max_length,
        steps=steps,
        notes=tuple(notes),
        kept_layers=kept,
    )


def train_settings(source: str, options: Any, run: PreparedRun, **identity: Any):
    """The TrainSettings of a run; `identity` pins what else a resume must match."""
    return training.TrainSettings(
        steps=run.steps,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        seed=options.seed,
        log_every=options.log_every,
        identity={
            "source": str(source),
            "task": run.task.name,
            "train_samples": len(run.train.data),
            "max_length": run.max_length,
            "kept_layers": run.kept_layers,
            **identity,
        },
    )


def finetune_model(
    source: str, out_dir: Path, options: FinetuneOptions, progress: Progress = silent
) -> FinetuneResult:
    """Load, train (checkpointing each epoch), score on dev, save atomically."""
    run_started = time.perf_counter()
    out_dir = Path(out_dir)
    check_options(options, out_dir, [source])
    check_checkpoints(out_dir, [source])
    run = prepare_run(source, options, progress)
    settings = train_settings(source, options, run)
    checkpoints = checkpoint_dir_for(out_dir)
    progress("train")
    log = training.train(
        run.model,
        run.train,
        settings,
        checkpoint_dir=checkpoints,
        resume=options.resume,
        progress=progress,
        progress_bar=options.progress_bar,
    )
    progress("evaluate")
    metrics = training.evaluate(run.model, run.dev)
    report = {
        "source": {"id": str(source), "path": str(run.directory.resolve())},
        "task": run.task.name,
        "data_dir": str(options.data_dir) if options.data_dir else None,
        "training": training_report(options, run, settings, log),
        "dev_metrics": metrics,
        "headline_metric": run.task.headline_metric,
        "dev_examples": len(run.dev.data),
        "total_wall_time_s": round(time.perf_counter() - run_started, 2),
        "notes": list(run.notes),
    }
    save_output(run, out_dir, REPORT_FILE, report, options.overwrite, progress)
    if not options.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return FinetuneResult(
        out_dir=out_dir,
        task=run.task.name,
        dev_metrics=metrics,
        headline_metric=run.task.headline_metric,
        steps=run.steps,
        train_samples=len(run.train.data),
        wall_time_s=round(log.wall_time_s, 2),
        notes=run.notes,
        report=report,
    )


def training_report(options: Any, run: PreparedRun, settings, log: training.TrainLog) -> dict:
    """The recipe and budget of a run, as finetune.json and distill.json record it."""
    epoch_steps = training.steps_per_epoch(len(run.train.data), options.batch_size)
    return {
        "steps": run.steps,
        "epochs": round(run.steps / epoch_steps, 4),
        "train_samples": len(run.train.data),
        "batch_size": options.batch_size,
        "learning_rate": options.learning_rate,
        "warmup_steps": settings.warmup_steps,
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "seed": options.seed,
        "max_sequence_length": run.max_length,
        "kept_layers": list(run.kept_layers) if run.kept_layers else None,
        "threads": torch.get_num_threads(),
        "seconds_per_step": round(log.wall_time_s / max(1, run.steps - log.resumed_from_step), 4),
        **log.summary(),
    }


def save_output(
    run: PreparedRun,
    out_dir: Path,
    report_name: str,
    report: Mapping[str, Any] | Callable[[Path], Mapping[str, Any]],
    overwrite: bool,
    progress: Progress = silent,
) -> Mapping[str, Any]:
    """The checkpoint and its report into a temporary sibling, then renamed into place.

    `report` may be a function of the staged checkpoint's directory, for a report that records
    what was written (prune's sparsity, read back from the saved weights). Returns the report.
    """
    staging = make_staging_dir(out_dir)
    try:
        progress("save")
        with writing(staging):
            training.save_checkpoint(run.model, run.tokenizer, run.task, staging, run.max_length)
            if callable(report):
                report = report(staging)
            (staging / report_name).write_text(report_text(report), encoding="utf-8")
        move_into_place(staging, out_dir, overwrite, TRAINING_OUTPUT)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def check_options(options: Any, out_dir: Path, sources: Sequence[str] = ()) -> None:
    """One UsageError per impossible flag, before anything is loaded (finetune, distill, prune);
    OutputExistsError (13) for an --out the run may not write (`core.files.check_output`)."""
    check_output(out_dir, options.overwrite, TRAINING_OUTPUT, sources)
    get_task(options.task)
    for name in ("max_steps", "train_samples", "keep_layers"):
        value = getattr(options, name, None)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if options.batch_size <= 0:
        raise UsageError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.epochs <= 0:
        raise UsageError(f"--epochs must be at least 1, got {options.epochs}")
    if not (options.learning_rate > 0 and math.isfinite(options.learning_rate)):
        raise UsageError(f"--learning-rate must be positive, got {options.learning_rate}")
    if options.learning_rate > torch.finfo(torch.float32).max:  # the optimizer's float32 steps
        raise UsageError(
            f"--learning-rate must be a float32 number (at most 3.4e38), got "
            f"{options.learning_rate:g}"
        )
    if options.max_sequence_length is not None and options.max_sequence_length < 8:
        raise UsageError("--max-sequence-length must be at least 8")
    if options.log_every <= 0:
        raise UsageError("log_every must be at least 1")


def options_to_json(options: Any) -> dict[str, Any]:
    """Options as plain JSON values (paths as strings), e.g. for a Ray trial's config."""
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in asdict(options).items()
    }


__all__ = [
    "FinetuneOptions",
    "FinetuneResult",
    "PreparedRun",
    "check_options",
    "checkpoint_dir_for",
    "finetune_model",
    "keep_layers",
    "prepare_run",
]
