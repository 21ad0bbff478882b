"""`prune_model`: magnitude-prune a BERT classifier's encoder, fine-tune with the mask held, save.

The result is an ordinary Hugging Face checkpoint (safetensors, tokenizer, config) whose pruned
encoder weights are exact zeros, so `compile_model` takes it like any other, plus `prune.json`
with the pattern, the sparsity measured from the saved weights and the dev metrics before
pruning, after pruning and after fine-tuning.

Masks are plain boolean tensors, multiplied into the weights once and again after every
optimizer step: torch.nn.utils.prune would leave `weight_orig` + `weight_mask` reparametrisation
in the module, which save_pretrained would write out as foreign keys. Adam's update follows the
gradient, which is not zero at a pruned weight, so without the re-apply the zeros would move.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from bertc.calibration import (
    Example,
    GlueTask,
    get_task,
    load_examples,
    sample_examples,
)
from bertc.compiler.core.errors import OutputExistsError, UsageError
from bertc.compiler.core.files import move_into_place
from bertc.compiler.loading import DEFAULT_MAX_SEQUENCE_LENGTH
from bertc.compiler.training import loop as training
from bertc.compiler.training.loop import (
    MAX_GRAD_NORM,
    WARMUP_FRACTION,
    WEIGHT_DECAY,
    load_classifier,
    save_checkpoint,
)

Progress = Callable[[str], None]

REPORT_FILE = "prune.json"
PATTERN_CHOICES = ("1:2", "2:4", "4:8", "unstructured:0.8", "block:4x1")
BLOCK_SPARSITY = 0.5  # block patterns zero the lower-scoring half of the blocks of each matrix
# Encoder Linear layers of BertForSequenceClassification: attention q/k/v/output, FFN in/out.
_ENCODER_LINEAR = re.compile(r"^bert\.encoder\.layer\.\d+\.")


@dataclass(frozen=True)
class PrunePattern:
    """A sparsity pattern: `n_of_m` (keep n of every m inputs), `unstructured` or `block`."""

    text: str
    kind: str
    n: int = 0
    m: int = 0
    sparsity: float = 0.0
    block_rows: int = 0
    block_cols: int = 0

    def describe(self) -> dict[str, Any]:
        """The pattern and how its mask is chosen, for prune.json."""
        rules = {
            "n_of_m": f"in every {self.m} consecutive input weights of a row, keep the "
            f"{self.n} largest |w|",
            "unstructured": f"per matrix, zero the {self.sparsity:.0%} smallest |w| "
            "(ties broken by position)",
            "block": f"per matrix, score blocks of {self.block_rows} output rows x "
            f"{self.block_cols} input columns by L2 norm and zero the lower "
            f"{BLOCK_SPARSITY:.0%}",
        }
        return {"pattern": self.text, "kind": self.kind, "rule": rules[self.kind]}


@dataclass(frozen=True)
class PruneOptions:
    """Everything `bertc prune` takes besides the model and the output directory."""

    pattern: str
    task: str
    data_dir: Path | None = None
    max_steps: int | None = None
    train_samples: int | None = None
    batch_size: int = 32
    learning_rate: float = 5e-5
    seed: int = 0
    max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
    log_every: int = 20
    allow_pickle: bool = False
    overwrite: bool = False


@dataclass(frozen=True)
class PruneResult:
    out_dir: Path
    pattern: PrunePattern
    steps: int
    train_samples: int
    wall_time_s: float  # fine-tuning alone; prune.json also holds the whole run's
    matrix_sparsity: Mapping[str, float]
    encoder_sparsity: float
    dev_metrics: Mapping[str, Mapping[str, float] | None]
    notes: tuple[str, ...]
    report: Mapping[str, Any]


def _silent(message: str) -> None:
    del message


def parse_pattern(text: str) -> PrunePattern:
    """`N:M` (N < M), `unstructured:S` (0 < S < 1) or `block:RxC`; anything else is a UsageError."""
    spelled = text.strip().lower()
    if match := re.fullmatch(r"(\d+):(\d+)", spelled):
        n, m = int(match[1]), int(match[2])
        if 0 < n < m:
            return PrunePattern(spelled, "n_of_m", n=n, m=m, sparsity=1 - n / m)
    elif match := re.fullmatch(r"unstructured:([0-9.]+)", spelled):
        with contextlib.suppress(ValueError):  # "0.8.1" falls through to the UsageError
            sparsity = float(match[1])
            if 0 < sparsity < 1:
                return PrunePattern(spelled, "unstructured", sparsity=sparsity)
    elif match := re.fullmatch(r"block:(\d+)x(\d+)", spelled):
        rows, cols = int(match[1]), int(match[2])
        if rows > 0 and cols > 0 and rows * cols > 1:
            return PrunePattern(
                spelled, "block", sparsity=BLOCK_SPARSITY, block_rows=rows, block_cols=cols
            )
    raise UsageError(
        f"unknown sparsity pattern {text!r}; use N:M with N < M (e.g. 1:2, 2:4, 4:8), "
        "unstructured:S with 0 < S < 1 (e.g. unstructured:0.8) or block:RxC (e.g. block:4x1)"
    )


# ---- masks: one function per pattern, each from a weight [out, in] to a boolean keep-mask ----


def n_of_m_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n largest |w| of every m consecutive inputs of each row (ties: lower index)."""
    rows, columns = weight.shape
    if columns % m:
        raise UsageError(f"{n}:{m} needs an input width divisible by {m}, got {columns}")
    groups = weight.detach().abs().reshape(rows, columns // m, m)
    order = torch.argsort(groups, dim=-1, descending=True, stable=True)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(-1, order[..., :n], True)
    return mask.reshape(rows, columns)


def unstructured_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Per matrix, zero the round(sparsity * numel) smallest |w| (ties: lower flat index)."""
    flat = weight.detach().abs().flatten()
    pruned = round(sparsity * flat.numel())
    mask = torch.ones_like(flat, dtype=torch.bool)
    mask[torch.argsort(flat, stable=True)[:pruned]] = False
    return mask.reshape(weight.shape)


def block_mask(weight: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Zero the lower-L2 half of the (rows x cols) blocks of output rows x input columns."""
    out_dim, in_dim = weight.shape
    if out_dim % rows or in_dim % cols:
        raise UsageError(
            f"block:{rows}x{cols} needs a weight shape divisible by ({rows}, {cols}), "
            f"got ({out_dim}, {in_dim})"
        )
    blocks = weight.detach().reshape(out_dim // rows, rows, in_dim // cols, cols)
    scores = blocks.pow(2).sum(dim=(1, 3)).sqrt().flatten()
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[torch.argsort(scores, stable=True)[: round(BLOCK_SPARSITY * scores.numel())]] = False
    keep = keep.reshape(out_dim // rows, 1, in_dim // cols, 1).expand_as(blocks)
    return keep.reshape(out_dim, in_dim)


def compute_mask(weight: torch.Tensor, pattern: PrunePattern) -> torch.Tensor:
    if pattern.kind == "n_of_m":
        return n_of_m_mask(weight, pattern.n, pattern.m)
    if pattern.kind == "unstructured":
        return unstructured_mask(weight, pattern.sparsity)
    return block_mask(weight, pattern.block_rows, pattern.block_cols)


def encoder_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The encoder's Linear layers by module name, sorted; not embeddings, pooler or head."""
    return {
        name: module
        for name, module in sorted(model.named_modules())
        if isinstance(module, torch.nn.Linear) and _ENCODER_LINEAR.match(name)
    }


def compute_masks(model: torch.nn.Module, pattern: PrunePattern) -> dict[str, torch.Tensor]:
    """One keep-mask per encoder Linear weight, keyed by the weight's parameter name."""
    return {
        f"{name}.weight": compute_mask(module.weight, pattern)
        for name, module in encoder_linears(model).items()
    }


@torch.no_grad()
def apply_masks(model: torch.nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero every pruned weight in place (after pruning and after each optimizer step)."""
    parameters = dict(model.named_parameters())
    for name, mask in masks.items():
        parameters[name].mul_(mask)


# ---- training and evaluation (the shared loop of compiler/training.py) ----


def fine_tune(
    model: torch.nn.Module,
    tokenizer,
    task: GlueTask,
    examples: Sequence[Example],
    masks: Mapping[str, torch.Tensor],
    options: PruneOptions,
    steps: int,
    progress: Progress = _silent,
) -> list[float]:
    """Train with the masks held: the pruned weights are re-zeroed after every step.

    Returns the loss of each step.
    """
    max_length = min(options.max_sequence_length, model.config.max_position_embeddings)
    batcher = training.Batcher(tokenizer, training.tokenize(tokenizer, task, examples, max_length))
    settings = training.TrainSettings(
        steps=steps,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        seed=options.seed,
        log_every=options.log_every,
    )
    log = training.train(
        model,
        batcher,
        settings,
        # Looked up at call time, so a test can swap apply_masks out.
        after_step=lambda: apply_masks(model, masks),
        progress=progress,
    )
    return list(log.losses)


def evaluate(
    model: torch.nn.Module,
    tokenizer,
    task: GlueTask,
    examples: Sequence[Example],
    max_length: int,
) -> dict[str, float]:
    """The task's dev metrics."""
    data = training.tokenize(tokenizer, task, examples, max_length)
    return training.evaluate(model, training.Batcher(tokenizer, data))


# ---- saving ----


def matrix_sparsity(weights: Mapping[str, torch.Tensor], names: Sequence[str]) -> dict[str, float]:
    """Fraction of exact zeros in each named tensor."""
    return {
        name: round(float((weights[name] == 0).sum()) / weights[name].numel(), 6)
        for name in sorted(names)
    }


# ---- the entry point ----


def prune_model(
    source: str, out_dir: Path, options: PruneOptions, progress: Progress = _silent
) -> PruneResult:
    """Load, score dense, prune, score, fine-tune with the mask held, score, save atomically."""
    run_started = time.perf_counter()
    out_dir = Path(out_dir)
    pattern = parse_pattern(options.pattern)
    task = get_task(options.task)
    _check_options(options, out_dir)
    progress("load")
    torch.manual_seed(options.seed)  # a fresh head, dropout and nothing else draw from it
    model, tokenizer, directory, head_is_new, notes = load_classifier(
        source, task, options.allow_pickle
    )
    max_length = min(options.max_sequence_length, model.config.max_position_embeddings)
    train = load_examples(task, "train", options.data_dir)
    dev = load_examples(task, "dev", options.data_dir)
    train = sample_examples(train, options.train_samples or len(train), seed=options.seed)
    steps = options.max_steps or math.ceil(len(train) / options.batch_size)
    metrics: dict[str, dict[str, float] | None] = {"dense": None}
    if not head_is_new:
        progress("evaluate dense")
        metrics["dense"] = evaluate(model, tokenizer, task, dev, max_length)
    progress("prune")
    masks = compute_masks(model, pattern)
    apply_masks(model, masks)
    progress("evaluate pruned")
    metrics["pruned_before_finetune"] = evaluate(model, tokenizer, task, dev, max_length)
    started = time.perf_counter()
    losses = fine_tune(model, tokenizer, task, train, masks, options, steps, progress)
    train_seconds = time.perf_counter() - started
    progress("evaluate fine-tuned")
    metrics["pruned_after_finetune"] = evaluate(model, tokenizer, task, dev, max_length)
    progress("save")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        save_checkpoint(model, tokenizer, task, staging, max_length)
        from safetensors.torch import load_file

        saved = load_file(str(staging / "model.safetensors"))
        sparsity = matrix_sparsity(saved, list(masks))
        zeros = sum(float((saved[name] == 0).sum()) for name in masks)
        total = sum(saved[name].numel() for name in masks)
        report = {
            "source": {"id": source, "path": str(directory.resolve())},
            "task": task.name,
            "data_dir": str(options.data_dir) if options.data_dir else None,
            "pattern": pattern.describe(),
            "pruned_matrices": len(masks),
            "encoder_sparsity": round(zeros / total, 6),
            "matrix_sparsity": sparsity,
            "training": {
                "steps": steps,
                "train_samples": len(train),
                "batch_size": options.batch_size,
                "learning_rate": options.learning_rate,
                "warmup_steps": math.ceil(WARMUP_FRACTION * steps),
                "weight_decay": WEIGHT_DECAY,
                "max_grad_norm": MAX_GRAD_NORM,
                "seed": options.seed,
                "max_sequence_length": max_length,
                "wall_time_s": round(train_seconds, 2),
                "seconds_per_step": round(train_seconds / steps, 4),
                "first_loss": round(losses[0], 6),
                "last_loss": round(sum(losses[-20:]) / len(losses[-20:]), 6),
            },
            "dev_metrics": metrics,
            "dev_examples": len(dev),
            "total_wall_time_s": round(time.perf_counter() - run_started, 2),
            "head_freshly_initialised": head_is_new,
            "notes": notes,
        }
        (staging / REPORT_FILE).write_text(
            json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        move_into_place(staging, out_dir, options.overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PruneResult(
        out_dir=out_dir,
        pattern=pattern,
        steps=steps,
        train_samples=len(train),
        wall_time_s=round(train_seconds, 2),
        matrix_sparsity=sparsity,
        encoder_sparsity=report["encoder_sparsity"],
        dev_metrics=metrics,
        notes=tuple(notes),
        report=report,
    )


def _check_options(options: PruneOptions, out_dir: Path) -> None:
    if out_dir.exists() and not options.overwrite:
        raise OutputExistsError(
            f"{out_dir} already exists; choose another --out or pass --overwrite"
        )
    for name in ("max_steps", "train_samples"):
        value = getattr(options, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if options.batch_size <= 0 or options.log_every <= 0:
        raise UsageError("--batch-size must be at least 1")
    if not options.learning_rate > 0:
        raise UsageError(f"--learning-rate must be positive, got {options.learning_rate}")
    if options.max_sequence_length < 8:
        raise UsageError("--max-sequence-length must be at least 8")


__all__ = [
    "PATTERN_CHOICES",
    "PruneOptions",
    "PrunePattern",
    "PruneResult",
    "apply_masks",
    "block_mask",
    "compute_masks",
    "encoder_linears",
    "evaluate",
    "fine_tune",
    "load_classifier",
    "n_of_m_mask",
    "parse_pattern",
    "prune_model",
    "unstructured_mask",
]
