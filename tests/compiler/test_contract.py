"""The checkpoint contract, value by value: every supported value of every attribute in the
table compiles (`--target onnx --quantization none`) to outputs equal to PyTorch's within the
parity tolerance; every unsupported value is refused with exit 5, naming the attribute and the
value, before anything is exported.

The PyTorch reference is transformers itself on the checkpoint as written, not bertc's loader,
so a value bertc normalised away (or a loader that ignored one) would show as a difference.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bertc.compiler.contract import (
    BERT_ATTRIBUTES,
    PROBLEM_TYPES,
    SUPPORTED_ACTIVATIONS,
    SUPPORTED_ARCHITECTURES,
    WEIGHT_DTYPES,
    contract_violations,
)
from bertc.compiler.core.errors import UnsupportedModelError
from bertc.compiler.core.graph import DEFAULT_PARITY_ATOL
from bertc.compiler.pipeline import CompileOptions, compile_model
from model_factory import SST2_LABELS, TINY_CONFIG, make_checkpoint

ABSENT = object()  # the attribute left out of config.json
# Lengths to compare at: a multiple of 4, so PyTorch itself runs chunk_size_feed_forward=4.
REFERENCE_LENGTH = 16
SENTENCES = (
    "a gorgeous , witty , seductive movie .",
    "the film is strictly routine .",
    "ok",
    "a warm and funny film about friends , time and the music of the city .",
)


@dataclass(frozen=True)
class Case:
    """One attribute value: how to build a seeded checkpoint that has it."""

    attribute: str
    value: Any
    head: str = "classifier"
    build: dict[str, Any] = field(default_factory=dict)  # BertConfig settings at build time
    options: dict[str, Any] = field(default_factory=dict)  # make_checkpoint keywords

    @property
    def id(self) -> str:
        return f"{self.attribute}={'absent' if self.value is ABSENT else self.value!r}"


def _same(attribute: str, *values: Any, **kwargs: Any) -> list[Case]:
    return [Case(attribute, value, **kwargs) for value in values]


LABEL2ID = {name: index for index, name in SST2_LABELS.items()}
SUPPORTED: list[Case] = [
    Case("model_type", "bert"),
    Case("model_type", ABSENT, head="encoder", options={"fit_denses": True}),  # TinyBERT
    Case("architectures", ["BertModel"], head="encoder"),
    Case("architectures", ["BertForMaskedLM"], head="encoder", options={"masked_lm": True}),
    Case("architectures", ["BertForPreTraining"], head="encoder", options={"masked_lm": True}),
    Case("architectures", ["BertForSequenceClassification"]),
    Case("vocab_size", 512, build={"vocab_size": 512}),
    Case("hidden_size", 48, build={"hidden_size": 48, "num_attention_heads": 4}),
    Case("num_hidden_layers", 1, build={"num_hidden_layers": 1}),
    Case("num_hidden_layers", 3, build={"num_hidden_layers": 3}),
    Case("num_attention_heads", 1, build={"num_attention_heads": 1}),
    Case("num_attention_heads", 4, build={"num_attention_heads": 4}),
    Case("intermediate_size", 16, build={"intermediate_size": 16}),
    Case("intermediate_size", 100, build={"intermediate_size": 100}),
    *[Case("hidden_act", act, build={"hidden_act": act}) for act in SUPPORTED_ACTIVATIONS],
    Case("max_position_embeddings", 64, build={"max_position_embeddings": 64}),
    Case("max_position_embeddings", 512, build={"max_position_embeddings": 512}),
    Case("type_vocab_size", 1, build={"type_vocab_size": 1}),
    Case("type_vocab_size", 4, build={"type_vocab_size": 4}),
    Case("layer_norm_eps", 1e-5, build={"layer_norm_eps": 1e-5}),
    Case("layer_norm_eps", 1e-12),
    *_same("position_embedding_type", "absolute", None, ABSENT),
    Case("is_decoder", False),
    Case("add_cross_attention", False),
    Case("is_encoder_decoder", False),
    Case("chunk_size_feed_forward", 0),
    Case("chunk_size_feed_forward", 4, build={"chunk_size_feed_forward": 4}),
    Case("problem_type", None, head="encoder"),
    Case("problem_type", "regression", head="regression"),
    *_same("problem_type", *[kind for kind in PROBLEM_TYPES if kind != "regression"]),
    Case("num_labels", 1, head="regression"),
    Case("num_labels", 2),
    Case("id2label", {str(index): name for index, name in SST2_LABELS.items()}),
    Case("id2label", None, head="encoder"),
    Case("label2id", LABEL2ID),
    Case("label2id", None, head="encoder"),
    *_same("torch_dtype", None, *WEIGHT_DTYPES),
    *_same("dtype", None, *WEIGHT_DTYPES),
    *_same("pad_token_id", 0, None, 3),
    *_same("hidden_dropout_prob", 0.0, 0.5),
    *_same("attention_probs_dropout_prob", 0.0, 0.3),
    *_same("classifier_dropout", None, 0.2),
    Case("pruned_heads", {}),
    Case("quantization_config", ABSENT),
]

# (attribute, value, extra config edits that make the value the only fault)
UNSUPPORTED: list[tuple[str, Any, dict[str, Any]]] = [
    ("model_type", "roberta", {}),
    ("model_type", 5, {}),
    ("architectures", 5, {}),
    ("architectures", "BertForSequenceClassification", {}),
    ("architectures", ["BertForTokenClassification"], {}),
    ("architectures", ["BertLMHeadModel"], {}),
    ("architectures", ["RobertaForSequenceClassification"], {}),
    ("vocab_size", 0, {}),
    ("vocab_size", "368", {}),
    ("hidden_size", "128", {}),
    ("hidden_size", 0, {}),
    ("hidden_size", -32, {}),
    ("hidden_size", 33, {}),  # 2 heads
    ("num_hidden_layers", 0, {}),
    ("num_hidden_layers", -1, {}),
    ("num_hidden_layers", 2.0, {}),
    ("num_attention_heads", 0, {}),
    ("num_attention_heads", True, {}),
    ("intermediate_size", 0, {}),
    ("intermediate_size", None, {}),
    *[("hidden_act", act, {}) for act in ("hardswish", "tanh", "prelu", "xielu", "GELU", "linear")],
    ("hidden_act", 5, {}),
    ("max_position_embeddings", 0, {}),
    ("type_vocab_size", 0, {}),
    ("type_vocab_size", 1.5, {}),
    ("layer_norm_eps", 0, {}),
    ("layer_norm_eps", -1e-12, {}),
    ("layer_norm_eps", "1e-12", {}),
    ("position_embedding_type", "relative_key", {}),
    ("position_embedding_type", "relative_key_query", {}),
    ("is_decoder", True, {}),
    ("is_decoder", "false", {}),
    ("add_cross_attention", True, {}),
    ("is_encoder_decoder", True, {}),
    ("chunk_size_feed_forward", -1, {}),
    ("chunk_size_feed_forward", "4", {}),
    ("problem_type", "multi_class_classification", {}),
    ("problem_type", "regression", {}),  # on a 2-label head
    ("problem_type", "single_label_classification", {"num_labels": 1, "id2label": {"0": "a"}}),
    ("num_labels", 3, {}),  # id2label has 2
    ("num_labels", 0, {}),
    ("id2label", {"0": "negative", "2": "positive"}, {}),
    ("id2label", ["negative", "positive"], {}),
    ("label2id", {"bad": 0, "worse": 1}, {}),
    ("torch_dtype", "int8", {}),
    ("torch_dtype", "float64", {}),
    ("dtype", "float8_e4m3fn", {}),
    ("pad_token_id", -1, {}),
    ("pad_token_id", 100_000, {}),
    ("hidden_dropout_prob", 1.5, {}),
    ("attention_probs_dropout_prob", -0.1, {}),
    ("classifier_dropout", 2.0, {}),
    ("pruned_heads", {"0": [1]}, {}),
    ("quantization_config", {"quant_method": "bitsandbytes", "load_in_8bit": True}, {}),
]


def test_every_attribute_of_the_table_has_supported_and_unsupported_cases() -> None:
    names = {attribute.name for attribute in BERT_ATTRIBUTES}
    assert names == {case.attribute for case in SUPPORTED}
    assert names == {attribute for attribute, _, _ in UNSUPPORTED}
    for attribute in BERT_ATTRIBUTES:  # each enumerated value is among the supported cases
        tested = [case.value for case in SUPPORTED if case.attribute == attribute.name]
        tested += [item for value in tested if isinstance(value, list) for item in value]
        assert all(value in tested or value is None for value in attribute.values), attribute
    assert set(SUPPORTED_ARCHITECTURES) == {
        case.value[0] for case in SUPPORTED if case.attribute == "architectures"
    }


def write_config_edits(directory: Path, edits: dict[str, Any]) -> dict[str, Any]:
    path = directory / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for name, value in edits.items():
        if value is ABSENT:
            config.pop(name, None)
        else:
            config[name] = value
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return config


def pytorch_outputs(directory: Path, head: str, ids: dict[str, np.ndarray]) -> np.ndarray:
    """transformers' own answer for the checkpoint as written (eager attention, fp32)."""
    from transformers import BertForSequenceClassification, BertModel

    if head == "encoder":
        model = BertModel.from_pretrained(
            str(directory),
            add_pooling_layer=False,
            attn_implementation="eager",
            dtype=torch.float32,
        )
    else:
        model = BertForSequenceClassification.from_pretrained(
            str(directory), attn_implementation="eager", dtype=torch.float32
        )
    model.eval()
    with torch.no_grad():
        outputs = model(**{name: torch.from_numpy(array) for name, array in ids.items()})
    return (outputs.last_hidden_state if head == "encoder" else outputs.logits).numpy()


def reference_ids(directory: Path) -> dict[str, np.ndarray]:
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(directory))
    encoded = tokenizer(
        list(SENTENCES),
        padding="max_length",
        max_length=REFERENCE_LENGTH,
        truncation=True,
        return_tensors="np",
    )
    return {name: np.asarray(encoded[name], dtype=np.int64) for name in encoded}


@pytest.mark.parametrize("case", SUPPORTED, ids=[case.id for case in SUPPORTED])
def test_a_supported_value_compiles_to_what_pytorch_computes(case: Case, tmp_path: Path) -> None:
    import onnxruntime

    checkpoint = make_checkpoint(
        tmp_path / "checkpoint", {**TINY_CONFIG, **case.build}, head=case.head, **case.options
    )
    if not case.options.get("fit_denses"):
        config = write_config_edits(checkpoint, {case.attribute: case.value})
    else:
        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        assert "model_type" not in config
    assert contract_violations(config) == []
    result = compile_model(
        str(checkpoint),
        tmp_path / "artifact",
        CompileOptions(target="onnx", quantization="none", tokenizer="none"),
    )
    ids = reference_ids(checkpoint)
    session = onnxruntime.InferenceSession(
        str(result.artifact_dir / result.manifest["runtime"]["model"]),
        providers=["CPUExecutionProvider"],
    )
    feeds = {"token_type_ids": np.zeros_like(ids["input_ids"]), **ids}
    feeds = {entry.name: feeds[entry.name] for entry in session.get_inputs()}
    compiled = session.run(None, feeds)[0]
    expected = pytorch_outputs(checkpoint, case.head, ids)
    if case.head == "encoder":  # compare real tokens: padded positions are free
        mask = ids["attention_mask"].astype(bool)
        compiled, expected = compiled[mask], expected[mask]
    assert compiled.shape == expected.shape
    assert np.max(np.abs(compiled - expected)) <= DEFAULT_PARITY_ATOL


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("contract-base"))


@pytest.mark.parametrize(
    ("attribute", "value", "edits"),
    UNSUPPORTED,
    ids=[f"{attribute}={value!r}" for attribute, value, _ in UNSUPPORTED],
)
def test_an_unsupported_value_is_refused_before_export(
    attribute: str,
    value: Any,
    edits: dict[str, Any],
    base_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bertc.compiler.pipeline as pipeline

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(base_checkpoint, checkpoint)
    write_config_edits(checkpoint, {**edits, attribute: value})

    def no_export(*args, **kwargs):
        raise AssertionError("exported a checkpoint outside the contract")

    monkeypatch.setattr(pipeline, "export_onnx", no_export)
    monkeypatch.setattr(pipeline, "load_model", no_export)
    with pytest.raises(UnsupportedModelError) as refused:
        compile_model(
            str(checkpoint),
            tmp_path / "artifact",
            CompileOptions(target="onnx", quantization="none", tokenizer="none"),
        )
    message = str(refused.value)
    assert refused.value.exit_code == 5
    assert f"{attribute}={value!r}" in message and "\n" not in message
    assert not (tmp_path / "artifact").exists()


def test_relative_positions_are_silently_dropped_by_transformers() -> None:
    """Why `position_embedding_type` other than absolute is refused: transformers 5's BertModel
    builds no relative-distance embedding for it, so such a checkpoint would compile as absolute
    (its `distance_embedding` weights unused)."""
    from transformers import BertConfig, BertModel

    settings = {**TINY_CONFIG, "vocab_size": 64}
    relative = BertModel(BertConfig(**settings, position_embedding_type="relative_key"))
    absolute = BertModel(BertConfig(**settings))
    names = {name for name, _ in relative.named_parameters()}
    assert names == {name for name, _ in absolute.named_parameters()}
    assert not any("distance_embedding" in name for name in names)


def test_the_contract_reads_the_config_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from bertc.compiler.families import check_supported; "
        "check_supported({'model_type': 'bert'}); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
