"""Checkpoints that differ from MiniLM-L6 SST-2 in small ways (issue 17's inputs, issue 16's
malformed configs, a hostile pickle): each compiled to PyTorch's outputs, or refused in one line
with its exit code before anything is exported. Every model is a tiny seeded BERT.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bertc.compiler.core.graph import DEFAULT_PARITY_ATOL
from model_factory import (
    NEGATIVE_SENTENCES,
    POSITIVE_SENTENCES,
    make_checkpoint,
    write_glue_data,
)

EXIT_MODEL_FILE, EXIT_UNSUPPORTED, EXIT_UNSAFE = 4, 5, 6
PAIRS = (
    ("a gorgeous , witty , seductive movie .", "the film is strictly routine ."),
    ("ok", " ".join(["long"] * 300)),  # truncated: the pair's second text is cut
    ("the music makes the movie .", "the music is awful ."),
)


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def drop_token_type_ids(checkpoint: Path) -> Path:
    """The tokenizer returns no token_type_ids (`model_input_names` without them)."""
    names = ["input_ids", "attention_mask"]
    edit_json(checkpoint / "tokenizer_config.json", model_input_names=names)
    return checkpoint


def write_rte(root: Path) -> None:
    rows = [
        (str(index), first, second, "entailment" if index % 2 else "not_entailment")
        for index, (first, second) in enumerate(
            zip(POSITIVE_SENTENCES, NEGATIVE_SENTENCES, strict=True)
        )
    ]
    for split in ("train", "dev"):
        path = root / "RTE" / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["index\tsentence1\tsentence2\tlabel"] + ["\t".join(row) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def glue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_glue_data(tmp_path_factory.mktemp("glue"))
    write_rte(root)
    return root


@pytest.fixture
def compile_cli(bertc_cli: Callable, glue: Path, tmp_path: Path) -> Callable:
    """`compile_cli(checkpoint, *flags)`: (CompletedProcess, artifact path) of a CLI compile."""

    def run(checkpoint: Path, *flags: str, target: str = "onnx", task: str = "sst2"):
        out = tmp_path / f"artifact-{target}-{task}"
        done = bertc_cli(
            "compile", checkpoint, "--out", out, "--target", target, "--task", task,
            "--data-dir", glue, "--calibration-samples", "8", *flags,
        )  # fmt: skip
        return done, out

    return run


def assert_refused(done, code: int, *words: str) -> None:
    """Exit `code`, one line on stderr naming `words`, no traceback."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def pytorch_logits(checkpoint: Path, texts, pairs=None) -> np.ndarray:
    """transformers on the checkpoint, fed what its own tokenizer returns (one at a time)."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = BertForSequenceClassification.from_pretrained(
        str(checkpoint), attn_implementation="eager", dtype=torch.float32
    ).eval()
    rows = []
    for index, text in enumerate(texts):
        encoded = tokenizer(
            text, pairs[index] if pairs else None, truncation=True, max_length=128,
            return_tensors="pt",
        )  # fmt: skip
        assert "token_type_ids" not in encoded  # the case under test
        with torch.no_grad():
            rows.append(model(**encoded).logits.numpy())
    return np.concatenate(rows)


# ---- input 1: a tokenizer without token_type_ids compiles, with zeros wherever ids are built


def test_a_tokenizer_without_segment_ids_compiles_to_pytorch_outputs(
    compile_cli: Callable, tmp_path: Path
) -> None:
    from bertc.targets import loader

    checkpoint = drop_token_type_ids(make_checkpoint(tmp_path / "ck", train_steps=20))
    done, artifact = compile_cli(checkpoint, "--quantization", "none", "--tokenizer", "none")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["token_type_ids"] == "zeros"
    texts = [first for first, _ in PAIRS]
    np.testing.assert_allclose(
        loader.load(artifact).logits(texts),
        pytorch_logits(checkpoint, texts),
        atol=DEFAULT_PARITY_ATOL,
    )


def test_a_pair_model_without_segment_ids_gets_zeros_in_every_runner(
    compile_cli: Callable, tmp_path: Path
) -> None:
    """A pair's second text would get segment id 1 from tokenizer.json's template; the
    checkpoint's tokenizer gives none, so PyTorch sees zeros, and so must the artifact."""
    from bertc.targets import loader

    checkpoint = drop_token_type_ids(make_checkpoint(tmp_path / "ck", head="regression"))
    done, artifact = compile_cli(
        checkpoint, "--quantization", "none", "--tokenizer", "none", task="stsb"
    )
    assert done.returncode == 0, done.stderr
    texts, pairs = [first for first, _ in PAIRS], [second for _, second in PAIRS]
    np.testing.assert_allclose(
        loader.load(artifact).logits(texts, pairs),
        pytorch_logits(checkpoint, texts, pairs),
        atol=DEFAULT_PARITY_ATOL,
    )


def test_a_tokenizer_without_segment_ids_calibrates_and_gates_on_openvino(
    compile_cli: Callable, tmp_path: Path
) -> None:
    """The default compile: static INT8 calibration and the tokenizer conversion, which falls
    back to token ids (with zero segment ids) since its graph would give the encoder none."""
    checkpoint = drop_token_type_ids(make_checkpoint(tmp_path / "ck"))
    done, artifact = compile_cli(checkpoint, target="openvino")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["calibration"]["samples"] == 8
    assert manifest["model"]["token_type_ids"] == "zeros"
    assert manifest["tokenizer"]["mode"] == "none"  # the converter cannot feed segment ids
    assert any("no token_type_ids" in note for note in manifest["notes"])


# ---- input 2: a pair task on a model with one segment embedding


@pytest.mark.parametrize("target", ["openvino", "onnx"])
def test_a_pair_task_on_one_segment_is_refused_before_export(
    compile_cli: Callable, tmp_path: Path, target: str
) -> None:
    checkpoint = make_checkpoint(tmp_path / "ck", {"type_vocab_size": 1})
    done, artifact = compile_cli(checkpoint, target=target, task="rte")
    assert_refused(done, EXIT_UNSUPPORTED, "type_vocab_size is 1", "pair task")
    assert not artifact.exists()


# ---- input 4 and issue 16 kind 7: malformed configs and mismatched vocabularies


def _hidden_130(checkpoint: Path) -> None:
    edit_json(checkpoint / "config.json", hidden_size=130, num_attention_heads=4)


def _weight_map_list(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    shutil.move(weights, checkpoint / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": ["model-00001-of-00001.safetensors"]}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")


def _added_tokens(checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    tokenizer.add_special_tokens({"additional_special_tokens": ["[E1]", "[/E1]"]})
    tokenizer.save_pretrained(str(checkpoint))


BROKEN_CHECKPOINTS: dict[str, tuple[Callable[[Path], None], int, tuple[str, ...]]] = {
    "hidden 130 with 4 heads": (
        _hidden_130,
        EXIT_UNSUPPORTED,
        ("hidden_size=130", "num_attention_heads=4", "contract"),
    ),
    "architectures: 5": (
        lambda c: edit_json(c / "config.json", architectures=5),
        EXIT_UNSUPPORTED,
        ("architectures=5",),
    ),
    'hidden_size: "128"': (
        lambda c: edit_json(c / "config.json", hidden_size="128"),
        EXIT_UNSUPPORTED,
        ("hidden_size='128'",),
    ),
    "zero layers": (
        lambda c: edit_json(c / "config.json", num_hidden_layers=0),
        EXIT_UNSUPPORTED,
        ("num_hidden_layers=0",),
    ),
    "negative intermediate size": (
        lambda c: edit_json(c / "config.json", intermediate_size=-64),
        EXIT_UNSUPPORTED,
        ("intermediate_size=-64",),
    ),
    "weight_map as a list": (_weight_map_list, EXIT_MODEL_FILE, ("weight_map", "list")),
    "vocab_size 64, smaller than the tokenizer": (
        lambda c: edit_json(c / "config.json", vocab_size=64),
        EXIT_UNSUPPORTED,
        ("config.vocab_size is 64",),
    ),
    "added tokens without resized embeddings": (
        _added_tokens,
        EXIT_UNSUPPORTED,
        ("2 added", "resize"),
    ),
    "relative positions": (
        lambda c: edit_json(c / "config.json", position_embedding_type="relative_key"),
        EXIT_UNSUPPORTED,
        ("position_embedding_type='relative_key'",),
    ),
    "a decoder": (
        lambda c: edit_json(c / "config.json", is_decoder=True),
        EXIT_UNSUPPORTED,
        ("is_decoder=True",),
    ),
}


@pytest.mark.parametrize("target", ["openvino", "onnx"])
@pytest.mark.parametrize("case", sorted(BROKEN_CHECKPOINTS))
def test_a_broken_checkpoint_is_refused_in_one_line(
    compile_cli: Callable, tmp_path: Path, case: str, target: str
) -> None:
    damage, code, words = BROKEN_CHECKPOINTS[case]
    checkpoint = make_checkpoint(tmp_path / "ck")
    damage(checkpoint)
    done, artifact = compile_cli(checkpoint, target=target)
    assert_refused(done, code, *words)
    assert not artifact.exists()


@pytest.mark.parametrize(
    ("case", "flagged"),
    [
        ("hidden 130 with 4 heads", "hidden_size=130"),
        ("vocab_size 64, smaller than the tokenizer", "config.vocab_size is 64"),
        ("added tokens without resized embeddings", "2 added"),
    ],
)
def test_inspect_lists_every_contract_violation(
    bertc_cli: Callable, tmp_path: Path, case: str, flagged: str
) -> None:
    checkpoint = make_checkpoint(tmp_path / "ck")
    BROKEN_CHECKPOINTS[case][0](checkpoint)
    done = bertc_cli("inspect", checkpoint, "--json")
    assert done.returncode == 0, done.stderr
    contract = json.loads(done.stdout)["contract"]
    assert any(flagged in line for line in contract)


def test_inspect_lists_all_violations_not_the_first(bertc_cli: Callable, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "ck")
    edit_json(checkpoint / "config.json", architectures=5, hidden_act="hardswish", hidden_size=33)
    done = bertc_cli("inspect", checkpoint)
    assert done.returncode == 0, done.stderr
    assert "contract: 3 violation(s)" in done.stdout
    for word in ("architectures=5", "hidden_act='hardswish'", "hidden_size=33"):
        assert word in done.stdout


def test_a_sound_checkpoint_inspects_as_within_the_contract(
    bertc_cli: Callable, tiny_classifier: Path
) -> None:
    done = bertc_cli("inspect", tiny_classifier, "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["contract"] == []


# ---- weights the loaded model would ignore


def _add_tensors(checkpoint: Path, names: list[str]) -> None:
    from safetensors.torch import load_file, save_file

    path = checkpoint / "model.safetensors"
    state = load_file(str(path))
    state.update({name: torch.zeros(4, 4) for name in names})
    save_file(state, str(path), metadata={"format": "pt"})


def test_weights_the_model_would_ignore_are_refused(compile_cli: Callable, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "ck")
    unused = "bert.encoder.layer.0.attention.self.distance_embedding.weight"
    _add_tensors(checkpoint, [unused])
    done, _ = compile_cli(checkpoint, "--quantization", "none", "--tokenizer", "none")
    assert_refused(done, EXIT_UNSUPPORTED, unused, "would ignore")


def test_benign_unused_weights_compile_with_a_note(tmp_path: Path) -> None:
    from bertc.compiler.loading import load_model

    checkpoint = make_checkpoint(tmp_path / "ck", head="encoder")
    _add_tensors(checkpoint, ["embeddings.position_ids"])
    loaded = load_model(str(checkpoint))
    assert any("ignored" in note and "pooler" in note for note in loaded.notes)


# ---- a pickle that runs code when unpickled


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("command", ["compile", "inspect"])
def test_a_code_executing_pickle_is_refused_without_running(
    bertc_cli: Callable, compile_cli: Callable, tmp_path: Path, command: str
) -> None:
    checkpoint = make_checkpoint(tmp_path / "ck", safetensors=False)
    weights = checkpoint / "pytorch_model.bin"
    state = torch.load(weights, weights_only=True)
    marker = tmp_path / "pwned"
    state["bert.pooler.dense.bias"] = _RunsCode(marker)
    torch.save(state, weights)
    if command == "compile":
        done, artifact = compile_cli(checkpoint, "--allow-pickle")
        assert not artifact.exists()
    else:
        done = bertc_cli("inspect", checkpoint, "--allow-pickle")
    assert_refused(done, EXIT_UNSAFE, "safe loading refused", "posix.system")
    assert "weights_only" not in done.stderr and "False" not in done.stderr
    assert not marker.exists()


# ---- a corrupt or truncated model.safetensors


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def _garble_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:8] + b"{not json" + data[17:])


def _cut_tensor_data(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])


CORRUPTIONS = {"truncated header": _truncate, "garbled header": _garble_header}
CORRUPTIONS["cut tensor data"] = _cut_tensor_data


@pytest.mark.parametrize("command", ["compile", "inspect"])
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_safetensors_file_is_a_model_file_error(
    bertc_cli: Callable, compile_cli: Callable, tmp_path: Path, command: str, corruption: str
) -> None:
    checkpoint = make_checkpoint(tmp_path / "ck")
    CORRUPTIONS[corruption](checkpoint / "model.safetensors")
    if command == "compile":
        done, artifact = compile_cli(checkpoint)
        assert not artifact.exists()
    else:
        done = bertc_cli("inspect", checkpoint)
    assert_refused(done, EXIT_MODEL_FILE, "model.safetensors")


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_loading_weights_from_a_corrupt_file_is_a_model_file_error(
    tmp_path: Path, corruption: str
) -> None:
    from bertc.compiler.core.errors import ModelFileError
    from bertc.compiler.loading import load_weights, read_config
    from transformers import BertForSequenceClassification

    checkpoint = make_checkpoint(tmp_path / "ck")
    CORRUPTIONS[corruption](checkpoint / "model.safetensors")
    with pytest.raises(ModelFileError):
        load_weights(
            BertForSequenceClassification, checkpoint, read_config(checkpoint), allow_pickle=False
        )


# ---- label names that would break one-line-per-example output

BAD_LABEL_NAMES = {
    "newline": ("neg\nEVIL", "U+000A"),
    "tab": ("neg\tx", "U+0009"),
    "carriage return": ("neg\rx", "U+000D"),
    "NUL": ("neg\x00", "U+0000"),
    "zero-width space": ("neg\u200b", "U+200B"),
    "line separator": ("neg\u2028", "U+2028"),
    "paragraph separator": ("neg\u2029", "U+2029"),
    "empty": ("", "empty"),
    "blank": ("   ", "empty"),
    "duplicate": ("positive", "label '1'"),
}


def _label_config(name: str) -> dict[str, Any]:
    id2label = {"0": name, "1": "positive"}
    return {"id2label": id2label, "label2id": {value: int(key) for key, value in id2label.items()}}


@pytest.mark.parametrize("case", sorted(BAD_LABEL_NAMES))
def test_a_label_name_that_cannot_print_on_one_line_is_refused(
    compile_cli: Callable, tmp_path: Path, case: str
) -> None:
    name, words = BAD_LABEL_NAMES[case]
    checkpoint = make_checkpoint(tmp_path / "ck")
    edit_json(checkpoint / "config.json", **_label_config(name))
    done, artifact = compile_cli(checkpoint)
    assert_refused(done, EXIT_UNSUPPORTED, "id2label", words)
    assert not artifact.exists()


@pytest.mark.parametrize("case", sorted(BAD_LABEL_NAMES))
def test_the_contract_names_the_label_id(case: str) -> None:
    from bertc.compiler.contract import contract_violations

    name, words = BAD_LABEL_NAMES[case]
    config = {"model_type": "bert", "num_labels": 2, **_label_config(name)}
    config["label2id"] = {}  # a duplicate name cannot round-trip through label2id
    (violation,) = [v for v in contract_violations(config) if v.attribute == "id2label"]
    assert words in violation.rule and "\n" not in str(violation)


def test_a_non_string_label_name_is_refused() -> None:
    from bertc.compiler.contract import contract_violations

    config = {"model_type": "bert", "num_labels": 2, "id2label": {"0": 7, "1": "pos"}}
    assert any("label '0'" in v.rule for v in contract_violations(config))
