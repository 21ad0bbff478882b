"""ONNX Runtime Mobile's pieces: the ORT-format conversion with its reduced-build operator config,
and the fused dynamic INT8 recipe's graph (transformer fusions, parity-gated, then quantized).

The ORT format is made the way onnxruntime's own converter makes it (a session that saves its
optimized graph with `session.save_model_format=ORT`, then `create_config_from_models`), with
one difference: the GELU, LayerNorm and MatMul-scale fusions that emit com.microsoft contrib ops
are disabled, since reduced builds have failed on such ops (onnxruntime #22761).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bertc.compiler.core.budget import SearchRequest
from bertc.compiler.core.errors import TargetBuildError
from bertc.compiler.core.graph import OnnxGraph
from bertc.compiler.core.summary import QuantizationSummary
from bertc.targets.ort.fusion import FusionReport, fuse_transformer
from bertc.targets.ort.quantize import quantize_fused_dynamic
from bertc.targets.ort.recipes import OrtRecipe
from bertc.targets.ort.search import SessionSettings, search_fused_dynamic

ORT_MODEL_FILE = "model.ort"
OPERATOR_CONFIG_FILE = "required_operators.config"
# Level-2 fusions whose products are com.microsoft contrib ops (onnxruntime 1.32 names).
CONTRIB_OP_FUSIONS = (
    "BiasGeluFusion",
    "GeluFusionL1",
    "GeluFusionL2",
    "FastGeluFusion",
    "SkipLayerNormFusion",
    "MatMulScaleFusion",
    "GemmActivationFusion",
    "AttentionFusion",
    "EmbedLayerNormFusion",
    "BiasSoftmaxFusion",
    "QuickGeluFusion",
    "MatMulIntegerToFloatFusion",
    "DynamicQuantizeMatMulFusion",
)
# What the fused dynamic recipe's graph runs as: its INT8 MatMuls fused, everything else as above.
DYNAMIC_INT8_FUSIONS = ("MatMulIntegerToFloatFusion", "DynamicQuantizeMatMulFusion")
FUSED_DYNAMIC_DISABLED = tuple(
    name for name in CONTRIB_OP_FUSIONS if name not in DYNAMIC_INT8_FUSIONS
)
# Token ids for the fusion parity check when no calibration sentences were given: low ids exist
# in every BERT vocabulary, and these lengths cover short, medium and long inputs.
SYNTHETIC_LENGTHS = (3, 17, 64)
SYNTHETIC_SEED = 0
# MiniLM-L6 SST-2: agreement with fp32 99.20% at batch 1, 98.39% in padded batches of 32.
BATCH_ONE_NOTE = (
    "dynamic INT8 takes one activation scale per call over the whole batch: run it one "
    "sentence at a time (padded batches change the logits)"
)
UNCALIBRATED_DYNAMIC_NOTE = (
    "dynamic INT8 without calibration sentences: no smoothing and no MatMul kept fp32 by "
    "measurement (pass --task and --data-dir for both)"
)
PARITY_SAMPLES = 32
# The optimization level the ORT-format conversion applies (onnxruntime.GraphOptimizationLevel).
ORT_FORMAT_LEVEL = "ORT_ENABLE_EXTENDED"


def convert_to_ort_format(
    onnx_path: Path,
    ort_path: Path,
    config_path: Path,
    custom_op_library: str | None = None,
    disabled_fusions: Sequence[str] = CONTRIB_OP_FUSIONS,
) -> tuple[str, ...]:
    """Write the ORT-format model and its reduced-build operator config; return the config lines.

    A graph with onnxruntime-extensions ops needs their library registered to load, as the
    converter's `--custom_op_library` does; the config then lists the `ai.onnx.contrib` ops too.
    """
    import onnxruntime
    from onnxruntime.tools.ort_format_model import create_config_from_models

    # Its logger is set to DEBUG when imported and logs an INFO line per config written.
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, ORT_FORMAT_LEVEL)
    options.optimized_model_filepath = str(ort_path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    if custom_op_library:
        options.register_custom_ops_library(custom_op_library)
    try:
        onnxruntime.InferenceSession(
            str(onnx_path),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(disabled_fusions),
        )
        create_config_from_models([ort_path], config_path, False)
    except Exception as error:  # onnxruntime raises its own Fail/RuntimeException types
        raise TargetBuildError(f"ORT-format conversion failed: {error}") from error
    # The converter writes the model's path, here a random staging directory, into a comment;
    # name the file alone so the same input gives the same bytes.
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(text.replace(f"# - {ort_path}\n", f"# - {ort_path.name}\n"), "utf-8")
    return operator_lines(config_path)


def operator_lines(config_path: Path) -> tuple[str, ...]:
    """`domain;opset;Op,Op` lines of a required_operators.config, without comments."""
    lines = config_path.read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line and not line.startswith("#"))


def fused_dynamic_onnx(
    graph: OnnxGraph,
    path: Path,
    recipe: OrtRecipe,
    calibration_inputs: Sequence[Mapping[str, np.ndarray]],
    work_dir: Path,
    attention_shape: tuple[int, int],
    search: SearchRequest | None = None,
) -> tuple[OnnxGraph, QuantizationSummary, FusionReport, dict[str, Any] | None]:
    """Fuse (parity-gated), then quantize with the sensitivity-chosen fp32 MatMuls, or (search)
    with those the accuracy-budget search chose (targets/ort/search.py); the last value is the
    manifest's `search` record (None without a search).

    attention_shape: (num_attention_heads, hidden_size) from the checkpoint's config (ORT 1.32
    cannot read them from a transformers-5 export).
    """
    heads, hidden = attention_shape
    fused, fusion = fuse_transformer(
        graph,
        work_dir / "fused.onnx",
        fusion_parity_samples(graph, calibration_inputs),
        heads,
        hidden,
    )
    if search is not None:
        session = SessionSettings(FUSED_DYNAMIC_DISABLED, ORT_FORMAT_LEVEL)
        quantized, summary, record = search_fused_dynamic(
            fused, path, recipe, calibration_inputs, work_dir, search, session
        )
        return quantized, summary, fusion, record
    quantized, summary = quantize_fused_dynamic(
        fused, path, recipe, calibration_inputs, work_dir, FUSED_DYNAMIC_DISABLED
    )
    return quantized, summary, fusion, None


def fusion_parity_samples(
    graph: OnnxGraph, calibration_inputs: Sequence[Mapping[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Calibration sentences when there are some, else seeded low token ids at three lengths."""
    if calibration_inputs:
        return [dict(sample) for sample in calibration_inputs[:PARITY_SAMPLES]]
    rng = np.random.default_rng(SYNTHETIC_SEED)
    samples = []
    for length in SYNTHETIC_LENGTHS:
        ids = rng.integers(0, 100, size=(1, length), dtype=np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        samples.append({name: feeds[name] for name in graph.input_names})
    return samples
