"""`--target onnx`: a plain INT8 ONNX model in standard QDQ form, the portable fallback."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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
from bertc.targets.ort.search import SessionSettings, quantize_or_search
from bertc.targets.ort.session import onnxruntime_version
from bertc.targets.ort.tokenizer import (
    OrtTokenizer,
    attach_tokenizer,
    standalone_tokenizer,
)

MODEL_FILE_NAMES = {
    QuantizationMode.STATIC: "model.int8-qdq.onnx",
    QuantizationMode.DYNAMIC: "model.int8-dynamic.onnx",
    QuantizationMode.NONE: "model.fp32.onnx",
}


@register_target("onnx")
class OnnxTarget(Target):
    description = "plain ONNX (QDQ INT8) for any ONNX runtime"
    recipes = recipes.PORTABLE

    def build(self, graph: OnnxGraph, request: BuildRequest, out_dir: Path) -> TargetBuild:
        name = MODEL_FILE_NAMES[request.mode]
        path = out_dir / name if request.tokenizer is None else request.work_dir / name
        recipe = self.recipes.get(request.mode, request.recipe)
        # Under a budget, candidates run as the loader runs this file: default session options.
        quantized, summary, search = quantize_or_search(
            graph,
            path,
            recipe,
            request.calibration_inputs,
            request.work_dir,
            request.search,
            SessionSettings(),
        )
        zeros = None if summary is None else onnx_int8_weight_zeros(graph.path, quantized.path)
        runtime: dict[str, Any] = {
            "name": "onnxruntime",
            "version": onnxruntime_version(),
            "opset": graph.opset,
            "model": name,
        }
        files: tuple[str, ...] = (name,)
        section = None
        if request.tokenizer is not None:
            section, extra = attach_tokenizer(
                request.tokenizer, quantized.path, graph.input_names, out_dir / name, out_dir
            )
            if request.tokenizer.mode is TokenizerMode.SEPARATE:
                shutil.copyfile(quantized.path, out_dir / name)
            files += extra
            runtime["inputs"] = section["inputs"]
        return TargetBuild(
            files,
            summary,
            runtime,
            int8_weight_zeros=zeros,
            tokenizer=section,
            search=search,
        )

    def tokenizer_graph(self, request: TokenizerRequest) -> OrtTokenizer:
        return standalone_tokenizer(request)
