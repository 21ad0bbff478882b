"""Task training: the checkpoints that `compile` consumes, made from a BERT and a GLUE task.

- `loop`: the one seeded training loop (tokenize once, pad per batch, AdamW with warmup and
  decay, a resumable checkpoint each epoch), the classifier loader, evaluation and saving.
- `finetune`: `finetune_model`, and the run helpers distill and prune are built on
  (`prepare_run`, `train_settings`, `training_report`, `save_output`, `check_options`).
- `distill`: `distill_model`, a fine-tuned teacher into a student (Hinton's soft loss, optionally
  TinyBERT's hidden-state and attention losses).
- `prune`: `prune_model`, magnitude pruning of the encoder's Linear layers (N:M, unstructured,
  block), fine-tuned with the masks held.
- `grid`: `run_grid`, the BERT miniatures' fine-tuning grid, in-process or on Ray Tune.

The entry points are re-exported lazily (PEP 562): importing this package imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module of this package that defines it.
_ENTRY_POINTS = {
    "FinetuneOptions": "finetune",
    "finetune_model": "finetune",
    "DistillOptions": "distill",
    "distill_model": "distill",
    "PruneOptions": "prune",
    "prune_model": "prune",
    "GridOptions": "grid",
    "run_grid": "grid",
}

__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
