"""Data for calibration and verification: GLUE tasks, readers, sampling, metrics."""

from bertc.calibration.metrics import METRICS, compute_metrics, predictions_from_logits
from bertc.calibration.readers import (
    Example,
    load_examples,
    read_glue_tsv,
    read_hf_glue,
    single_sentences,
    split_path,
)
from bertc.calibration.sampling import sample_examples
from bertc.calibration.tasks import TASKS, GlueTask, HfGlueSource, get_task, resolve_task

__all__ = [
    "METRICS",
    "TASKS",
    "Example",
    "GlueTask",
    "HfGlueSource",
    "compute_metrics",
    "get_task",
    "load_examples",
    "predictions_from_logits",
    "read_glue_tsv",
    "read_hf_glue",
    "resolve_task",
    "sample_examples",
    "single_sentences",
    "split_path",
]
