"""The checkpoint's HF tokenizer as an ONNX pre-processing graph (onnxruntime-extensions).

`gen_processing_models` emits one `ai.onnx.contrib` BertTokenizer node: a 1-D string tensor of
one text, or of two for a sentence pair, in; 1-D `input_ids`, `token_type_ids`,
`attention_mask` out, truncated at `max_length`. `onnx.compose.merge_models` puts it, through a
small Unsqueeze adapter to the encoder's `[1, sequence]` inputs, in front of the INT8 model.

Limits of onnxruntime-extensions 0.15.2, shown by tests/test_tokenizer.py:
- the BertTokenizer op tokenizes one example per run (its input is one text or one pair), so a
  fused ONNX artifact runs batch 1 and an app loops over a batch;
- its converter sets `strip_accents` only when the HF config names it, while HF strips accents
  whenever it lowercases and `strip_accents` is unset: bertc passes the HF behaviour explicitly;
- the tokenizer.json-based HfJsonTokenizer (`schema_v2=True`) rejects "BertTokenizer" at load;
- it does not truncate a sentence pair at `max_length` (with any `truncation_strategy_name`),
  so a pair task's ids could run past the artifact's length: bertc refuses pairs here.
Running the graph needs the extensions' custom-op library registered with the session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bertc.compiler.core.errors import TargetBuildError, TokenizerConversionError
from bertc.compiler.core.graph import InGraphTokenizer

TEXT_INPUT = "text"
TOKENIZER_ONNX = "tokenizer.onnx"
CUSTOM_OP_DOMAIN = "ai.onnx.contrib"
# How an app gets the custom-op library on each platform (onnxruntime-extensions docs).
EXTENSIONS_PACKAGES = {
    "python": "pip install onnxruntime-extensions; "
    "SessionOptions.register_custom_ops_library(onnxruntime_extensions.get_library_path())",
    "android": "com.microsoft.onnxruntime:onnxruntime-extensions-android "
    "(SessionOptions.registerCustomOpLibrary(OrtxPackage.getLibraryPath()))",
    "ios": "pod 'onnxruntime-extensions-c' "
    '(ORTSessionOptions registerCustomOpsUsingFunction:@"RegisterCustomOps")',
    "c/c++": "link libortextensions and call RegisterCustomOps(session_options, OrtGetApiBase())",
}
_ADAPTER_PREFIX = "tokenizer/"


def extensions_version() -> str:
    from importlib import metadata

    return metadata.version("onnxruntime-extensions")


def custom_op_library() -> str:
    """onnxruntime-extensions' custom-op library, found as the loader finds it (without
    importing the package, whose __init__ imports torch and transformers when installed)."""
    from bertc.targets.loader import extensions_library

    return extensions_library()


def hf_normalization(hf_tokenizer: Any) -> dict[str, int]:
    """HF BERT lowercases per `do_lower_case` and strips accents when lowercasing unless told."""
    init = getattr(hf_tokenizer, "init_kwargs", {}) or {}
    lower = bool(init.get("do_lower_case", getattr(hf_tokenizer, "do_lower_case", True)))
    strip = init.get("strip_accents")
    return {"do_lower_case": int(lower), "strip_accents": int(lower if strip is None else strip)}


def preprocessing_model(hf_tokenizer: Any, max_length: int, like: Any = None):
    """The tokenizer graph, at the encoder's IR and opset versions so the two can be merged."""
    import onnx
    from onnxruntime_extensions import gen_processing_models

    try:
        pre, _ = gen_processing_models(
            hf_tokenizer, pre_kwargs={"max_length": max_length, **hf_normalization(hf_tokenizer)}
        )
    except Exception as error:  # ValueError for unsupported tokenizers, and others
        raise TokenizerConversionError(
            f"onnxruntime-extensions could not convert the tokenizer: {_first_line(error)}"
        ) from error
    if any(node.domain in ("", "ai.onnx") for node in pre.graph.node):
        raise TargetBuildError("the tokenizer graph holds standard ONNX ops; cannot align opsets")
    # It holds custom ops only, so the default-domain opset it declares is free to follow the
    # encoder's (merge_models refuses differing versions of one domain).
    # The encoder may declare ai.onnx.contrib already (ORT's optimizer writes every registered
    # domain); custom-op domains resolve by name, so the tokenizer takes its version too.
    if like is None:
        pre.graph.input[0].name = TEXT_INPUT
        pre.graph.node[0].input[0] = TEXT_INPUT
        return pre
    declared = {entry.domain: entry.version for entry in like.opset_import}
    pre.ir_version = like.ir_version
    del pre.opset_import[:]
    pre.opset_import.extend(
        [
            onnx.helper.make_opsetid(CUSTOM_OP_DOMAIN, declared.get(CUSTOM_OP_DOMAIN, 1)),
            onnx.helper.make_opsetid("", _opset(like)),
        ]
    )
    pre.graph.input[0].name = TEXT_INPUT
    pre.graph.node[0].input[0] = TEXT_INPUT
    return pre


def fuse_preprocessing(pre, encoder, input_names: Sequence[str]):
    """`merge_models`: tokenizer → Unsqueeze adapter → encoder; the encoder's outputs only."""
    import onnx
    from onnx import compose, helper

    produced = {output.name for output in pre.graph.output}
    missing = sorted(set(input_names) - produced)
    if missing:
        raise TargetBuildError(f"the tokenizer graph does not produce the model inputs {missing}")
    pre = compose.add_prefix(pre, _ADAPTER_PREFIX, rename_inputs=False)
    axes = helper.make_tensor("adapter_axes", onnx.TensorProto.INT64, [1], [0])
    nodes = [
        helper.make_node("Unsqueeze", [f"{_ADAPTER_PREFIX}{name}", "adapter_axes"], [name])
        for name in input_names
    ]
    adapter = helper.make_model(
        helper.make_graph(
            nodes,
            "batch_axis",
            [
                helper.make_tensor_value_info(
                    f"{_ADAPTER_PREFIX}{n}", onnx.TensorProto.INT64, [None]
                )
                for n in input_names
            ],
            [
                helper.make_tensor_value_info(name, onnx.TensorProto.INT64, [1, None])
                for name in input_names
            ],
            initializer=[axes],
        ),
        opset_imports=[helper.make_opsetid("", _opset(encoder))],
        ir_version=encoder.ir_version,
    )
    try:
        tokens = compose.merge_models(
            pre,
            adapter,
            [(f"{_ADAPTER_PREFIX}{name}", f"{_ADAPTER_PREFIX}{name}") for name in input_names],
            outputs=list(input_names),
        )
        return compose.merge_models(
            tokens,
            encoder,
            [(name, name) for name in input_names],
            outputs=[output.name for output in encoder.graph.output],
        )
    except Exception as error:
        raise TargetBuildError(f"onnx.compose could not merge the tokenizer: {error}") from error


def _opset(model) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


class OrtTokenizer(InGraphTokenizer):
    """The tokenizer graph in an ONNX Runtime session with the extensions' ops registered."""

    def __init__(self, model_or_path: Any) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.register_custom_ops_library(custom_op_library())
        source = str(model_or_path) if isinstance(model_or_path, Path) else model_or_path
        if not isinstance(source, str):
            source = source.SerializeToString()
        self.session = onnxruntime.InferenceSession(
            source, options, providers=["CPUExecutionProvider"]
        )

    def encode(self, text_a: str, text_b: str | None) -> Mapping[str, np.ndarray]:
        texts = np.array([text_a] if text_b is None else [text_a, text_b])
        outputs = self.session.run(None, {TEXT_INPUT: texts})
        names = [output.name for output in self.session.get_outputs()]
        return {
            name.removeprefix(_ADAPTER_PREFIX): value
            for name, value in zip(names, outputs, strict=False)
        }


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def runtime_section(mode: str, pair: bool) -> dict[str, Any]:
    """The manifest's account of the tokenizer graph and what an app needs to run it."""
    return {
        "mode": mode,
        "library": f"onnxruntime-extensions {extensions_version()}",
        "converter": "onnxruntime_extensions.gen_processing_models (BertTokenizer op)",
        "custom_op_domain": CUSTOM_OP_DOMAIN,
        "inputs": [TEXT_INPUT],
        "input_layout": "1-D string tensor: [text]" + (", or [text, text_pair]" if pair else ""),
        "pair": pair,
        "batching": "one example per run (the BertTokenizer op takes one text or one pair)",
        "requires_custom_op_library": True,
        "runtime_packages": dict(EXTENSIONS_PACKAGES),
    }


def attach_tokenizer(
    request: Any, encoder_path: Path, input_names: Sequence[str], fused_path: Path, out_dir: Path
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Fused: write encoder+tokenizer to `fused_path`. Separate: tokenizer.onnx into `out_dir`.

    Returns the manifest section and any extra files.
    """
    import onnx

    refuse_pairs(request)
    encoder = onnx.load(str(encoder_path))
    pre = preprocessing_model(request.hf_tokenizer, request.max_length, encoder)
    section = runtime_section(request.mode.value, request.pair)
    if request.mode.value == "fused":
        onnx.save(fuse_preprocessing(pre, encoder, input_names), str(fused_path))
        return section, ()
    onnx.save(pre, str(out_dir / TOKENIZER_ONNX))
    section["model"] = TOKENIZER_ONNX
    return section, (TOKENIZER_ONNX,)


def refuse_pairs(request: Any) -> None:
    """TokenizerConversionError for a pair task: the extensions' BertTokenizer would hand the
    encoder more than `max_length` ids (see the module's limits), never a truncated pair."""
    if request.pair:
        raise TokenizerConversionError(
            f"onnxruntime-extensions {extensions_version()}'s BertTokenizer does not truncate a "
            f"sentence pair at max_length {request.max_length}, so pairs stay token ids"
        )


def standalone_tokenizer(request: Any) -> OrtTokenizer:
    """The tokenizer graph alone, converted as `attach_tokenizer` converts it."""
    refuse_pairs(request)
    return OrtTokenizer(preprocessing_model(request.hf_tokenizer, request.max_length))


# Domains onnxruntime-extensions registers with ONNX Runtime when its library is loaded.
EXTENSION_DOMAINS = (CUSTOM_OP_DOMAIN, "com.microsoft.extensions")


def drop_unused_extension_domains(path: Path) -> None:
    """Keep an ids-in model's bytes independent of what else ran in the process.

    onnxruntime 1.32's optimizer (which the quantizer's pre-processing runs) writes every domain
    registered in the process into the saved model's opset imports; once the parity gate has
    loaded the extensions' library, a later quantization gains `ai.onnx.contrib` and
    `com.microsoft.extensions` entries that no node uses. Remove exactly those, only when
    present, so the file equals a fresh process's (tests/test_compile.py recompiles in-process).
    """
    import onnx

    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node}
    stale = [
        e for e in model.opset_import if e.domain in EXTENSION_DOMAINS and e.domain not in used
    ]
    if not stale:
        return
    kept = [e for e in model.opset_import if e not in stale]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))
