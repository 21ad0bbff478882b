"""`--target ort-mobile`: the model in ORT format plus the operator config of a reduced build.

The ORT format is made the way onnxruntime's own converter makes it (a session that saves its
optimized graph with `session.save_model_format=ORT`, then `create_config_from_models`), with
one difference: the GELU, LayerNorm and MatMul-scale fusions that emit com.microsoft contrib ops
are disabled, since reduced builds have failed on such ops (onnxruntime #22761). The QDQ
selector-action fusions stay on, because they are what runs INT8 fast: with bertc's recipe they
turn each quantized MatMul into com.microsoft MatMulIntegerToFloat (listed in the last prebuilt
mobile package, 1.18) and each MatMul with 16-bit activations into MatMulNBits (8-bit weights).
The operator config names every op the model needs, and the manifest repeats it.

The default, `--quantization dynamic`, takes the faster path ONNX Runtime's CPU kernels offer:
the transformer optimizer's attention fusion (targets/ort/fusion.py), SmoothQuant-style scale
migration of the FFN projections' inputs (targets/ort/smoothing.py), dynamic per-channel INT8
with the strength and any fp32 MatMul chosen on the calibration sentences
(targets/ort/quantize.py), and the DynamicQuantizeMatMul fusions on at conversion. Its graph is
com.microsoft contrib ops (QAttention, DynamicQuantizeMatMul) that only ONNX Runtime's CPU
execution provider runs: the provider phones run (NNAPI rejects QDQ MatMul and is deprecated;
the CoreML provider falls back to the CPU on quantized MatMuls). It is the default because it is
the fastest accurate artifact there at batch 1 (bench/README.md: faster than Optimum's dynamic
INT8 at higher agreement with fp32). `--quantization static` stays standard QDQ ONNX, the form
mobile execution providers (NNAPI, XNNPACK, QNN) take, and keeps its accuracy in padded batches.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from bertc.compiler.core.enums import QuantizationMode, TokenizerMode
from bertc.compiler.core.graph import OnnxGraph
from bertc.compiler.core.sparsity import onnx_int8_weight_zeros
from bertc.targets.base import (
    BuildRequest,
    Target,
    TargetBuild,
    TokenizerRequest,
    register_target,
)
from bertc.targets.ort import recipes
from bertc.targets.ort.fusion import FusionReport
from bertc.targets.ort.mobile import (
    BATCH_ONE_NOTE,
    CONTRIB_OP_FUSIONS,
    FUSED_DYNAMIC_DISABLED,
    OPERATOR_CONFIG_FILE,
    ORT_FORMAT_LEVEL,
    ORT_MODEL_FILE,
    UNCALIBRATED_DYNAMIC_NOTE,
    convert_to_ort_format,
    fused_dynamic_onnx,
)
from bertc.targets.ort.search import SessionSettings, quantize_or_search
from bertc.targets.ort.session import onnxruntime_version
from bertc.targets.ort.tokenizer import (
    OrtTokenizer,
    attach_tokenizer,
    custom_op_library,
    standalone_tokenizer,
)


@register_target("ort-mobile")
class OrtMobileTarget(Target):
    description = "ONNX Runtime Mobile: ORT format + reduced-build operator config"
    recipes = recipes.MOBILE
    # Measured side by side (bench/compare.py, MiniLM-L6 SST-2, batch 1, 2 threads): dynamic
    # 1.30 ms, static QDQ 2.42 ms, Optimum's dynamic INT8 1.77 ms; both bertc artifacts agree
    # with fp32 on 99.2% of SST-2 dev (Optimum's on 96.4%).
    default_quantization = QuantizationMode.DYNAMIC
    reproducibility = (
        "model.ort is not byte-identical across builds: onnxruntime 1.32 writes one table of the "
        "ORT format in hash-map order; the graph, initializers, opsets and operator config are "
        "identical (tests/test_compile.py::test_ort_mobile_rebuild_differs_only_in_layout)"
    )

    def build(self, graph: OnnxGraph, request: BuildRequest, out_dir: Path) -> TargetBuild:
        destination = request.work_dir / "mobile-input.onnx"
        recipe = self.recipes.get(request.mode, request.recipe)
        fused_recipe = recipe.fused
        fusion: FusionReport | None = None
        if fused_recipe:
            quantized, summary, fusion, search = fused_dynamic_onnx(
                graph,
                destination,
                recipe,
                request.calibration_inputs,
                request.work_dir,
                (request.num_attention_heads, request.hidden_size),
                request.search,
            )
        else:
            quantized, summary, search = quantize_or_search(
                graph,
                destination,
                recipe,
                request.calibration_inputs,
                request.work_dir,
                request.search,
                SessionSettings(CONTRIB_OP_FUSIONS, ORT_FORMAT_LEVEL),
            )
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
            search=search,
        )

    def tokenizer_graph(self, request: TokenizerRequest) -> OrtTokenizer:
        return standalone_tokenizer(request)
