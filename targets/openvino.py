"""`--target openvino`: an OpenVINO IR (.xml/.bin) quantized by NNCF for the CPU plugin.

Static INT8 is `nncf.quantize` with the transformer model type (SmoothQuant and fast bias
correction on, LayerNorm/Softmax/GELU kept in floating point); dynamic INT8 is
`nncf.compress_weights` (int8 weights; the CPU plugin quantizes activations at run time).
The manifest tells the app to compile with `INFERENCE_PRECISION_HINT=f32`: on CPUs with BF16 the
plugin otherwise runs the floating-point parts in bf16, which on MiniLM-L6 SST-2 cost 0.6 point of
agreement. The IR cannot carry it: the CPU plugin (2026.4) reads only KV_CACHE_PRECISION and
DYNAMIC_QUANTIZATION_GROUP_SIZE from an IR's runtime_options (openvino #27765).

Single inputs run on static shapes: the IR keeps dynamic axes, and the runner compiles a
[1, bucket] copy per sequence-length bucket on first use and pads to it. Dynamic shapes cost the
CPU plugin its fused attention path on short inputs (openvino #15831, #19982); on MiniLM-L6 SST-2
(median 24 tokens, 2 threads) buckets took the median latency from 2.4 to 1.6 ms.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bertc.compiler.core.enums import QuantizationMode, Recipe, TokenizerMode
from bertc.compiler.core.errors import QuantizationError, TargetBuildError
from bertc.compiler.core.graph import OnnxGraph
from bertc.compiler.core.summary import FP32_REASONS, QuantizationSummary
from bertc.targets.base import (
    BuildRequest,
    Target,
    TargetBuild,
    TokenizerRequest,
    register_target,
)
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
from bertc.targets.runtime_app import StaticShapeBuckets

MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
INFERENCE_PRECISION = "f32"
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION}
# OpenVINO op types that correspond to the ONNX types FP32_REASONS explains.
_OV_TO_ONNX_TYPES = {
    "MVN": "LayerNormalization",
    "SoftMax": "Softmax",
    "Gelu": "Gelu",
    "Add": "Add",
    "MatMul": "MatMul",
    "Gather": "Gather",
    "Tanh": "Tanh",
    "Divide": "Div",
    "Multiply": "Mul",
}
_COMPUTE_TYPES = ("MatMul", "Gather", "MVN", "SoftMax", "Gelu", "Tanh")
SMALLEST_BUCKET = 16


def sequence_buckets(max_sequence_length: int) -> tuple[int, ...]:
    """Powers of two from 16 up to the artifact's maximum length, which is always the last.

    Few buckets on purpose: on MiniLM-L6 SST-2 ten finer buckets were slower than four (1.70 vs
    1.57 ms), the padding costs less than the extra compiled models.
    """
    buckets = []
    size = SMALLEST_BUCKET
    while size < max_sequence_length:
        buckets.append(size)
        size *= 2
    return (*buckets, max_sequence_length)


def static_shape_policy(
    max_sequence_length: int, split_at: list[str] | None = None
) -> dict[str, Any]:
    """What the manifest tells an app about running single inputs on static shapes.

    A fused IR takes strings, which cannot be padded: `split_at` names the token-id tensors where
    the runtime cuts it (`runtime_app.split_fused_model`) to run the encoder part on the buckets.
    """
    policy: dict[str, Any] = {
        "batch": 1,
        "sequence_buckets": list(sequence_buckets(max_sequence_length)),
        "padding": "right-pad every input to the smallest bucket that fits, attention_mask 0 "
        "on the padding; cut outputs with a sequence axis back to the real length",
    }
    if split_at:
        policy["split_at"] = list(split_at)
        policy["split"] = (
            "cut the fused IR at these tensors: the part before takes strings and returns token "
            "ids, the part after takes them like an ids-in model (bertc's runtime_app does this)"
        )
    return policy


def quantize_with_nncf(model, request: BuildRequest):
    """The NNCF-compressed OpenVINO model for the requested mode."""
    import nncf

    try:
        if request.mode is QuantizationMode.STATIC:
            if not request.calibration_inputs:
                raise QuantizationError("static quantization needs calibration samples")
            samples = [dict(sample) for sample in request.calibration_inputs]
            if request.recipe is Recipe.LIBRARY_DEFAULTS:
                return nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
            return nncf.quantize(
                model,
                nncf.Dataset(samples),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(samples),
            )
        if request.mode is QuantizationMode.DYNAMIC:
            return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        return model
    except QuantizationError:
        raise
    except Exception as error:  # NNCF raises many internal types; name the stage
        raise QuantizationError(f"NNCF quantization failed: {error}") from error


def classify_openvino_ops(model) -> tuple[dict[str, int], dict[str, int]]:
    """INT8 ops read a FakeQuantize output or an int8/uint8 constant (via Convert)."""
    int8: Counter[str] = Counter()
    floating: Counter[str] = Counter()
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in _COMPUTE_TYPES:
            continue
        if any(
            _reads_int8(op.input_value(index).get_node()) for index in range(op.get_input_size())
        ):
            int8[kind] += 1
        else:
            floating[kind] += 1
    return dict(sorted(int8.items())), dict(sorted(floating.items()))


def _reads_int8(node, depth: int = 0) -> bool:
    """Walk back through the dequantization chain (Convert, Subtract, Multiply, Reshape)."""
    kind = node.get_type_name()
    if kind == "FakeQuantize":
        return True
    if kind == "Constant":
        return node.get_element_type().get_type_name() in ("i8", "u8")
    if kind in ("Convert", "Subtract", "Multiply", "Reshape", "Transpose") and depth < 4:
        return any(
            _reads_int8(node.input_value(i).get_node(), depth + 1)
            for i in range(node.get_input_size())
        )
    return False


def summarise_openvino(model, request: BuildRequest) -> QuantizationSummary:
    import nncf

    int8_ops, fp_ops = classify_openvino_ops(model)
    reasons = {
        kind: FP32_REASONS[_OV_TO_ONNX_TYPES[kind]]
        for kind in fp_ops
        if _OV_TO_ONNX_TYPES.get(kind) in FP32_REASONS
    }
    static = request.mode is QuantizationMode.STATIC
    defaults = request.recipe is Recipe.LIBRARY_DEFAULTS
    if static and defaults:
        settings: dict[str, Any] = {"api": "nncf.quantize", "model_type": "none (NNCF default)"}
    elif static:
        settings = {
            "api": "nncf.quantize",
            "model_type": "TRANSFORMER",
            "preset": "MIXED (default for transformers)",
        }
    else:
        settings = {"api": "nncf.compress_weights", "mode": "INT8_ASYM"}
    settings["inference_precision_hint"] = INFERENCE_PRECISION
    return QuantizationSummary(
        mode=request.mode.value,
        recipe=request.recipe.value,
        tool=f"nncf {nncf.__version__}",
        calibration_samples=len(request.calibration_inputs) if static else 0,
        int8_ops=int8_ops,
        fp32_ops=fp_ops,
        fp32_reasons=reasons,
        settings=settings,
    )


@register_target("openvino")
class OpenVinoTarget(Target):
    description = "OpenVINO IR (.xml/.bin) for the CPU plugin, INT8 by NNCF"
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
        compressed = quantize_with_nncf(model, request)
        quantized = request.mode is not QuantizationMode.NONE
        summary = summarise_openvino(compressed, request) if quantized else None
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

    def load(self, artifact_dir: Path, manifest: Mapping[str, Any], threads: int | None = None):
        runtime = manifest["runtime"]
        buckets = runtime.get("static_shapes", {}).get("sequence_buckets", ())
        return OpenVinoRunner(
            artifact_dir / runtime["model"], runtime.get("compile_config", {}), threads, buckets
        )


class OpenVinoRunner:
    """`openvino.Core().read_model` + `compile_model` for CPU with the manifest's compile config.

    Batches run on the dynamic model; a single input runs on a static [1, bucket] copy compiled
    the first time its bucket is used.
    """

    def __init__(
        self,
        model_path: Path,
        compile_config: Mapping[str, Any],
        threads: int | None = None,
        sequence_buckets: Sequence[int] = (),
    ) -> None:
        import openvino

        core = openvino.Core()
        config = dict(compile_config)
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        model = core.read_model(str(model_path))
        self.compiled = core.compile_model(model, "CPU", config)
        self.input_names = tuple(port.get_any_name() for port in self.compiled.inputs)
        self.output_names = tuple(port.get_any_name() for port in self.compiled.outputs)
        self.request = self.compiled.create_infer_request()
        self.static = StaticShapeBuckets(core, model, config, list(sequence_buckets))

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        feed = {name: inputs[name] for name in self.input_names}
        outputs = self.static.run(feed)
        return self.run_dynamic(feed) if outputs is None else outputs

    def run_dynamic(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The dynamic-shape model, whatever the input's shape."""
        results = self.request.infer(feed)
        return [np.asarray(results[port]) for port in self.compiled.outputs]
