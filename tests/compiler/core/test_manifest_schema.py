"""The manifest's own digest, its field types and the paths it names (compiler/core)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from bertc.compiler.core.errors import ArtifactError
from bertc.compiler.core.manifest import (
    MANIFEST_FILE,
    check_integrity,
    describe_files,
    manifest_digest,
    read_manifest,
    seal_manifest,
    write_manifest,
)
from bertc.compiler.core.manifest_schema import (
    FIELDS,
    MANIFEST_DIGEST_FIELD,
    check_contained,
    check_relative_path,
    named_paths,
    validate_manifest,
)


def minimal_manifest() -> dict[str, Any]:
    """The fields bertc requires, with values of the right types (no runtime files)."""
    return {
        "schema_version": 1,
        "target": "onnx",
        "task": "sst2",
        "source": {"id": "tiny", "path": "/models/tiny", "weights": []},
        "model": {
            "head": "classifier",
            "labels": {"0": "negative", "1": "positive"},
            "max_sequence_length": 128,
            "inputs": ["input_ids", "attention_mask"],
            "outputs": ["logits"],
            "tokenizer_dir": "tokenizer",
            "config": {"hidden_size": 32},
        },
        "runtime": {"name": "onnxruntime", "version": "1.32.0", "model": "model.onnx"},
        "tokenizer": {"mode": "none", "inputs": "token ids", "pair": False},
        "files": {},
        "size": {},
        "parity": {},
        MANIFEST_DIGEST_FIELD: "0" * 64,
    }


def test_the_minimal_manifest_is_valid() -> None:
    validate_manifest(minimal_manifest(), "m")


def _set(manifest: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, key = dotted.split(".")
    for name in parents:
        manifest = manifest[name]
    if value is _DELETE:
        del manifest[key]
    else:
        manifest[key] = value


_DELETE = object()
WRONG = [
    ("model", "a string", "'model' must be an object"),
    ("model.labels", ["negative", "positive"], "'model.labels' must be an object or null"),
    ("model.labels", 5, "'model.labels'"),
    ("model.labels", {"0": 1}, "model.labels['0']"),
    ("model.labels", {"first": "a"}, "not a class index"),
    ("model.max_sequence_length", "128", "'model.max_sequence_length' must be an integer"),
    ("model.max_sequence_length", True, "must be an integer, not true or false"),
    ("model.max_sequence_length", 0, "not 1 to"),
    ("model.inputs", "input_ids", "'model.inputs' must be a list"),
    ("model.inputs", ["input_ids", "pixels"], "'model.inputs[1]' is 'pixels'"),
    ("model.head", "ranker", "'model.head' is 'ranker'"),
    ("runtime.name", "tensorrt", "'runtime.name' is 'tensorrt'"),
    ("runtime.model", 3, "'runtime.model' must be a string"),
    ("runtime", _DELETE, "'runtime' is missing"),
    ("runtime.model", _DELETE, "'runtime.model' is missing"),
    ("tokenizer.mode", _DELETE, "'tokenizer.mode' is missing"),
    ("tokenizer.pair", "yes", "'tokenizer.pair' must be true or false"),
    ("files", [], "'files' must be an object"),
    ("task", 7, "'task' must be a string or null"),
    (MANIFEST_DIGEST_FIELD, _DELETE, f"'{MANIFEST_DIGEST_FIELD}' is missing"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"), WRONG, ids=[f"{w[0]}-{w[2]}" for w in WRONG]
)
def test_a_field_of_the_wrong_type_names_the_field(field: str, value: Any, message: str) -> None:
    manifest = minimal_manifest()
    _set(manifest, field, value)
    with pytest.raises(ArtifactError, match="^m: .*") as error:
        validate_manifest(manifest, "m")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value", [[], "x", 3, None])
def test_a_manifest_that_is_not_an_object_is_refused(value: Any) -> None:
    with pytest.raises(ArtifactError, match="not a manifest"):
        validate_manifest(value, "m")


def test_every_required_field_is_in_the_minimal_manifest() -> None:
    """Each required top-level field's deletion is caught (the spec and the fixture agree)."""
    for field, _, required in FIELDS:
        if required and "." not in field and not field.endswith(("[]", "{}")):
            manifest = minimal_manifest()
            del manifest[field]
            with pytest.raises(ArtifactError, match=f"'{field}' is missing"):
                validate_manifest(manifest, "m")


@pytest.mark.parametrize(
    "value",
    ["model.onnx", "tokenizer/vocab.txt", "a.b/c"],
)
def test_plain_relative_paths_pass(value: str) -> None:
    assert check_relative_path(value, "runtime.model", "m") == value


@pytest.mark.parametrize(
    "value",
    ["", ".", "..", "../x", "a/../b", "./a", "a//b", "a/", "/etc/passwd", "C:/x", "a\\b", "a\0b"],
)
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(ArtifactError, match="runtime.model .* not a plain relative path"):
        check_relative_path(value, "runtime.model", "m")


def test_containment_follows_symbolic_links(tmp_path: Path) -> None:
    inside, outside = tmp_path / "artifact", tmp_path / "outside.txt"
    inside.mkdir()
    outside.write_text("x")
    (inside / "real.txt").write_text("y")
    (inside / "inner").symlink_to(inside / "real.txt")
    (inside / "escape").symlink_to(outside)
    assert check_contained(inside, "inner", "f") == (inside / "real.txt").resolve()
    with pytest.raises(ArtifactError, match="outside the artifact"):
        check_contained(inside, "escape", "f")


def test_named_paths_lists_every_file_field() -> None:
    manifest = minimal_manifest()
    manifest["runtime"].update(weights="model.bin", operator_config="ops.config")
    manifest["tokenizer"]["model"] = "tokenizer.xml"
    assert sorted(named_paths(manifest)) == [
        ("runtime.model", "model.onnx"),
        ("runtime.operator_config", "ops.config"),
        ("runtime.weights", "model.bin"),
        ("tokenizer.model", "tokenizer.xml"),
    ]


# ---- the manifest's own digest


def test_the_digest_changes_with_any_field_and_ignores_key_order() -> None:
    manifest = minimal_manifest()
    digest = manifest_digest(manifest)
    reordered = dict(reversed(list(copy.deepcopy(manifest).items())))
    assert manifest_digest(reordered) == digest
    for change in (
        lambda m: m["model"]["labels"].update({"0": "positive", "1": "negative"}),
        lambda m: m.update(task="mrpc"),
        lambda m: m["model"]["config"].update(hidden_size=33),
    ):
        edited = copy.deepcopy(manifest)
        change(edited)
        assert manifest_digest(edited) != digest


def test_the_digest_ignores_its_own_field() -> None:
    manifest = minimal_manifest()
    sealed = seal_manifest(manifest)
    assert sealed[MANIFEST_DIGEST_FIELD] == manifest_digest(manifest)
    assert seal_manifest(sealed) == sealed


def test_the_loader_computes_the_same_digest() -> None:
    from bertc.targets import loader

    manifest = json.loads(json.dumps(seal_manifest(minimal_manifest() | {"note": "é ✓"})))
    assert loader.manifest_digest(manifest) == manifest[MANIFEST_DIGEST_FIELD]


def _artifact(tmp_path: Path) -> Path:
    directory = tmp_path / "artifact"
    (directory / "tokenizer").mkdir(parents=True)
    (directory / "model.onnx").write_bytes(b"model")
    (directory / "tokenizer" / "tokenizer.json").write_text("{}")
    manifest = minimal_manifest()
    manifest["files"] = describe_files(directory)
    write_manifest(directory, manifest)
    return directory


def test_a_written_manifest_passes_and_an_edited_one_fails(tmp_path: Path) -> None:
    directory = _artifact(tmp_path)
    check_integrity(directory, read_manifest(directory))
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["model"]["labels"]["0"] = "great"
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest.json has changed since the build"):
        check_integrity(directory, read_manifest(directory))


def test_the_signature_and_reports_are_outside_the_file_list(tmp_path: Path) -> None:
    directory = _artifact(tmp_path)
    (directory / "model.sig").write_text("{}")
    (directory / "reports").mkdir()
    (directory / "reports" / "verify-sst2.md").write_text("x")
    assert "model.sig" not in describe_files(directory)
    check_integrity(directory, read_manifest(directory))


def test_a_tokenizer_dir_with_no_listed_file_is_refused(tmp_path: Path) -> None:
    directory = _artifact(tmp_path)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["model"]["tokenizer_dir"] = "empty"
    (directory / "empty").mkdir()
    write_manifest(directory, manifest)
    with pytest.raises(ArtifactError, match="tokenizer_dir 'empty' holds no file"):
        check_integrity(directory, read_manifest(directory))


@pytest.mark.parametrize(
    "content",
    ["[" * 100_000, "not json", b"\xff\xfe".decode("latin-1"), '{"a": 1'],
    ids=str.__len__,
)
def test_an_unreadable_manifest_is_one_artifact_error(tmp_path: Path, content: str) -> None:
    (tmp_path / MANIFEST_FILE).write_text(content, encoding="latin-1")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_a_manifest_that_is_a_folder_is_one_artifact_error(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).mkdir()
    with pytest.raises(ArtifactError):
        read_manifest(tmp_path)


def test_a_symbolic_link_loop_is_one_artifact_error(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(ArtifactError, match="cannot be resolved"):
        check_contained(tmp_path, "a", "runtime.model")


def test_a_manifest_without_its_digest_says_to_recompile(tmp_path: Path) -> None:
    directory = _artifact(tmp_path)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    del manifest[MANIFEST_DIGEST_FIELD]
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="older bertc or edited; recompile"):
        read_manifest(directory)
