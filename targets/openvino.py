"""`--target openvino`: an OpenVINO IR (.xml/.bin) quantized by NNCF for the CPU plugin.

Static INT8 is `nncf.quantize` with the transformer model type (SmoothQuant and fast bias
correction on, LayerNorm/Softmax/GELU kept in floating point); dynamic INT8 is
`nncf.compress_weights` (int8 weights; the CPU plugin quantizes activations at run time).
The manifest tells the app to compile with `INFERENCE_PRECISION_HINT=f32`: on CPUs with BF16 the
plugin otherwise runs the floating-point parts in bf16, which on MiniLM-L6 SST-2 cost 0.6 point of
agreement. The IR cannot carry it: the CPU plugin (2026.4) reads only KV_CACHE_PRECISION and
DYNAMIC_QUANTIZATION_GROUP_SIZE from an IR's runtime_options (openvino #27765). On ARM cores
with fp16 the default is f16 (MiniLM-L6 SST-2, emulated a76: 0.07 max logit error against x86).

On aarch64, OpenVINO 2026.4.1's CPU plugin computes a MatMul wrongly on dynamic shapes when its
activations run as signed int8 and its int8 weights have per-channel scales (MiniLM-L6 SST-2 as
the README's app loads it: logits 0.83x x86's), and on some tiny models fails to compile it.
NNCF's asymmetric activation ranges land on that signed range by chance (a zero point of
exactly 128: 2 of MiniLM-L6's 38 MatMuls); every static build moves those ranges up by one step
(`ov.quantize.shift_arm_faulty_quantizers`: the same grid, run as uint8) and notes them.

Single inputs run on static shapes: the IR keeps dynamic axes, and the runner compiles a
[1, bucket] copy per sequence-length bucket on first use and pads to it. Dynamic shapes cost the
CPU plugin its fused attention path on short inputs (openvino #15831, #19982); on MiniLM-L6 SST-2
(median 24 tokens, 2 threads) buckets took the median latency from 2.4 to 1.6 ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertc.compiler.core.enums import TokenizerMode
from bertc.compiler.core.errors import TargetBuildError
from bertc.compiler.core.graph import OnnxGraph
from bertc.targets.base import (
    BuildRequest,
    Target,
    TargetBuild,
    TokenizerRequest,
    register_target,
)
from bertc.targets.ov import recipes
from bertc.targets.ov.quantize import quantize_with_nncf, summarise_openvino
from bertc.targets.ov.recipes import INFERENCE_PRECISION
from bertc.targets.ov.search import search_openvino
from bertc.targets.ov.shapes import static_shape_policy
from bertc.targets.ov.sparsity import openvino_int8_weight_zeros
from bertc.targets.ov.tokenizer import (
    TEXT_INPUTS,
    TOKENIZER_BIN,
    TOKENIZER_XML,
    OpenVinoTokenizer,
    convert_hf_tokenizer,
    fuse_tokenizer,
    openvino_tokenizers_version,
)

MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION}


# OpenVINO op types that correspond to the ONNX types FP32_REASONS explains.
@register_target("openvino")
class OpenVinoTarget(Target):
    description = "OpenVINO IR (.xml/.bin) for the CPU plugin, INT8 by NNCF"
    recipes = recipes.RECIPES
    reproducibility = (
        "identical model files when compiled in a fresh process; a second compile in the same "
        "Python process renames nodes in model.xml (OpenVINO's per-process counter), model.bin "
        "stays identical (tests/test_compile.py)"
    )

    def build(self, graph: OnnxGraph, request: BuildRequest, out_dir: Path) -> TargetBuild:
        import openvino

        try:
            model = openvino.convert_model(str(graph.path))
        except Exception as error:
            raise TargetBuildError(f"OpenVINO could not convert the ONNX graph: {error}") from error
        recipe = self.recipes.get(request.mode, request.recipe)
        search = None
        # The budget's search covers static INT8; other modes build the recipe as it is (the
        # compiler notes that no search ran).
        if request.search is not None and recipe.api == "nncf.quantize":
            result = search_openvino(model, recipe, request)
            compressed, search = result.model, result.record
        else:
            compressed = quantize_with_nncf(model, recipe, request.calibration_inputs)
        quantized = recipe.quantizes
        summary = (
            summarise_openvino(compressed, recipe, request.calibration_inputs)
            if quantized
            else None
        )
        zeros = openvino_int8_weight_zeros(graph.path, compressed) if quantized else None
        runtime = {
            "name": "openvino",
            "version": openvino.get_version(),
            "model": MODEL_XML,
            "weights": MODEL_BIN,
            "device": "CPU",
            "compile_config": COMPILE_CONFIG,
        }
        files: tuple[str, ...] = (MODEL_XML, MODEL_BIN)
        section = None
        fused = request.tokenizer is not None and request.tokenizer.mode is TokenizerMode.FUSED
        runtime["static_shapes"] = static_shape_policy(
            request.max_sequence_length,
            split_at=[port.get_any_name() for port in compressed.inputs] if fused else None,
        )
        if request.tokenizer is not None:
            compressed, section, extra = self._add_tokenizer(compressed, request.tokenizer, out_dir)
            files += extra
            runtime["inputs"] = section["inputs"]
        # fp32 constants stay fp32: fp16 compression of the float parts buys little next to INT8.
        openvino.save_model(compressed, str(out_dir / MODEL_XML), compress_to_fp16=False)
        return TargetBuild(
            files,
            summary,
            runtime,
            int8_weight_zeros=zeros,
            tokenizer=section,
            search=search,
        )

    def tokenizer_graph(self, request: TokenizerRequest) -> OpenVinoTokenizer:
        return OpenVinoTokenizer(
            convert_hf_tokenizer(request.hf_tokenizer, request.max_length, request.pair)
        )

    @staticmethod
    def _add_tokenizer(model, request: TokenizerRequest, out_dir: Path):
        """The model with the tokenizer fused in front, or unchanged with tokenizer.xml beside."""
        import openvino

        tokenizer = convert_hf_tokenizer(request.hf_tokenizer, request.max_length, request.pair)
        inputs = list(TEXT_INPUTS[: 2 if request.pair else 1])
        section: dict[str, Any] = {
            "mode": request.mode.value,
            "library": f"openvino-tokenizers {openvino_tokenizers_version()}",
            "converter": "openvino_tokenizers.convert_tokenizer(truncation=True, max_length=...)",
            "inputs": inputs,
            "batching": "a batch of strings per call, padded to its longest example",
            "runtime_packages": {
                "python": "pip install openvino openvino-tokenizers; import openvino_tokenizers "
                "before reading the model (it registers the tokenizer ops)",
                "c++": "core.add_extension(<path to libopenvino_tokenizers.so/.dll/.dylib>)",
            },
        }
        if request.mode is TokenizerMode.FUSED:
            return fuse_tokenizer(tokenizer, model), section, ()
        openvino.save_model(tokenizer, str(out_dir / TOKENIZER_XML))
        section["model"] = TOKENIZER_XML
        return model, section, (TOKENIZER_XML, TOKENIZER_BIN)
