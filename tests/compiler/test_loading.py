"""Loading: checkpoints become the module transformers would build, or one clear typed error."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bertc.compiler.core.errors import (
    ModelFileError,
    ModelNotFoundError,
    UnsafeCheckpointError,
    UnsupportedModelError,
    UsageError,
)
from bertc.compiler.export import encode
from bertc.compiler.families import check_supported
from bertc.compiler.loading import load_model, resolve_source
from bertc.compiler.options import DEFAULT_MAX_SEQUENCE_LENGTH
from model_factory import (
    REAL_CONFIGS,
    corrupt_safetensors_header,
    make_checkpoint,
    truncate_file,
    write_hub_cache,
)

SENTENCES = ("a gorgeous , witty , seductive movie .", "the film is strictly routine .", "ok")


def run_module(loaded, sentences=SENTENCES) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, ...]]:
    batch = encode(loaded, sentences, padding_to=None)
    with torch.no_grad():
        outputs = loaded.module(*(torch.from_numpy(batch[name]) for name in loaded.input_names))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return batch, tuple(output.numpy() for output in outputs)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_classifier_loads_as_transformers_builds_it(tiny_classifier: Path) -> None:
    from transformers import BertForSequenceClassification, BertTokenizerFast

    loaded = load_model(str(tiny_classifier))
    assert loaded.head == "classifier"
    assert loaded.family.name == "bert"
    assert loaded.label_map == {0: "negative", 1: "positive"}
    assert loaded.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert loaded.output_names == ("logits",)
    assert loaded.notes == ()
    batch, (logits,) = run_module(loaded)
    reference = BertForSequenceClassification.from_pretrained(str(tiny_classifier)).eval()
    tokenizer = BertTokenizerFast.from_pretrained(str(tiny_classifier))
    encoded = tokenizer(list(SENTENCES), padding=True, return_tensors="pt")
    assert np.array_equal(encoded["input_ids"].numpy(), batch["input_ids"])
    with torch.no_grad():
        expected = reference(**encoded).logits.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_weight_files_are_recorded_with_their_hash(tiny_classifier: Path) -> None:
    loaded = load_model(str(tiny_classifier))
    weights = tiny_classifier / "model.safetensors"
    (recorded,) = loaded.weight_files
    assert recorded.name == "model.safetensors"
    assert recorded.bytes == weights.stat().st_size
    assert recorded.sha256 == sha256(weights)
    assert recorded.dtype == "F32"


def test_an_explicit_max_sequence_length_past_the_position_table_is_refused(
    tiny_classifier: Path,
) -> None:
    positions = json.loads((tiny_classifier / "config.json").read_text())["max_position_embeddings"]
    with pytest.raises(UsageError, match=rf"max_position_embeddings \({positions}\)"):
        load_model(str(tiny_classifier), max_sequence_length=4 * positions)
    assert load_model(str(tiny_classifier), max_sequence_length=16).max_sequence_length == 16


def test_the_default_max_sequence_length_is_cut_to_the_position_table(tmp_path: Path) -> None:
    positions = DEFAULT_MAX_SEQUENCE_LENGTH // 2
    loaded = load_model(str(make_checkpoint(tmp_path, {"max_position_embeddings": positions})))
    assert loaded.max_sequence_length == positions
    assert any("max_position_embeddings" in note for note in loaded.notes)


def test_regression_head_has_one_output_and_no_labels(tmp_path: Path) -> None:
    loaded = load_model(str(make_checkpoint(tmp_path, head="regression")))
    assert loaded.head == "regression"
    assert loaded.label_map is None
    _, (logits,) = run_module(loaded)
    assert logits.shape == (len(SENTENCES), 1)


def test_encoder_returns_hidden_states_and_their_masked_mean(tiny_encoder: Path) -> None:
    loaded = load_model(str(tiny_encoder))
    assert loaded.head == "encoder"
    assert loaded.output_names == ("last_hidden_state", "sentence_embedding")
    batch, (hidden, embedding) = run_module(loaded)
    mask = batch["attention_mask"][..., None].astype(np.float32)
    assert mask.min() == 0  # padding present, so a plain mean would differ
    expected = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
    np.testing.assert_allclose(embedding, expected, atol=1e-5)


def test_masked_lm_checkpoint_compiles_as_an_encoder(tmp_path: Path) -> None:
    loaded = load_model(str(make_checkpoint(tmp_path, head="encoder", masked_lm=True)))
    assert loaded.head == "encoder"
    assert any("cls.predictions" in note for note in loaded.notes)


def test_tinybert_layout_is_recognised_and_fit_denses_ignored(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    directory = make_checkpoint(tmp_path, head="encoder", fit_denses=True)
    config = json.loads((directory / "config.json").read_text())
    assert "model_type" not in config and "architectures" not in config
    assert not (directory / "tokenizer.json").exists()  # TinyBERT ships vocab.txt only
    loaded = load_model(str(directory))
    assert loaded.family.name == "tinybert"
    assert loaded.head == "encoder"
    layers = config["num_hidden_layers"]
    assert any(
        "fit_denses" in note and f"ignored {2 * (layers + 1)} " in note for note in loaded.notes
    )
    # The same encoder built by hand from the `bert.`-prefixed tensors gives the same states.
    state = load_file(str(directory / "model.safetensors"))
    reference = BertModel(BertConfig(**config), add_pooling_layer=False).eval()
    reference.load_state_dict(
        {
            name.removeprefix("bert."): tensor
            for name, tensor in state.items()
            if name.startswith("bert.") and ".pooler." not in name
        }
    )
    batch, (hidden, _) = run_module(loaded)
    with torch.no_grad():
        expected = reference(**{key: torch.from_numpy(value) for key, value in batch.items()})
    np.testing.assert_allclose(hidden, expected.last_hidden_state.numpy(), atol=1e-5)


def test_fp16_weights_are_upcast_with_a_note(tmp_path: Path) -> None:
    loaded = load_model(str(make_checkpoint(tmp_path, fp16=True)))
    assert loaded.weight_files[0].dtype == "F16"
    assert {parameter.dtype for parameter in loaded.module.parameters()} == {torch.float32}
    assert any("float16" in note and "fp32" in note for note in loaded.notes)


def test_pickle_weights_need_an_explicit_opt_in(tmp_path: Path) -> None:
    directory = make_checkpoint(tmp_path, safetensors=False)
    with pytest.raises(UnsafeCheckpointError, match="--allow-pickle"):
        load_model(str(directory))
    loaded = load_model(str(directory), allow_pickle=True)
    assert loaded.weight_files[0].name == "pytorch_model.bin"
    assert loaded.weight_files[0].sha256 == sha256(directory / "pytorch_model.bin")


def _roberta(directory: Path) -> Path:
    directory.mkdir(parents=True)
    config = {"model_type": "roberta", "architectures": ["RobertaForSequenceClassification"]}
    (directory / "config.json").write_text(json.dumps({**REAL_CONFIGS["bert-tiny"], **config}))
    return directory


def _without(name: str):
    def damage(directory: Path) -> Path:
        (directory / name).unlink()
        return directory

    return damage


def _corrupt_config(directory: Path) -> Path:
    (directory / "config.json").write_text('{"model_type": "bert", ')
    return directory


def _damaged_weights(damage):
    def apply(directory: Path) -> Path:
        damage(directory / "model.safetensors")
        return directory

    return apply


def _no_pooler(directory: Path) -> Path:
    shutil.rmtree(directory)
    return make_checkpoint(directory, drop_pooler=True)


BAD_CHECKPOINTS = {
    "roberta": (lambda d: _roberta(d / "roberta"), UnsupportedModelError, "model_type='roberta'"),
    "missing config": (_without("config.json"), ModelFileError, "no config.json"),
    "corrupt config": (_corrupt_config, ModelFileError, "not valid JSON"),
    "no weights": (_without("model.safetensors"), ModelFileError, "has no weights"),
    "corrupt weights": (
        _damaged_weights(corrupt_safetensors_header),
        ModelFileError,
        "not a readable safetensors",
    ),
    "truncated weights": (
        _damaged_weights(truncate_file),
        ModelFileError,
        "not a readable safetensors",
    ),
    "missing pooler": (_no_pooler, ModelFileError, "lacks 2 weights"),
    "no tokenizer": (
        lambda d: _without("tokenizer.json")(_without("vocab.txt")(d)),
        ModelFileError,
        "no tokenizer files",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoints_raise_one_typed_error(tmp_path: Path, case: str) -> None:
    damage, error, message = BAD_CHECKPOINTS[case]
    directory = damage(make_checkpoint(tmp_path / "checkpoint"))
    with pytest.raises(error, match=message) as raised:
        load_model(str(directory))
    assert "\n" not in str(raised.value)


def test_missing_directory_and_file_paths_are_told_apart(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such model directory"):
        resolve_source(str(tmp_path / "absent"))
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match="is a file"):
        resolve_source(str(tmp_path / "weights.safetensors"))


def test_hub_id_resolves_from_a_cache_named_after_import(
    tmp_path: Path, tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub  # noqa: F401  (its constants are read now, before the env changes)

    hub_id = "google/bert_uncased_L-2_H-128_A-2"
    snapshot = write_hub_cache(tmp_path / "hub", hub_id, tiny_classifier)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_source(hub_id) == snapshot
    loaded = load_model(hub_id)
    assert loaded.source == hub_id
    assert loaded.weight_files[0].sha256 == sha256(tiny_classifier / "model.safetensors")
    # HF_HOME alone names the cache as HF_HOME/hub.
    monkeypatch.delenv("HF_HUB_CACHE")
    shutil.move(tmp_path / "hub", tmp_path / "home" / "hub")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert resolve_source(hub_id).is_relative_to(tmp_path / "home" / "hub")


def test_hub_id_not_in_the_cache_names_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="empty-cache"):
        resolve_source("google/bert_uncased_L-4_H-256_A-4")


@pytest.mark.parametrize(
    ("config", "supported"),
    [
        ({"model_type": "bert", "architectures": ["BertForMaskedLM"]}, True),
        (dict(REAL_CONFIGS["tinybert-4l"]), True),  # TinyBERT: no model_type, BERT keys
        ({"hidden_size": 312}, False),  # no model_type and not BERT-shaped
        ({"model_type": "bert", "architectures": ["RobertaModel"]}, False),
        ({"model_type": "distilbert"}, False),
    ],
)
def test_architecture_check_reads_the_config_alone(config: dict, supported: bool) -> None:
    if supported:
        check_supported(config)
    else:
        with pytest.raises(UnsupportedModelError, match="unsupported architecture"):
            check_supported(config)
