"""The runtime-only loader's own checks of a manifest (targets/loader.py imports no bertc module,
so it carries its own): the digest, the fields it reads, the paths it opens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bertc.compiler.core.manifest_schema import FIELDS, MANIFEST_DIGEST_FIELD
from bertc.targets import loader


def sealed(manifest: dict[str, Any]) -> dict[str, Any]:
    body = {key: value for key, value in manifest.items() if key != MANIFEST_DIGEST_FIELD}
    return {**body, MANIFEST_DIGEST_FIELD: loader.manifest_digest(body)}


def manifest_for(directory: Path) -> dict[str, Any]:
    (directory / "tokenizer").mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer" / "tokenizer.json").write_text("{}")
    (directory / "model.onnx").write_bytes(b"model")
    return {
        "schema_version": 1,
        "task": "sst2",
        "model": {
            "head": "classifier",
            "labels": {"0": "negative", "1": "positive"},
            "max_sequence_length": 128,
            "inputs": ["input_ids"],
            "outputs": ["logits"],
            "tokenizer_dir": "tokenizer",
        },
        "runtime": {"name": "onnxruntime", "model": "model.onnx"},
        "tokenizer": {"mode": "none", "pair": False},
        "files": {"model.onnx": {}, "tokenizer/tokenizer.json": {}},
    }


def write(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_a_sealed_manifest_reads(tmp_path: Path) -> None:
    manifest = sealed(manifest_for(tmp_path))
    write(tmp_path, manifest)
    assert loader.read_manifest(tmp_path) == manifest


def test_an_unsealed_edit_is_refused(tmp_path: Path) -> None:
    manifest = sealed(manifest_for(tmp_path))
    manifest["model"]["labels"]["0"] = "great"
    write(tmp_path, manifest)
    with pytest.raises(loader.ArtifactLoadError, match="has changed since the build"):
        loader.read_manifest(tmp_path)


def _set(manifest: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, key = dotted.split(".")
    for name in parents:
        manifest = manifest[name]
    manifest[key] = value


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model.head", 3, "'model.head' must be str"),
        ("model.head", "ranker", "'model.head' is 'ranker'"),
        ("model.labels", ["a"], "'model.labels' must be dict or null"),
        ("model.labels", {"x": "a"}, "'model.labels' holds 'x'"),
        ("model.max_sequence_length", "128", "'model.max_sequence_length' must be int"),
        ("model.max_sequence_length", 10**12, "'model.max_sequence_length' is"),
        ("model.inputs", ["pixels"], "'model.inputs' holds 'pixels'"),
        ("model.outputs", [1], "'model.outputs' holds 1"),
        ("runtime.static_shapes", {"sequence_buckets": [0]}, "sequence_buckets' holds 0"),
        ("runtime.compile_config", {"A": [1]}, "compile_config.A"),
        ("tokenizer.mode", "bpe", "'tokenizer.mode' is 'bpe'"),
        ("tokenizer", "fused", "'tokenizer' must be dict or null"),
        ("files", [], "'files' must be dict"),
    ],
)
def test_a_field_of_the_wrong_type_is_one_load_error(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    manifest = manifest_for(tmp_path)
    _set(manifest, field, value)
    write(tmp_path, sealed(manifest))
    with pytest.raises(loader.ArtifactLoadError) as error:
        loader.read_manifest(tmp_path)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("runtime.model", "../model.onnx", "not a plain relative path"),
        ("runtime.model", "/etc/hostname", "not a plain relative path"),
        ("runtime.model", "other.onnx", "not in the manifest's files section"),
        ("runtime.weights", "a/./b.bin", "not a plain relative path"),
        ("runtime.operator_config", "..", "not a plain relative path"),
        ("tokenizer.model", "C:/tokenizer.xml", "not a plain relative path"),
        ("model.tokenizer_dir", "../tokenizer", "not a plain relative path"),
        ("model.tokenizer_dir", "vocab", "holds no file"),
    ],
)
def test_a_path_out_of_the_artifact_is_refused(
    tmp_path: Path, field: str, value: str, message: str
) -> None:
    manifest = manifest_for(tmp_path)
    _set(manifest, field, value)
    write(tmp_path, sealed(manifest))
    with pytest.raises(loader.ArtifactLoadError, match=message):
        loader.read_manifest(tmp_path)


def test_a_listed_symbolic_link_out_of_the_artifact_is_refused(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    manifest = manifest_for(artifact)
    (tmp_path / "elsewhere.onnx").write_bytes(b"other model")
    (artifact / "link.onnx").symlink_to(tmp_path / "elsewhere.onnx")
    manifest["runtime"]["model"] = "link.onnx"
    manifest["files"]["link.onnx"] = {}
    write(artifact, sealed(manifest))
    with pytest.raises(loader.ArtifactLoadError, match="resolves outside the artifact"):
        loader.read_manifest(artifact)


def test_a_tokenizer_json_linked_out_of_the_artifact_is_refused(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    manifest = manifest_for(artifact)
    (tmp_path / "tokenizer.json").write_text("{}")
    (artifact / "tokenizer" / "tokenizer.json").unlink()
    (artifact / "tokenizer" / "tokenizer.json").symlink_to(tmp_path / "tokenizer.json")
    write(artifact, sealed(manifest))
    with pytest.raises(loader.ArtifactLoadError, match="tokenizer.json resolves outside"):
        loader.read_manifest(artifact)


def test_the_loaders_field_types_agree_with_bertcs() -> None:
    """Two copies of the schema (the loader imports no bertc module): the same types where both
    name a field."""
    bertc_types = {field: set(types) for field, types, _ in FIELDS}
    for section, key, types, _, _ in loader._FIELDS:
        dotted = f"{section}.{key}".lstrip(".")
        assert dotted in bertc_types, dotted
        assert set(types) == bertc_types[dotted], dotted


def test_a_symbolic_link_loop_is_one_load_error(tmp_path: Path) -> None:
    manifest = manifest_for(tmp_path)
    (tmp_path / "a.onnx").symlink_to(tmp_path / "b.onnx")
    (tmp_path / "b.onnx").symlink_to(tmp_path / "a.onnx")
    manifest["runtime"]["model"] = "a.onnx"
    manifest["files"]["a.onnx"] = {}
    write(tmp_path, sealed(manifest))
    with pytest.raises(loader.ArtifactLoadError, match="cannot be resolved"):
        loader.read_manifest(tmp_path)


def test_a_manifest_without_its_digest_says_to_recompile(tmp_path: Path) -> None:
    write(tmp_path, manifest_for(tmp_path))
    with pytest.raises(loader.ArtifactLoadError, match="older bertc or edited; recompile"):
        loader.read_manifest(tmp_path)


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("MANIFEST_FILE", "bertc.compiler.core.manifest"),
        ("ISA_FLAGS", "bertc.compiler.core.manifest"),
        ("MANIFEST_DIGEST_FIELD", "bertc.compiler.core.manifest_schema"),
    ],
)
def test_the_loaders_copies_of_bertc_constants_stay_equal(name: str, source: str) -> None:
    """The loader imports no bertc module (vendorable), so it repeats these; held equal here."""
    import importlib

    assert getattr(loader, name) == getattr(importlib.import_module(source), name)
