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
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.training import loop as training
from bertc.compiler.training.finetune import (
    PreparedRun,
    check_options,
    prepare_run,
    save_output,
    train_settings,
    training_report,
)

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
    max_sequence_length: int | None = None  # None: 128, capped by the position table
    log_every: int = 20
    allow_pickle: bool = False
    overwrite: bool = False
    # finetune's knobs that prune does not offer, as `prepare_run` and `check_options` read them.
    epochs: ClassVar[int] = 1  # one pass over the (sampled) train split unless --max-steps
    keep_layers: ClassVar[int | None] = None
    threads: ClassVar[int | None] = None


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


# ---- training (the shared loop of compiler/training/loop.py) ----


def fine_tune(
    run: PreparedRun,
    masks: Mapping[str, torch.Tensor],
    settings: training.TrainSettings,
    progress: Progress = silent,
) -> training.TrainLog:
    """Train with the masks held: the pruned weights are re-zeroed after every step."""
    return training.train(
        run.model,
        run.train,
        settings,
        # Looked up at call time, so a test can swap apply_masks out.
        after_step=lambda: apply_masks(run.model, masks),
        progress=progress,
    )


# ---- saving ----


def matrix_sparsity(weights: Mapping[str, torch.Tensor], names: Sequence[str]) -> dict[str, float]:
    """Fraction of exact zeros in each named tensor."""
    return {
        name: round(float((weights[name] == 0).sum()) / weights[name].numel(), 6)
        for name in sorted(names)
    }


# ---- the entry point ----


def prune_model(
    source: str, out_dir: Path, options: PruneOptions, progress: Progress = silent
) -> PruneResult:
    """Load, score dense, prune, score, fine-tune with the mask held, score, save atomically."""
    run_started = time.perf_counter()
    out_dir = Path(out_dir)
    pattern = parse_pattern(options.pattern)
    check_options(options, out_dir, [source])
    run = prepare_run(source, options, progress)  # seeds torch: a fresh head, then dropout
    metrics: dict[str, dict[str, float] | None] = {"dense": None}
    if not run.head_is_new:
        progress("evaluate dense")
        metrics["dense"] = training.evaluate(run.model, run.dev)
    progress("prune")
    masks = compute_masks(run.model, pattern)
    apply_masks(run.model, masks)
    progress("evaluate pruned")
    metrics["pruned_before_finetune"] = training.evaluate(run.model, run.dev)
    settings = train_settings(source, options, run)
    log = fine_tune(run, masks, settings, progress)
    progress("evaluate fine-tuned")
    metrics["pruned_after_finetune"] = training.evaluate(run.model, run.dev)

    def report(staged: Path) -> dict[str, Any]:
        """prune.json, with the sparsity measured from the weights as written."""
        from safetensors.torch import load_file

        saved = load_file(str(staged / "model.safetensors"))
        zeros = sum(float((saved[name] == 0).sum()) for name in masks)
        total = sum(saved[name].numel() for name in masks)
        return {
            "source": {"id": str(source), "path": str(run.directory.resolve())},
            "task": run.task.name,
            "data_dir": str(options.data_dir) if options.data_dir else None,
            "pattern": pattern.describe(),
            "pruned_matrices": len(masks),
            "encoder_sparsity": round(zeros / total, 6),
            "matrix_sparsity": matrix_sparsity(saved, list(masks)),
            "training": training_report(options, run, settings, log),
            "dev_metrics": metrics,
            "dev_examples": len(run.dev.data),
            "total_wall_time_s": round(time.perf_counter() - run_started, 2),
            "head_freshly_initialised": run.head_is_new,
            "notes": list(run.notes),
        }

    written = save_output(run, out_dir, REPORT_FILE, report, options.overwrite, progress)
    return PruneResult(
        out_dir=out_dir,
        pattern=pattern,
        steps=run.steps,
        train_samples=len(run.train.data),
        wall_time_s=round(log.wall_time_s, 2),
        matrix_sparsity=written["matrix_sparsity"],
        encoder_sparsity=written["encoder_sparsity"],
        dev_metrics=metrics,
        notes=run.notes,
        report=written,
    )


__all__ = [
    "PATTERN_CHOICES",
    "PruneOptions",
    "PrunePattern",
    "PruneResult",
    "apply_masks",
    "block_mask",
    "compute_masks",
    "encoder_linears",
    "fine_tune",
    "n_of_m_mask",
    "parse_pattern",
    "prune_model",
    "unstructured_mask",
]
