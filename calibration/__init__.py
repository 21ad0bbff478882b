"""Data for calibration and verification: GLUE tasks, readers, sampling, metrics.

The names resolve lazily (PEP 562): the readers import pandas and the metrics scipy and
scikit-learn, seconds in all, and the CLI checks a `--task` (`bertc.calibration.tasks`) while it
parses the arguments, before any of them is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the submodule that defines it.
_NAMES = {
    "METRICS": "metrics",
    "compute_metrics": "metrics",
    "predictions_from_logits": "metrics",
    "Example": "readers",
    "load_examples": "readers",
    "read_glue_tsv": "readers",
    "read_hf_glue": "readers",
    "single_sentences": "readers",
    "split_path": "readers",
    "sample_examples": "sampling",
    "TASKS": "tasks",
    "GlueTask": "tasks",
    "HfGlueSource": "tasks",
    "get_task": "tasks",
    "resolve_task": "tasks",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
