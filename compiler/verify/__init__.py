"""`verify_artifact`: does a compiled artifact still do its task as well as the fp32 model?

The artifact is checked against its manifest before anything runs, then the artifact (through
its own runtime) and the fp32 PyTorch reference score every dev example at batch 1 and real
length. The report gives each metric for both, the delta in points with a paired-bootstrap 95%
CI, how often the two predict alike, how far the logits moved, batch-1 latency and batched
throughput, size, and the machines involved; it is written into the artifact's reports folder
(outside the integrity check), and the gate then fails if the headline metric dropped too far.
A sentence encoder is scored on stsb: Spearman of the cosine of each pair's two embeddings, and
in place of agreement, the cosine between the artifact's and fp32's embedding of each sentence.

The modules, in the order a verify uses them:
    checks      preconditions: settings, the task fits the artifact and the reference
    reference   the fp32 PyTorch reference: which checkpoint, and its untimed run
    inputs      token ids or raw text, as the artifact takes them
    measure     the artifact's runtime: batch-1 latency, batched throughput, both models' logits
    statistics  paired bootstrap, metric deltas, prediction agreement, logit error
    gate        pass or fail on the headline metric's drop
    model       the frozen report records
    report      assembling the report and writing it into the artifact
    render      the report as a rich table, Markdown and JSON
    stage       `verify_artifact`, which runs all of the above

This package only re-exports the public names, lazily (PEP 562), so importing it is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module of this package that defines it.
_EXPORTS = {
    "Agreement": "model",
    "GateResult": "model",
    "Latency": "model",
    "MetricDelta": "model",
    "OutputError": "model",
    "RunEnvironment": "model",
    "VerifyReport": "model",
    "ENCODER_HEADLINE_METRIC": "checks",
    "ENCODER_TASK": "checks",
    "artifact_label_count": "checks",
    "is_encoder": "checks",
    "check_reference_fits": "checks",
    "check_settings": "checks",
    "check_task_fits": "checks",
    "task_labels": "checks",
    "DEFAULT_REFERENCE_THREADS": "reference",
    "SENTENCE_EMBEDDING": "reference",
    "compared_output_index": "reference",
    "load_reference": "reference",
    "reference_thread_count": "reference",
    "run_reference": "reference",
    "batch_padding": "inputs",
    "encode": "inputs",
    "load_tokenizer": "inputs",
    "takes_strings": "inputs",
    "texts": "inputs",
    "DEFAULT_BATCH_SIZE": "measure",
    "WARMUP_RUNS": "measure",
    "MeasuredOutputs": "measure",
    "TextRunner": "measure",
    "load_runner": "measure",
    "run_both": "measure",
    "runtime_settings": "measure",
    "CONFIDENCE": "statistics",
    "DEFAULT_BOOTSTRAP_SAMPLES": "statistics",
    "LISTED_DISAGREEMENTS": "statistics",
    "compare_metrics": "statistics",
    "embedding_agreement": "statistics",
    "pair_cosines": "statistics",
    "row_cosines": "statistics",
    "output_error": "statistics",
    "paired_bootstrap": "statistics",
    "prediction_agreement": "statistics",
    "DEFAULT_MAX_DROP": "gate",
    "apply_gate": "gate",
    "raise_if_gate_failed": "gate",
    "build_report": "report",
    "environment_notes": "report",
    "report_paths": "report",
    "run_environment": "report",
    "save_reports": "report",
    "write_reports": "report",
    "render_markdown": "render",
    "render_table": "render",
    "report_to_json": "render",
    "STAGE_LABELS": "stage",
    "verify_artifact": "stage",
    "Progress": "stage",
}
_MODULES = frozenset(_EXPORTS.values())

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the defining module on first use of a public name (or of a module by its name)."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _MODULES)
