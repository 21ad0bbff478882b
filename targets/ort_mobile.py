"""`--target ort-mobile`: the model in ORT format plus the operator config of a reduced build.

The ORT format is made the way onnxruntime's own converter makes it (a session that saves its
optimized graph with `session.save_model_format=ORT`, then `create_config_from_models`), with
one difference: the GELU, LayerNorm and MatMul-scale fusions that emit com.microsoft contrib ops
are disabled, since reduced builds have failed on such ops (onnxruntime #22761). The QDQ
selector-action fusions stay on, because they are what runs INT8 fast: with bertc's recipe they
turn each quantized MatMul into com.microsoft MatMulIntegerToFloat (listed in the last prebuilt
mobile package, 1.18) and each MatMul with 16-bit activations into MatMulNBits (8-bit weights).
The operator config names every op the model needs, and the manifest repeats it.

`--quantization dynamic` takes the faster path ONNX Runtime's CPU kernels offer: the transformer
optimizer's attention fusion (compiler/ort_fusion.py), SmoothQuant-style scale migration of the
FFN projections' inputs (compiler/smoothing.py), dynamic per-channel INT8 with the strength and
any fp32 MatMul chosen on the calibration sentences (compiler/quantize.py), and the
DynamicQuantizeMatMul fusions on at conversion. Its graph is com.microsoft contrib ops
(QAttention, DynamicQuantizeMatMul) that only ONNX Runtime's CPU execution provider runs; the
static default stays standard QDQ ONNX, the form mobile execution providers (NNAPI, XNNPACK,
QNN) take.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from bertc.compiler.core.enums import QuantizationMode, Recipe, TokenizerMode
from bertc.compiler.core.errors import TargetBuildError
from bertc.compiler.core.graph import OnnxGraph
from bertc.compiler.core.sparsity import onnx_int8_weight_zeros
from bertc.compiler.core.summary import QuantizationSummary
from bertc.targets.base import (
    BuildRequest,
    Target,
    TargetBuild,
    TokenizerRequest,
    register_target,
)
from bertc.targets.onnx import quantized_onnx
from bertc.targets.ort.fusion import FusionReport, fuse_transformer
from bertc.targets.ort.quantize import quantize_fused_dynamic
from bertc.targets.ort.session import OrtRunner, onnxruntime_version
from bertc.targets.ort.tokenizer import (
    OrtTokenizer,
    attach_tokenizer,
    custom_op_library,
    standalone_tokenizer,
)

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
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
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


def uses_fused_recipe(mode: QuantizationMode, recipe: Recipe) -> bool:
    """bertc's dynamic recipe runs on the fused graph; library defaults stay on the plain one."""
    return mode is QuantizationMode.DYNAMIC and recipe is Recipe.BERT_SAFE


def fused_dynamic_onnx(
    graph: OnnxGraph, request: BuildRequest, path: Path
) -> tuple[OnnxGraph, QuantizationSummary, FusionReport]:
    """Fuse (parity-gated), then quantize with the sensitivity-chosen fp32 MatMuls."""
    fused, fusion = fuse_transformer(
        graph,
        request.work_dir / "fused.onnx",
        fusion_parity_samples(graph, request),
        request.num_attention_heads,
        request.hidden_size,
    )
    quantized, summary = quantize_fused_dynamic(
        fused, path, request.calibration_inputs, request.work_dir, FUSED_DYNAMIC_DISABLED
    )
    return quantized, summary, fusion


def fusion_parity_samples(graph: OnnxGraph, request: BuildRequest) -> list[dict[str, np.ndarray]]:
    """Calibration sentences when there are some, else seeded low token ids at three lengths."""
    if request.calibration_inputs:
        return [dict(sample) for sample in request.calibration_inputs[:PARITY_SAMPLES]]
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


@register_target("ort-mobile")
class OrtMobileTarget(Target):
    description = "ONNX Runtime Mobile: ORT format + reduced-build operator config"
    reproducibility = (
        "model.ort is not byte-identical across builds: onnxruntime 1.32 writes one table of the "
        "ORT format in hash-map order; the graph, initializers, opsets and operator config are "
        "identical (tests/test_compile.py::test_ort_mobile_rebuild_differs_only_in_layout)"
    )

    def build(self, graph: OnnxGraph, request: BuildRequest, out_dir: Path) -> TargetBuild:
        destination = request.work_dir / "mobile-input.onnx"
        fused_recipe = uses_fused_recipe(request.mode, request.recipe)
        fusion: FusionReport | None = None
        if fused_recipe:
            quantized, summary, fusion = fused_dynamic_onnx(graph, request, destination)
        else:
            quantized, summary = quantized_onnx(graph, request, destination)
        # Counted in the quantized ONNX: the ORT format keeps the same initializers, re-laid out.
        zeros = None if summary is None else onnx_int8_weight_zeros(graph.path, quantized.path)
        model_path, section, extra, library = quantized.path, None, (), None
        if request.tokenizer is not None:
            fused = request.work_dir / "mobile-input-text.onnx"
            section, extra = attach_tokenizer(
                request.tokenizer, quantized.path, graph.input_names, fused, out_dir
            )
            if request.tokenizer.mode is TokenizerMode.FUSED:
                model_path, library = fused, custom_op_library()
        operators = convert_to_ort_format(
            model_path,
            out_dir / ORT_MODEL_FILE,
            out_dir / OPERATOR_CONFIG_FILE,
            library,
            FUSED_DYNAMIC_DISABLED if fused_recipe else CONTRIB_OP_FUSIONS,
        )
        domains = sorted({line.split(";")[0] for line in operators})
        runtime = {
            "name": "onnxruntime",
            "version": onnxruntime_version(),
            "format": "ORT (no backward-compatibility promise: load it with this onnxruntime "
            "version or newer)",
            "model": ORT_MODEL_FILE,
            "operator_config": OPERATOR_CONFIG_FILE,
            "operator_domains": domains,
            "operators": list(operators),
            "optimization": (
                "onnxruntime.transformers fusions (Attention, Gelu) + ORT_ENABLE_EXTENDED with "
                "DynamicQuantizeMatMul fusions; SkipLayerNormalization off (slower on CPU)"
                if fused_recipe
                else "ORT_ENABLE_EXTENDED without fusions to GELU/LayerNorm contrib ops"
            ),
            "packages": "the full onnxruntime-android / onnxruntime-c / onnxruntime-objc packages, "
            "or a reduced build from the operator config (the prebuilt reduced 'mobile' "
            "packages were removed in onnxruntime 1.19)",
        }
        if fusion is not None:
            runtime["transformer_fusion"] = asdict(fusion)
        if section is not None:
            runtime["inputs"] = section["inputs"]
            if library:
                runtime["custom_op_library"] = (
                    "onnxruntime-extensions (ai.onnx.contrib ops in the operator config): "
                    "register it with the session; a reduced build adds "
                    "--use_extensions to build.sh"
                )
        notes: tuple[str, ...] = ()
        if request.mode is QuantizationMode.NONE:
            notes = ("fp32 ORT model (no quantization)",)
        elif fused_recipe:
            notes = (BATCH_ONE_NOTE,)
            if not request.calibration_inputs:
                notes += (UNCALIBRATED_DYNAMIC_NOTE,)
        return TargetBuild(
            (ORT_MODEL_FILE, OPERATOR_CONFIG_FILE, *extra),
            summary,
            runtime,
            notes,
            zeros,
            tokenizer=section,
        )

    def wants_calibration(self, mode: QuantizationMode, recipe: Recipe) -> bool:
        """The dynamic recipe measures on calibration sentences which MatMuls stay fp32."""
        return super().wants_calibration(mode, recipe) or uses_fused_recipe(mode, recipe)

    def tokenizer_graph(self, request: TokenizerRequest) -> OrtTokenizer:
        return standalone_tokenizer(request)

    def load(
        self, artifact_dir: Path, manifest: Mapping[str, Any], threads: int | None = None
    ) -> OrtRunner:
        return OrtRunner(artifact_dir / manifest["runtime"]["model"], threads)
