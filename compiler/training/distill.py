"""`distill_model`: task-specific knowledge distillation from a fine-tuned teacher into a student.

The loss is Hinton et al.'s, as Well-Read Students (Turc et al., 2019) use it for task
distillation: the temperature-scaled KL divergence between the teacher's and the student's soft
predictions (times T², so its gradients keep their scale), mixed with the hard-label loss by
`alpha`; for STS-B's single regression output, the MSE to the teacher's score. Optionally,
TinyBERT's (Jiao et al., 2020) intermediate losses: the MSE between the student's hidden states,
through a learned linear projection (TinyBERT's `fit_dense`) where the widths differ, and the
teacher's, and the MSE between their attention maps, with the uniform layer mapping
g(m) = m * N / M (student layer m learns from teacher layer g(m); embeddings from embeddings).

The student starts from any BERT checkpoint of the supported families, optionally with only
`student_layers` of its layers kept (uniformly, as `finetune --keep-layers`). Without
intermediate losses the teacher's logits are computed once over the training sample (eval mode,
as they would be on the fly) and reused every epoch. `compare_alone` also fine-tunes the same
student without a teacher on the same budget, so the report holds both dev scores.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bertc.compiler.core.errors import UsageError
from bertc.compiler.core.files import check_checkpoints
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.training import loop as training
from bertc.compiler.training.finetune import (
    FinetuneOptions,
    PreparedRun,
    check_options,
    checkpoint_dir_for,
    finetune_model,
    prepare_run,
    save_output,
    train_settings,
    training_report,
)

REPORT_FILE = "distill.json"


@dataclass(frozen=True)
class DistillOptions(FinetuneOptions):
    """`bertc finetune`'s options (keep_layers is `--student-layers`) plus the teacher's losses."""

    alpha: float = 0.5  # weight of the teacher's soft loss; 1 - alpha on the hard labels
    temperature: float = 2.0
    hidden_weight: float = 0.0
    attention_weight: float = 0.0
    compare_alone: bool = False

    @property
    def intermediate(self) -> bool:
        return self.hidden_weight > 0 or self.attention_weight > 0


@dataclass(frozen=True)
class DistillResult:
    out_dir: Path
    task: str
    headline_metric: str
    dev_metrics: Mapping[str, float]
    teacher_dev_metrics: Mapping[str, float]
    alone_dev_metrics: Mapping[str, float] | None
    steps: int
    wall_time_s: float
    report: Mapping[str, Any]


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """TinyBERT's uniform mapping: student layer m (1-based) learns from teacher layer m*N/M."""
    if teacher_layers % student_layers:
        raise UsageError(
            f"a uniform layer mapping needs the teacher's {teacher_layers} layers to be a "
            f"multiple of the student's {student_layers}; drop --hidden-weight/--attention-weight"
        )
    step = teacher_layers // student_layers
    return [m * step for m in range(1, student_layers + 1)]


def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher_T || student_T) * T² for classes; MSE to the teacher's score for regression."""
    if student.shape[-1] == 1:
        return F.mse_loss(student, teacher)
    return F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.softmax(teacher / temperature, dim=-1),
        reduction="batchmean",
    ) * (temperature**2)


def _masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the positions `mask` keeps (broadcast over the trailing dims)."""
    mask = mask.to(student.dtype).expand_as(student)
    return ((student - teacher) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)


class Distiller:
    """The distillation loss for `training.train`, and the projections it learns."""

    def __init__(
        self,
        student: torch.nn.Module,
        teacher: torch.nn.Module,
        options: DistillOptions,
        cached_teacher_logits: torch.Tensor | None,
    ) -> None:
        self.student = student
        self.teacher = teacher
        self.options = options
        self.cached = cached_teacher_logits
        s_config, t_config = student.config, teacher.config
        self.mapping = (
            layer_map(s_config.num_hidden_layers, t_config.num_hidden_layers)
            if options.intermediate
            else []
        )
        if options.attention_weight > 0 and (
            s_config.num_attention_heads != t_config.num_attention_heads
        ):
            raise UsageError(
                f"attention matching needs equal head counts (student "
                f"{s_config.num_attention_heads}, teacher {t_config.num_attention_heads})"
            )
        width_differs = s_config.hidden_size != t_config.hidden_size
        # TinyBERT's fit_dense: one projection per matched hidden state (embeddings + layers).
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(s_config.hidden_size, t_config.hidden_size)
            if options.hidden_weight > 0 and width_differs
            else torch.nn.Identity()
            for _ in range(len(self.mapping) + 1 if options.hidden_weight > 0 else 0)
        )
        self.trainable = torch.nn.ModuleDict({"student": student, "projections": self.projections})

    def __call__(
        self, model: torch.nn.Module, batch: training.Batch, indices: Sequence[int]
    ) -> torch.Tensor:
        options = self.options
        intermediate = options.intermediate
        outputs = model(
            **batch,
            output_hidden_states=options.hidden_weight > 0,
            output_attentions=options.attention_weight > 0,
        )
        if self.cached is not None:
            teacher_logits = self.cached[list(indices)]
            teacher_outputs = None
        else:
            inputs = {key: value for key, value in batch.items() if key != "labels"}
            with torch.no_grad():
                teacher_outputs = self.teacher(
                    **inputs,
                    output_hidden_states=options.hidden_weight > 0,
                    output_attentions=options.attention_weight > 0,
                )
            teacher_logits = teacher_outputs.logits
        loss = options.alpha * soft_loss(outputs.logits, teacher_logits, options.temperature)
        if options.alpha < 1:
            loss = loss + (1 - options.alpha) * outputs.loss
        if intermediate and teacher_outputs is not None:
            loss = loss + self._intermediate_loss(outputs, teacher_outputs, batch["attention_mask"])
        return loss

    def _intermediate_loss(self, student, teacher, attention_mask: torch.Tensor) -> torch.Tensor:
        options = self.options
        total = torch.zeros(())
        if options.hidden_weight > 0:
            tokens = attention_mask[:, :, None]
            pairs = [(0, 0), *((m + 1, t) for m, t in enumerate(self.mapping))]
            hidden = sum(
                _masked_mse(
                    self.projections[s](student.hidden_states[s]), teacher.hidden_states[t], tokens
                )
                for s, t in pairs
            )
            total = total + options.hidden_weight * hidden
        if options.attention_weight > 0:
            pair_mask = (attention_mask[:, None, :, None] * attention_mask[:, None, None, :]).bool()
            attention = sum(
                _masked_mse(student.attentions[m], teacher.attentions[t - 1], pair_mask)
                for m, t in enumerate(self.mapping)
            )
            total = total + options.attention_weight * attention
        return total


def load_teacher(source: str, run: PreparedRun, allow_pickle: bool) -> torch.nn.Module:
    """The teacher: a classifier fine-tuned on the task, with the student's vocabulary."""
    teacher, tokenizer, directory, head_is_new, _ = training.load_classifier(
        source, run.task, allow_pickle
    )
    if head_is_new:
        raise UsageError(
            f"the teacher {directory} has no {run.task.name} head: fine-tune it first "
            "(bertc finetune) and pass that checkpoint as --teacher"
        )
    if tokenizer.get_vocab() != run.tokenizer.get_vocab():
        raise UsageError(
            f"teacher {directory} and student {run.directory} use different vocabularies; "
            "distillation here needs one tokenization for both"
        )
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def distill_model(
    teacher_source: str,
    student_source: str,
    out_dir: Path,
    options: DistillOptions,
    progress: Progress = silent,
) -> DistillResult:
    """Distil the teacher into the student on the task's train split; save the student."""
    run_started = time.perf_counter()
    out_dir = Path(out_dir)
    check_options(options, out_dir, [teacher_source, student_source])
    check_checkpoints(out_dir, [teacher_source, student_source])
    _check_distillation(options)
    run = prepare_run(student_source, options, progress)
    progress("load teacher")
    teacher = load_teacher(teacher_source, run, options.allow_pickle)
    progress("evaluate teacher")
    teacher_metrics = training.evaluate(teacher, run.dev)
    cached = None
    if not options.intermediate:
        progress("teacher logits")
        cached = torch.from_numpy(training.predict_logits(teacher, run.train))
    distiller = Distiller(run.model, teacher, options, cached)
    settings = train_settings(
        student_source,
        options,
        run,
        teacher=str(teacher_source),
        alpha=options.alpha,
        temperature=options.temperature,
        hidden_weight=options.hidden_weight,
        attention_weight=options.attention_weight,
    )
    checkpoints = checkpoint_dir_for(out_dir)
    progress("distil")
    log = training.train(
        run.model,
        run.train,
        settings,
        loss_function=distiller,
        trainable=distiller.trainable,
        checkpoint_dir=checkpoints,
        resume=options.resume,
        progress=progress,
        progress_bar=options.progress_bar,
    )
    progress("evaluate student")
    metrics = training.evaluate(run.model, run.dev)
    alone = (
        _fine_tune_alone(student_source, out_dir, options, progress)
        if options.compare_alone
        else None
    )
    report = {
        "teacher": {
            "id": str(teacher_source),
            "dev_metrics": teacher_metrics,
            "layers": teacher.config.num_hidden_layers,
            "hidden_size": teacher.config.hidden_size,
        },
        "student": {
            "id": str(student_source),
            "path": str(run.directory.resolve()),
            "layers": run.model.config.num_hidden_layers,
            "hidden_size": run.model.config.hidden_size,
        },
        "task": run.task.name,
        "data_dir": str(options.data_dir) if options.data_dir else None,
        "distillation": {
            "alpha": options.alpha,
            "temperature": options.temperature,
            "hidden_weight": options.hidden_weight,
            "attention_weight": options.attention_weight,
            "layer_map": distiller.mapping,
            "projections": sum(
                isinstance(module, torch.nn.Linear) for module in distiller.projections
            ),
            "teacher_logits_cached": cached is not None,
        },
        "training": training_report(options, run, settings, log),
        "dev_metrics": metrics,
        "alone": alone,
        "headline_metric": run.task.headline_metric,
        "dev_examples": len(run.dev.data),
        "total_wall_time_s": round(time.perf_counter() - run_started, 2),
        "notes": list(run.notes),
    }
    save_output(run, out_dir, REPORT_FILE, report, options.overwrite, progress)
    if not options.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return DistillResult(
        out_dir=out_dir,
        task=run.task.name,
        headline_metric=run.task.headline_metric,
        dev_metrics=metrics,
        teacher_dev_metrics=teacher_metrics,
        alone_dev_metrics=alone["dev_metrics"] if alone else None,
        steps=run.steps,
        wall_time_s=round(log.wall_time_s, 2),
        report=report,
    )


def _fine_tune_alone(
    student_source: str, out_dir: Path, options: DistillOptions, progress: Progress
) -> dict[str, Any]:
    """The same student, start, data, steps and seed, trained on the hard labels alone."""
    progress("fine-tune the student alone (same budget)")
    shared = {field.name: getattr(options, field.name) for field in fields(FinetuneOptions)}
    alone_options = FinetuneOptions(
        **{**shared, "resume": False, "keep_checkpoints": False, "overwrite": False}
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.alone-", dir=out_dir.parent) as tmp:
        result = finetune_model(student_source, Path(tmp) / "alone", alone_options, progress)
    return {
        "dev_metrics": dict(result.dev_metrics),
        "steps": result.steps,
        "wall_time_s": result.wall_time_s,
        "training": result.report["training"],
    }


def _check_distillation(options: DistillOptions) -> None:
    """The distillation knobs' UsageErrors; `check_options` has checked the rest."""
    if not 0 <= options.alpha <= 1:
        raise UsageError(f"--alpha must be within [0, 1], got {options.alpha}")
    if not (options.temperature > 0 and math.isfinite(options.temperature)):
        raise UsageError(f"--temperature must be positive, got {options.temperature}")
    for name in ("hidden_weight", "attention_weight"):
        value = getattr(options, name)
        if not (value >= 0 and math.isfinite(value)):
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {value}")


__all__ = [
    "DistillOptions",
    "DistillResult",
    "Distiller",
    "distill_model",
    "layer_map",
    "load_teacher",
    "soft_loss",
]
