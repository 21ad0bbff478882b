"""Task training shared by `bertc prune`, `bertc finetune` and `bertc distill`.

One seeded loop: examples are tokenized once without padding, each batch is padded to its own
longest example by transformers' `DataCollatorWithPadding`, epoch e is a `random.Random(seed + e)`
shuffle, AdamW with decay off biases and LayerNorm, a linear warmup/decay schedule, gradient
clipping. What differs between the commands comes in as hooks: the loss (distillation), and
what happens after each optimizer step (pruning re-applies its masks).

A checkpoint after every epoch holds the model, optimizer, schedule and RNG states, so a resumed
run continues with the very batches, dropout masks and updates the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bertc.calibration import (
    Example,
    GlueTask,
    compute_metrics,
    predictions_from_logits,
)
from bertc.compiler.core.errors import ModelFileError, TrainingDivergedError, UsageError
from bertc.compiler.core.files import EPOCH_DIR, HASH_SUFFIX, STATE_FILE, write_text_atomically
from bertc.compiler.core.hashing import sha256_file
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.loading import (
    HEAD_ENCODER,
    HEAD_REGRESSION,
    check_checkpoint,
    load_tokenizer,
    load_weights,
)

Batch = dict[str, torch.Tensor]
LossFunction = Callable[[torch.nn.Module, Batch, Sequence[int]], torch.Tensor]

WARMUP_FRACTION = 0.06
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
EVAL_BATCH_SIZE = 64
# STATE_FILE in OUT.checkpoints/epoch-N/ (EPOCH_DIR), and beside it its sha256 (HASH_SUFFIX) as
# `sha256sum` writes it, checked before a resume loads it (names shared with core.files).


# ---- loading ----


def load_classifier(
    source: str, task: GlueTask, allow_pickle: bool = False
) -> tuple[torch.nn.Module, Any, Path, bool, list[str]]:
    """(model in fp32, tokenizer, directory, head_is_new, notes), checked as `load_model` does.

    A *ForSequenceClassification checkpoint must have the task's label count; a bare encoder
    gets a freshly initialised head (seed the RNG first) with the task's labels.
    """
    from transformers import BertForSequenceClassification

    checkpoint = check_checkpoint(source, allow_pickle)
    directory, config, head = checkpoint.directory, checkpoint.config, checkpoint.head
    head_is_new = head == HEAD_ENCODER
    settings = checkpoint.family.normalise_config(config)
    if head_is_new:
        settings.update(task_head_settings(task))
    else:
        labels = int(config.get("num_labels", len(config.get("id2label") or {}) or 2))
        if (head == HEAD_REGRESSION) != task.is_regression or labels != task.num_labels:
            raise UsageError(
                f"{directory} has a {labels}-output {head} head but {task.name} needs "
                f"{task.num_labels} output(s); pick the matching task or start from an encoder"
            )
    model, missing, _ = load_weights(
        BertForSequenceClassification,
        directory,
        settings,
        allow_pickle,
        fresh_prefixes=("classifier.", "bert.pooler.") if head_is_new else (),
    )
    notes = [f"model family {checkpoint.family.name}"]
    if head_is_new:
        notes.append(
            f"{directory.name} is a bare encoder: the {task.name} head "
            f"({', '.join(sorted(set(missing)))}) was freshly initialised"
        )
    return model, load_tokenizer(directory, config), directory, head_is_new, notes


def task_head_settings(task: GlueTask) -> dict[str, Any]:
    """num_labels, problem_type and the label map (id2label/label2id) of the task's head."""
    if task.is_regression:
        return {
            "num_labels": 1,
            "problem_type": "regression",
            "id2label": {0: "score"},
            "label2id": {"score": 0},
        }
    names = task.hf.label_names or task.labels
    return {
        "num_labels": task.num_labels,
        "problem_type": "single_label_classification",
        "id2label": dict(enumerate(names)),
        "label2id": {name: index for index, name in enumerate(names)},
    }


# ---- data: tokenize once, pad per batch ----


@dataclass(frozen=True)
class TaskData:
    """Tokenized examples (unpadded) and their labels, ready for `DataCollatorWithPadding`."""

    task: GlueTask
    features: tuple[dict[str, list[int]], ...]
    labels: tuple[int | float, ...]

    def __len__(self) -> int:
        return len(self.features)


def tokenize(tokenizer, task: GlueTask, examples: Sequence[Example], max_length: int) -> TaskData:
    """Every example tokenized and truncated to `max_length`, without padding."""
    if not examples:
        raise UsageError(f"no {task.name} examples to tokenize")
    text_b = [example.text_b for example in examples]
    encoded = tokenizer(
        [example.text_a for example in examples],
        text_b if any(text is not None for text in text_b) else None,
        truncation=True,
        max_length=max_length,
    )
    names = [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in encoded]
    features = tuple(
        {name: encoded[name][index] for name in names} for index in range(len(examples))
    )
    return TaskData(task, features, tuple(example.label for example in examples))


class Batcher:
    """Pads a list of example indices into one tensor batch with `DataCollatorWithPadding`."""

    def __init__(self, tokenizer, data: TaskData) -> None:
        from transformers import DataCollatorWithPadding

        self.data = data
        self.collator = DataCollatorWithPadding(tokenizer, padding="longest", return_tensors="pt")

    def __call__(self, indices: Sequence[int], with_labels: bool = True) -> Batch:
        batch = dict(self.collator([self.data.features[index] for index in indices]))
        if with_labels:
            dtype = torch.float32 if self.data.task.is_regression else torch.long
            batch["labels"] = torch.tensor([self.data.labels[i] for i in indices], dtype=dtype)
        return batch


def training_order(count: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """`steps` batches of example indices; epoch e is a random.Random(seed + e) shuffle."""
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < steps:
        order = list(range(count))
        random.Random(seed + epoch).shuffle(order)
        batches.extend(order[start : start + batch_size] for start in range(0, count, batch_size))
        epoch += 1
    return batches[:steps]


def steps_per_epoch(count: int, batch_size: int) -> int:
    return math.ceil(count / batch_size)


# ---- the loop ----


@dataclass(frozen=True)
class TrainSettings:
    """The knobs of one training run; their hash names a run for `--resume`."""

    steps: int
    batch_size: int
    learning_rate: float
    seed: int
    warmup_fraction: float = WARMUP_FRACTION
    weight_decay: float = WEIGHT_DECAY
    max_grad_norm: float = MAX_GRAD_NORM
    log_every: int = 20
    # Anything else that must match for a resume to be the same run (source, task, samples).
    identity: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def warmup_steps(self) -> int:
        return math.ceil(self.warmup_fraction * self.steps)

    def fingerprint(self) -> str:
        settings = asdict(self)
        settings.pop("log_every")
        text = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainLog:
    losses: tuple[float, ...]
    wall_time_s: float
    resumed_from_step: int
    checkpoints: tuple[Path, ...]

    def summary(self) -> dict[str, Any]:
        recent = self.losses[-20:]
        return {
            "first_loss": round(self.losses[0], 6) if self.losses else None,
            "last_loss": round(sum(recent) / len(recent), 6) if recent else None,
            "wall_time_s": round(self.wall_time_s, 2),
            "resumed_from_step": self.resumed_from_step,
        }


def make_optimizer(trainable: torch.nn.Module, settings: TrainSettings) -> torch.optim.AdamW:
    """AdamW, with weight decay on everything but biases and LayerNorm."""
    decay, no_decay = [], []
    for name, parameter in trainable.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = name.endswith(".bias") or "LayerNorm" in name
        (no_decay if exempt else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=settings.learning_rate)


def default_loss(model: torch.nn.Module, batch: Batch, indices: Sequence[int]) -> torch.Tensor:
    """transformers' own task loss: cross-entropy, or MSE for a regression head."""
    del indices
    return model(**batch).loss


def train(
    model: torch.nn.Module,
    batcher: Batcher,
    settings: TrainSettings,
    *,
    loss_function: LossFunction = default_loss,
    after_step: Callable[[], None] | None = None,
    trainable: torch.nn.Module | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: Progress = silent,
    progress_bar: bool = False,
) -> TrainLog:
    """Run `settings.steps` optimizer steps over `batcher`'s data; checkpoint each epoch.

    `trainable` (default: the model) is what the optimizer updates and the checkpoints hold,
    e.g. the student and its distillation projections together.
    """
    from transformers import get_linear_schedule_with_warmup

    trainable = trainable if trainable is not None else model
    optimizer = make_optimizer(trainable, settings)
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, settings.steps)
    count = len(batcher.data)
    epoch_steps = steps_per_epoch(count, settings.batch_size)
    order = training_order(count, settings.steps, settings.batch_size, settings.seed)
    losses: list[float] = []
    start_step = 0
    if resume:
        state = latest_checkpoint(checkpoint_dir, settings) if checkpoint_dir else None
        if state is None:
            raise UsageError(
                f"--resume: no checkpoint of this run in {checkpoint_dir}; "
                "run without --resume to start it"
            )
        check_state(state, settings, epoch_steps, trainable, optimizer, scheduler)
        start_step, losses = _restore(state, trainable, optimizer, scheduler)
        progress(f"resumed at step {start_step}/{settings.steps}")
    written: list[Path] = []
    bar = _bar(settings.steps, start_step, progress_bar)
    started = time.perf_counter()
    model.train()
    try:
        for step in range(start_step + 1, settings.steps + 1):
            indices = order[step - 1]
            loss = loss_function(model, batcher(indices), indices)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable.parameters(), settings.max_grad_norm)
            try:
                optimizer.step()
            except RuntimeError as error:  # a learning rate whose step overflows float32
                if "overflow" not in str(error):
                    raise
                what = f"the optimizer's step {step} overflows float32"
                raise _diverged(what, settings) from error
            scheduler.step()
            if after_step is not None:
                after_step()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                raise _diverged(f"the loss at step {step} is {losses[-1]}", settings)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            if step % settings.log_every == 0 or step == settings.steps:
                recent = losses[-settings.log_every :]
                progress(
                    f"step {step}/{settings.steps} loss {sum(recent) / len(recent):.4f} "
                    f"({(time.perf_counter() - started) / (step - start_step):.2f} s/step)"
                )
            if checkpoint_dir is not None and step % epoch_steps == 0 and step < settings.steps:
                check_finite_weights(trainable, settings, step)
                epoch = step // epoch_steps
                written.append(
                    _save_state(
                        checkpoint_dir,
                        epoch,
                        step,
                        settings,
                        trainable,
                        optimizer,
                        scheduler,
                        losses,
                    )
                )
                progress(f"checkpoint epoch {epoch} (step {step})")
        check_finite_weights(trainable, settings, settings.steps)
    finally:
        if bar is not None:
            bar.close()
        model.eval()
    return TrainLog(tuple(losses), time.perf_counter() - started, start_step, tuple(written))


def _diverged(what: str, settings: TrainSettings) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"training diverged: {what} (learning rate {settings.learning_rate:g}); "
        "nothing is written; lower --learning-rate"
    )


def check_finite_weights(model: torch.nn.Module, settings: TrainSettings, step: int) -> None:
    """TrainingDivergedError (exit 18) when any floating-point parameter or buffer of `model`
    holds NaN or an infinity after `step` steps."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _diverged(f"weight {name} holds NaN or infinite values at step {step}", settings)


def _bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # disable=None: a bar on a terminal, nothing in a pipe or a log file.
    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        file=sys.stderr,
        disable=None,
        dynamic_ncols=True,
        leave=False,
    )


# ---- checkpoints ----


def _save_state(
    directory: Path,
    epoch: int,
    step: int,
    settings: TrainSettings,
    trainable: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    losses: list[float],
) -> Path:
    """Write epoch-N/training_state.pt atomically (temp file, then rename)."""
    target = Path(directory) / f"epoch-{epoch}"
    target.mkdir(parents=True, exist_ok=True)
    state = {
        "fingerprint": settings.fingerprint(),
        "step": step,
        "epoch": epoch,
        "model": trainable.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "losses": torch.tensor(losses, dtype=torch.float64),
    }
    temporary = target / f"{STATE_FILE}.partial"
    torch.save(state, str(temporary))
    os.replace(temporary, target / STATE_FILE)
    write_state_hash(target / STATE_FILE)
    return target / STATE_FILE


def hash_file_for(path: Path) -> Path:
    return path.with_name(path.name + HASH_SUFFIX)


def write_state_hash(path: Path) -> Path:
    """Write `<path>.sha256` (`<hex>  <name>`, as sha256sum does) atomically beside `path`."""
    line = f"{sha256_file(path)}  {path.name}\n"
    return write_text_atomically(hash_file_for(path), line)


def check_state_hash(path: Path) -> None:
    """ModelFileError (exit 4) unless `<path>.sha256` exists and names `path`'s sha256."""
    hash_path = hash_file_for(path)
    try:
        recorded = hash_path.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        raise ModelFileError(
            f"{path} has no {hash_path.name} beside it, so it cannot be trusted; "
            "run without --resume to start over"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelFileError(f"cannot read {hash_path}: {error}") from error
    if not recorded or not re.fullmatch(r"[0-9a-f]{64}", recorded[0]):
        raise ModelFileError(f"{hash_path} does not hold a sha256")
    if sha256_file(path) != recorded[0]:
        raise ModelFileError(
            f"{path} does not match its sha256 ({hash_path.name}): the checkpoint is corrupt "
            "or was changed; run without --resume to start over"
        )


def latest_checkpoint(directory: Path, settings: TrainSettings) -> dict[str, Any] | None:
    """The last epoch's state of this very run (same fingerprint), or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    epochs = sorted(
        (int(match[1]), path)
        for path in directory.iterdir()
        if (match := EPOCH_DIR.match(path.name)) and (path / STATE_FILE).is_file()
    )
    if not epochs:
        return None
    path = epochs[-1][1] / STATE_FILE
    check_state_hash(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file (zip, pickle, ...)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelFileError(f"{path} is not a readable training checkpoint: {first}") from error
    if not isinstance(state, dict) or not isinstance(state.get("fingerprint"), str):
        raise ModelFileError(f"{path} is not a bertc training checkpoint (no run fingerprint)")
    state["path"] = path
    if state.get("fingerprint") != settings.fingerprint():
        raise UsageError(
            f"--resume: {path} belongs to a run with other settings (model, task, batch size, "
            "learning rate, steps, samples or seed); resume with the same flags"
        )
    return state


def check_state(
    state: Mapping[str, Any],
    settings: TrainSettings,
    epoch_steps: int,
    trainable: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> None:
    """ModelFileError (exit 4) unless the state is one this run could have written: a step
    within the budget at an epoch's end, a finite loss per step, the model's own tensor names,
    shapes and dtypes, all finite, and optimizer, schedule and RNG states that match them."""
    path = state.get("path", STATE_FILE)
    problem = _state_problem(state, settings, epoch_steps, trainable, optimizer, scheduler)
    if problem:
        raise ModelFileError(f"{path} is not a usable checkpoint of this run: {problem}")


def _state_problem(state, settings, epoch_steps, trainable, optimizer, scheduler) -> str | None:
    missing = sorted(
        {"step", "epoch", "model", "optimizer", "scheduler", "torch_rng", "losses"} - set(state)
    )
    if missing:
        return f"it lacks {', '.join(missing)}"
    step, epoch = state["step"], state["epoch"]
    if not _is_int(step) or not 0 <= step <= settings.steps:
        return f"step {step!r} is outside this run's 0..{settings.steps}"
    if not _is_int(epoch) or step != epoch * epoch_steps:
        return f"step {step} is not the end of epoch {epoch!r} ({epoch_steps} steps an epoch)"
    losses = state["losses"]
    if not _is_finite_tensor(losses) or losses.shape != (step,):
        return f"its losses are not {step} finite numbers"
    model_problem = _tensors_problem(state["model"], trainable.state_dict(), "weight")
    if model_problem:
        return model_problem
    optimizer_problem = _optimizer_problem(state["optimizer"], optimizer, step)
    if optimizer_problem:
        return optimizer_problem
    schedule_problem = _schedule_problem(state["scheduler"], scheduler, step)
    if schedule_problem:
        return schedule_problem
    rng = state["torch_rng"]
    expected = torch.get_rng_state()
    if (
        not isinstance(rng, torch.Tensor)
        or rng.dtype != expected.dtype
        or rng.shape != expected.shape
    ):
        return "its random-number-generator state is malformed"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_tensor(value: Any) -> bool:
    if not isinstance(value, torch.Tensor):
        return False
    return not value.is_floating_point() or bool(torch.isfinite(value).all())


def _tensors_problem(saved: Any, expected: Mapping[str, torch.Tensor], what: str) -> str | None:
    """Why `saved` is not a finite state dict of `expected`'s names, shapes and dtypes."""
    if not isinstance(saved, Mapping):
        return f"its {what}s are not a state dict"
    if set(saved) != set(expected):
        odd = sorted(set(saved) ^ set(expected))
        return f"its {what}s are not this model's ({len(odd)} names differ, e.g. {odd[0]})"
    for name, tensor in expected.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor) or value.dtype != tensor.dtype:
            return f"{what} {name} is not a {tensor.dtype} tensor"
        if value.shape != tensor.shape:
            return f"{what} {name} has shape {list(value.shape)}, the model {list(tensor.shape)}"
        if not _is_finite_tensor(value):
            return f"{what} {name} holds NaN or infinite values"
    return None


def _same_value(saved: Any, own: Any) -> bool:
    """`saved` equals `own` with the same types all the way down (True is not 1, 1 is not 1.0)."""
    if type(saved) is not type(own):
        return False
    if isinstance(own, list | tuple):
        return len(saved) == len(own) and all(map(_same_value, saved, own))
    if isinstance(own, dict):
        return saved.keys() == own.keys() and all(_same_value(saved[k], own[k]) for k in own)
    return saved == own


def _finite_floats(value: Any, count: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == count
        and all(isinstance(item, float) and math.isfinite(item) for item in value)
    )


def _optimizer_problem(saved: Any, optimizer: torch.optim.Optimizer, step: int) -> str | None:
    """Why `saved` is not AdamW's state for this model's parameters after `step` steps: its
    groups must have this optimizer's keys and hyperparameters (the learning rate finite and
    non-negative), each parameter's state a step count of exactly `step` and finite moments of
    the parameter's shape and dtype, the second moment non-negative."""
    if not isinstance(saved, Mapping) or not {"state", "param_groups"} <= set(saved):
        return "its optimizer state is malformed"
    groups, own = saved["param_groups"], optimizer.param_groups
    if not isinstance(groups, list) or len(groups) != len(own):
        return "its optimizer's parameter groups are not this model's"
    parameters = {}
    for index, (group, mine) in enumerate(zip(groups, own, strict=True)):
        if (
            not isinstance(group, dict)
            or group.keys() != mine.keys()
            or not isinstance(group["params"], list)
            or len(group["params"]) != len(mine["params"])
        ):
            return "its optimizer's parameter groups are not this model's"
        lr = group["lr"]
        if not (isinstance(lr, float) and math.isfinite(lr) and lr >= 0):
            return f"its optimizer's group {index} has no finite learning rate"
        for key in mine.keys() - {"params", "lr"}:
            if not _same_value(group[key], mine[key]):
                return f"its optimizer's group {index} has another {key} than this run's"
        parameters.update(zip(group["params"], mine["params"], strict=True))
    states = saved["state"]
    if not isinstance(states, Mapping) or not set(states) <= set(parameters):
        return "its optimizer state names parameters this model lacks"
    for key, entry in states.items():
        if not isinstance(entry, Mapping) or set(entry) != {"step", "exp_avg", "exp_avg_sq"}:
            return f"its optimizer state of parameter {key} is malformed"
        parameter = parameters[key]
        for name in ("exp_avg", "exp_avg_sq"):
            value = entry[name]
            if (
                not isinstance(value, torch.Tensor)
                or value.shape != parameter.shape
                or value.dtype != parameter.dtype
            ):
                return f"its optimizer's {name} of parameter {key} does not fit the model"
            if not _is_finite_tensor(value):
                return f"its optimizer's {name} of parameter {key} holds NaN or infinite values"
        if bool((entry["exp_avg_sq"] < 0).any()):
            return f"its optimizer's exp_avg_sq of parameter {key} is negative"
        count = entry["step"]
        if (
            not isinstance(count, torch.Tensor)
            or count.numel() != 1
            or not count.is_floating_point()
            or count.item() != step
        ):
            return f"its optimizer's step count of parameter {key} is not step {step}"
    return None


def _schedule_problem(saved: Any, scheduler: Any, step: int) -> str | None:
    """Why `saved` is not this run's learning-rate schedule after `step` steps: the fields of a
    fresh schedule, of the same types and lengths, at `step`, from this run's base rates, with
    finite last rates, one per parameter group."""
    own = scheduler.state_dict()
    if not isinstance(saved, dict) or saved.keys() != own.keys():
        return "its learning-rate schedule is malformed"
    if not _is_int(saved["last_epoch"]) or saved["last_epoch"] != step:
        return f"its learning-rate schedule is not at step {step}"
    count = saved.get("_step_count", step + 1)  # torch counts the first call as one step
    if not _is_int(count) or count != step + 1:
        return f"its learning-rate schedule's step count is not {step + 1}"
    if not _same_value(saved["base_lrs"], own["base_lrs"]):
        return "its learning-rate schedule's base rates are not this run's"
    groups = len(own["base_lrs"])
    if "_last_lr" in own and not _finite_floats(saved["_last_lr"], groups):
        return f"its learning-rate schedule's last rates are not {groups} finite numbers"
    for key in own.keys() - {"last_epoch", "_step_count", "base_lrs", "_last_lr"}:
        if type(saved[key]) is not type(own[key]) or (
            not isinstance(own[key], bool | int | float) and not _same_value(saved[key], own[key])
        ):
            return f"its learning-rate schedule's {key} is not this run's"
    return None


def _restore(state, trainable, optimizer, scheduler) -> tuple[int, list[float]]:
    """Load a checked state (`check_state`) into the model, optimizer, schedule and RNG."""
    try:
        trainable.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
    except Exception as error:  # torch raises many types for a state it cannot take
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelFileError(
            f"{state.get('path', STATE_FILE)} cannot be restored: {first}"
        ) from error
    return int(state["step"]), [float(value) for value in state["losses"].tolist()]


# ---- evaluation and saving ----


@torch.no_grad()
def predict_logits(model: torch.nn.Module, batcher: Batcher) -> np.ndarray:
    """Logits for every example, batches sorted by length so padding stays short."""
    model.eval()
    data = batcher.data
    order = sorted(range(len(data)), key=lambda i: len(data.features[i]["input_ids"]))
    logits = np.zeros((len(data), data.task.num_labels), dtype=np.float32)
    for start in range(0, len(order), EVAL_BATCH_SIZE):
        indices = order[start : start + EVAL_BATCH_SIZE]
        logits[indices] = model(**batcher(indices, with_labels=False)).logits.numpy()
    return logits


def evaluate(model: torch.nn.Module, batcher: Batcher) -> dict[str, float]:
    """The task's dev metrics (all of them, headline first as the task table orders them)."""
    task = batcher.data.task
    predictions = predictions_from_logits(task, predict_logits(model, batcher))
    return compute_metrics(task, predictions, list(batcher.data.labels))


def save_checkpoint(model, tokenizer, task: GlueTask, directory: Path, max_length: int) -> None:
    """A Hugging Face checkpoint: safetensors, config with the label map, tokenizer."""
    model.config.finetuning_task = task.name
    model.config.architectures = ["BertForSequenceClassification"]
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(str(directory))


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (a shared 2-core box, or one Ray trial per CPU)."""
    if threads is not None:
        if threads <= 0:
            raise UsageError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


__all__ = [
    "Batcher",
    "TaskData",
    "TrainLog",
    "TrainSettings",
    "default_loss",
    "evaluate",
    "latest_checkpoint",
    "load_classifier",
    "make_optimizer",
    "predict_logits",
    "save_checkpoint",
    "set_threads",
    "steps_per_epoch",
    "task_head_settings",
    "tokenize",
    "train",
    "training_order",
]
