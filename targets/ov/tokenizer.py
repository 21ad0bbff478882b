"""The checkpoint's HF tokenizer as an OpenVINO model (openvino-tokenizers), and its fusion.

`convert_tokenizer` builds a string-in model whose outputs are named like the encoder's inputs
(`input_ids`, `token_type_ids`, `attention_mask`), padded to the batch's longest example and
truncated at the artifact's length (`truncation=True, max_length`); a pair task gets a two-input
tokenizer (`number_of_inputs=2`), truncated longest-first as HF does. `connect_models` joins it
to the INT8 encoder by those names, so the fused IR takes strings and returns the logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from bertc.compiler.core.errors import TargetBuildError, TokenizerConversionError
from bertc.compiler.core.graph import InGraphTokenizer

TEXT_INPUTS = ("text", "text_pair")
TOKENIZER_XML = "tokenizer.xml"
TOKENIZER_BIN = "tokenizer.bin"


def openvino_tokenizers_version() -> str:
    from importlib import metadata

    return metadata.version("openvino-tokenizers")


def with_added_tokens_in_vocabulary(hf_tokenizer: Any) -> Any:
    """A copy of a WordPiece fast tokenizer whose model vocabulary also holds its added tokens
    (entity markers such as [E1] added with `add_special_tokens`), else the tokenizer itself.

    openvino-tokenizers 2026.4 splits the added tokens out of the text but then looks each up in
    the WordPiece vocabulary, which lacks them, and gives [UNK]; with them in the vocabulary
    (same ids) the converted tokenizer gives the HF ids, which the parity gate's added-token
    set checks (compiler/tokenization.py, tests/adversarial/test_heads.py).
    """
    import copy
    import json

    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        return hf_tokenizer
    data = json.loads(backend.to_str())
    vocabulary = (data.get("model") or {}).get("vocab")
    if (data.get("model") or {}).get("type") != "WordPiece" or not isinstance(vocabulary, dict):
        return hf_tokenizer
    missing = {
        token["content"]: token["id"]
        for token in data.get("added_tokens") or []
        if token["content"] not in vocabulary
    }
    if not missing:
        return hf_tokenizer
    from tokenizers import Tokenizer

    vocabulary.update(missing)
    extended = copy.deepcopy(hf_tokenizer)
    extended._tokenizer = Tokenizer.from_str(json.dumps(data))
    return extended


def convert_hf_tokenizer(hf_tokenizer: Any, max_length: int, pair: bool):
    """The tokenizer as an `openvino.Model` with string inputs named `text` (and `text_pair`);
    added tokens reach the converter in the vocabulary (`with_added_tokens_in_vocabulary`)."""
    from openvino_tokenizers import convert_tokenizer

    try:
        model = convert_tokenizer(
            with_added_tokens_in_vocabulary(hf_tokenizer),
            max_length=max_length,
            truncation=True,
            number_of_inputs=2 if pair else 1,
        )
    except Exception as error:  # the converter raises its own OVTypeError and plain ones
        raise TokenizerConversionError(
            f"openvino-tokenizers could not convert the tokenizer: {_first_line(error)}"
        ) from error
    for port, name in zip(model.inputs, TEXT_INPUTS, strict=False):
        port.get_tensor().set_names({name})
    produced = {port.get_any_name() for port in model.outputs}
    if "token_type_ids" not in produced:
        # The converter follows the HF tokenizer's model_input_names; without segment ids the
        # encoder's input would be left unfed (the ids-in artifact feeds zeros instead).
        raise TokenizerConversionError(
            "the tokenizer gives no token_type_ids, so its converted graph cannot feed the "
            "encoder's segment ids; the artifact takes token ids (zero segment ids)"
        )
    return model


def fuse_tokenizer(tokenizer_model, encoder_model):
    """One model: the tokenizer's outputs feed the encoder's inputs of the same name."""
    from openvino_tokenizers import connect_models

    encoder_inputs = {port.get_any_name() for port in encoder_model.inputs}
    produced = {port.get_any_name() for port in tokenizer_model.outputs}
    missing = sorted(encoder_inputs - produced)
    if missing:
        raise TargetBuildError(
            f"the converted tokenizer does not produce the model inputs {missing}"
        )
    # Where the tokenizer hands token ids to the encoder: named in the fused IR (below) so that
    # a runtime can cut it there and run the encoder part on static shapes (`split_fused_model`).
    hand_over = {
        port.get_any_name(): port.get_node().input_value(0)
        for port in tokenizer_model.outputs
        if port.get_any_name() in encoder_inputs
    }
    try:
        fused = connect_models(tokenizer_model, encoder_model)
    except Exception as error:
        raise TargetBuildError(
            f"openvino-tokenizers could not connect the tokenizer: {_first_line(error)}"
        ) from error
    # openvino-tokenizers 2026.4.1: connect_models builds `Model(outputs, inputs)` and drops the
    # tokenizer's stateful sinks (the Assign of its `truncation` variable), so the CPU plugin
    # refuses the ReadValue left behind; hand them over (tests/test_tokenizer.py shows it).
    fused.add_sinks(tokenizer_model.get_sinks())
    for name, port in hand_over.items():
        port.get_tensor().add_names({name})
    return fused


class OpenVinoTokenizer(InGraphTokenizer):
    """The converted tokenizer compiled for CPU: what the fused IR runs in front of the encoder."""

    def __init__(self, tokenizer_model) -> None:
        import openvino

        self.compiled = openvino.Core().compile_model(tokenizer_model, "CPU")
        self.pair = len(self.compiled.inputs) == 2

    def encode(self, text_a: str, text_b: str | None) -> Mapping[str, np.ndarray]:
        texts = [np.array([text_a])]
        if self.pair:
            texts.append(np.array([text_b or ""]))
        results = self.compiled(texts)
        return {port.get_any_name(): results[port][0] for port in self.compiled.outputs}


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
