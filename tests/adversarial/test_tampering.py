"""Integrity that cannot be walked around: a hostile edit of an artifact or a checkpoint.

Each case is refused with its documented code and one line, by every reader: `bertc verify`,
`bertc run` and the runtime-only loader (exit 11), and for a checkpoint's shard index, the
checkpoint reader (exit 4). Path cases reseal the manifest (recompute `manifest_sha256`), so the
path check itself is what refuses them, not the digest.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bertc.compiler.core.enums import QuantizationMode, TokenizerMode
from bertc.compiler.core.errors import ArtifactError, ModelFileError
from bertc.compiler.core.hashing import sha256_file
from bertc.compiler.core.manifest import MANIFEST_FILE, write_manifest
from bertc.targets import loader

# target -> the compile options of its artifact (dynamic INT8: no calibration, quick).
BUILDS: dict[str, dict[str, Any]] = {
    "onnx": {"quantization": QuantizationMode.DYNAMIC},
    "openvino": {"quantization": QuantizationMode.DYNAMIC, "tokenizer": TokenizerMode.SEPARATE},
    "ort-mobile": {"quantization": QuantizationMode.DYNAMIC},
}
# Every field of a manifest that names a file (or the tokenizer folder), per target.
PATH_FIELDS = [
    ("onnx", "runtime.model"),
    ("onnx", "model.tokenizer_dir"),
    ("openvino", "runtime.model"),
    ("openvino", "runtime.weights"),
    ("openvino", "tokenizer.model"),
    ("ort-mobile", "runtime.model"),
    ("ort-mobile", "runtime.operator_config"),
]
ATTACKS = ("parent", "absolute", "symlink-out", "unlisted")
READERS = ("verify", "run", "loader")


@pytest.fixture
def artifact(compile_once, tiny_classifier, tmp_path: Path) -> Callable[[str], Path]:
    """`artifact(target)`: a private copy of that target's tiny artifact, inside its own folder
    (so `../` lands beside it, in the test's tmp_path)."""

    def copy(target: str) -> Path:
        built = compile_once(tiny_classifier, target, **BUILDS[target]).artifact_dir
        destination = tmp_path / "store" / f"artifact-{target}"
        shutil.copytree(built, destination)
        return destination

    return copy


def get_field(manifest: dict[str, Any], dotted: str) -> Any:
    value: Any = manifest
    for key in dotted.split("."):
        value = value[key]
    return value


def set_field(manifest: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, key = dotted.split(".")
    section = manifest
    for name in parents:
        section = section[name]
    section[key] = value


def read(artifact: Path) -> dict[str, Any]:
    return json.loads((artifact / MANIFEST_FILE).read_text(encoding="utf-8"))


def copy_any(source: Path, destination: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, destination)
    else:
        shutil.copyfile(source, destination)


def listing(path: Path, name: str) -> dict[str, dict[str, Any]]:
    """Files-section entries for `path` (a file or a folder) as the artifact's `name`."""
    if path.is_file():
        return {name: {"bytes": path.stat().st_size, "sha256": sha256_file(path)}}
    return {
        f"{name}/{file.relative_to(path).as_posix()}": {
            "bytes": file.stat().st_size,
            "sha256": sha256_file(file),
        }
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def plant(artifact: Path, field: str, attack: str) -> str:
    """Point `field` at a copy of what it names, placed as `attack` says; reseal the manifest.
    Returns the new value."""
    manifest = read(artifact)
    current = artifact / get_field(manifest, field)
    outside = artifact.parent.parent / "elsewhere"
    outside.mkdir(exist_ok=True)
    if attack == "parent":
        copy_any(current, artifact.parent / f"outside-{current.name}")
        value = f"../outside-{current.name}"
    elif attack == "absolute":
        copy_any(current, outside / current.name)
        value = str((outside / current.name).resolve())
    elif attack == "symlink-out":
        copy_any(current, outside / current.name)
        link = artifact / f"link-{current.name}"
        link.symlink_to(outside / current.name)
        value = link.name
        # Listed with the right hashes: only the containment check stands in the way.
        manifest["files"].update(listing(outside / current.name, value))
    else:  # unlisted: inside the artifact, but not in its files section
        copy_any(current, artifact / f"unlisted-{current.name}")
        value = f"unlisted-{current.name}"
    set_field(manifest, field, value)
    write_manifest(artifact, manifest)
    return value


def cli(monkeypatch, capsys, *args: Any) -> tuple[int, str]:
    """`bertc ARGS` in this process: (exit code, stderr)."""
    from bertc.compiler.cli import main

    monkeypatch.setattr(sys, "argv", ["bertc", *map(str, args)])
    capsys.readouterr()  # what fixtures printed before (compile progress bars)
    code = 0
    try:
        main()
    except SystemExit as exit:
        code = int(exit.code or 0)
    return code, capsys.readouterr().err


def refusal(reader: str, artifact: Path, glue_data_dir: Path, monkeypatch, capsys) -> str:
    """Run `reader` on the artifact; assert it refuses with exit 11 and one line; the line."""
    if reader == "loader":
        with pytest.raises(loader.ArtifactLoadError) as error:
            loader.load(artifact)
        assert loader.main([str(artifact), "a fine film"]) == ArtifactError.exit_code
        message = str(error.value)
    else:
        args = (
            ["verify", artifact, "--task", "sst2", "--data-dir", glue_data_dir]
            if reader == "verify"
            else ["run", artifact, "a fine film"]
        )
        code, stderr = cli(monkeypatch, capsys, *args)
        assert code == ArtifactError.exit_code, stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
        message = stderr
    assert "\n" not in message.strip()
    return message


# ---- every path a manifest names x every way out of the artifact x every reader


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize(("target", "field"), PATH_FIELDS, ids=[f"{t}-{f}" for t, f in PATH_FIELDS])
def test_a_path_out_of_the_artifact_is_refused(
    artifact, glue_data_dir, monkeypatch, capsys, target, field, attack, reader
) -> None:
    directory = artifact(target)
    plant(directory, field, attack)
    message = refusal(reader, directory, glue_data_dir, monkeypatch, capsys)
    assert field in message or "symbolic link" in message


def test_a_symbolic_link_out_of_the_artifact_is_refused_even_unnamed(
    artifact, glue_data_dir, monkeypatch, capsys
) -> None:
    """A link no manifest field names, listed with its target's hashes: still refused."""
    directory = artifact("onnx")
    target = directory.parent / "secret.txt"
    target.write_text("outside")
    (directory / "notes.txt").symlink_to(target)
    manifest = read(directory)
    manifest["files"].update(listing(target, "notes.txt"))
    write_manifest(directory, manifest)
    message = refusal("run", directory, glue_data_dir, monkeypatch, capsys)
    assert "notes.txt" in message and "outside the artifact" in message


# ---- an edited manifest (not resealed) is refused by every reader

EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "label names": lambda m: m["model"]["labels"].update({"0": "great", "1": "awful"}),
    "label order": lambda m: m["model"].update(
        labels={"0": m["model"]["labels"]["1"], "1": m["model"]["labels"]["0"]}
    ),
    "task": lambda m: m.update(task="mrpc"),
    "compile config": lambda m: m["model"]["config"].update(hidden_size=64),
    "tokenizer pair": lambda m: m["tokenizer"].update(pair=not m["tokenizer"]["pair"]),
    "runtime model": lambda m: m["runtime"].update(model="../elsewhere.onnx"),
    "files section": lambda m: m["files"].popitem(),
    "digest removed": lambda m: m.pop("manifest_sha256"),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_manifest_is_refused(
    artifact, glue_data_dir, monkeypatch, capsys, edit, reader
) -> None:
    directory = artifact("onnx")
    manifest = read(directory)
    EDITS[edit](manifest)
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    message = refusal(reader, directory, glue_data_dir, monkeypatch, capsys)
    assert "manifest_sha256" in message


# ---- one flipped byte in any file, the manifest included


@pytest.mark.parametrize("reader", ("verify", "run"))
@pytest.mark.parametrize("target", list(BUILDS))
def test_a_flipped_byte_in_any_file_is_refused(
    artifact, glue_data_dir, monkeypatch, capsys, target, reader
) -> None:
    pristine = artifact(target)
    names = [MANIFEST_FILE, *read(pristine)["files"]]
    assert len(names) >= 4
    for name in names:
        directory = pristine.with_name(f"{pristine.name}-flipped")
        shutil.copytree(pristine, directory)
        data = bytearray((directory / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (directory / name).write_bytes(bytes(data))
        message = refusal(reader, directory, glue_data_dir, monkeypatch, capsys)
        expected = "manifest" if name == MANIFEST_FILE else name
        assert expected in message, (name, message)
        shutil.rmtree(directory)


def test_the_loader_refuses_a_flipped_byte_in_the_manifest(artifact, glue_data_dir) -> None:
    """The loader checks the manifest's digest (model files are `bertc verify`'s to hash)."""
    directory = artifact("ort-mobile")
    data = bytearray((directory / MANIFEST_FILE).read_bytes())
    position = data.index(b'"negative"') + 2
    data[position] ^= 0x01  # still valid JSON: a label renamed by one bit
    (directory / MANIFEST_FILE).write_bytes(bytes(data))
    with pytest.raises(loader.ArtifactLoadError, match="manifest_sha256"):
        loader.load(directory)


# ---- a checkpoint's shard index names only files of the checkpoint


def sharded_copy(tiny_classifier: Path, destination: Path) -> Path:
    """The tiny checkpoint with its weights as one shard named by a safetensors index."""
    shutil.copytree(tiny_classifier, destination)
    (destination / "model.safetensors").rename(destination / "model-00001-of-00001.safetensors")
    from safetensors import safe_open

    with safe_open(str(destination / "model-00001-of-00001.safetensors"), "np") as handle:
        names = list(handle.keys())
    index = {"metadata": {}, "weight_map": dict.fromkeys(names, "model-00001-of-00001.safetensors")}
    (destination / "model.safetensors.index.json").write_text(json.dumps(index))
    return destination


def _escape_parent(checkpoint: Path) -> Any:
    shutil.copyfile(
        checkpoint / "model-00001-of-00001.safetensors", checkpoint.parent / "outside.safetensors"
    )
    return "../outside.safetensors"


def _escape_absolute(checkpoint: Path) -> Any:
    shutil.copyfile(
        checkpoint / "model-00001-of-00001.safetensors", checkpoint.parent / "abs.safetensors"
    )
    return str((checkpoint.parent / "abs.safetensors").resolve())


def _escape_folder(checkpoint: Path) -> Any:
    (checkpoint / "sub").mkdir()
    shutil.copyfile(
        checkpoint / "model-00001-of-00001.safetensors", checkpoint / "sub" / "w.safetensors"
    )
    return "sub/w.safetensors"


SHARD_ESCAPES = {
    "parent": _escape_parent,
    "absolute": _escape_absolute,
    "subfolder": _escape_folder,
    "dot-dot": lambda checkpoint: "..",
    "empty": lambda checkpoint: "",
}
# The whole index replaced by something that is not a {tensor: shard file} map.
BAD_INDEXES = {
    "weight_map a list": {"weight_map": ["model-00001-of-00001.safetensors"]},
    "weight_map a string": {"weight_map": "model-00001-of-00001.safetensors"},
    "weight_map empty": {"weight_map": {}},
    "shard a number": {"weight_map": {"bert.embeddings.word_embeddings.weight": 1}},
    "no weight_map": {"metadata": {}},
    "index a list": [1, 2],
}


def _inspect_refuses(checkpoint: Path, monkeypatch, capsys) -> str:
    code, stderr = cli(monkeypatch, capsys, "inspect", checkpoint)
    assert code == ModelFileError.exit_code, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    return stderr


@pytest.mark.parametrize("escape", list(SHARD_ESCAPES))
def test_a_shard_index_naming_a_file_outside_the_checkpoint_is_refused(
    tiny_classifier, tmp_path, monkeypatch, capsys, escape
) -> None:
    from bertc.compiler.loading import load_model

    checkpoint = sharded_copy(tiny_classifier, tmp_path / "checkpoint")
    index_path = checkpoint / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = SHARD_ESCAPES[escape](checkpoint)
    index_path.write_text(json.dumps(index))
    assert "outside the checkpoint" in _inspect_refuses(checkpoint, monkeypatch, capsys)
    with pytest.raises(ModelFileError, match="outside the checkpoint"):
        load_model(str(checkpoint))


@pytest.mark.parametrize("bad", list(BAD_INDEXES))
def test_a_malformed_shard_index_is_one_line_exit_4(
    tiny_classifier, tmp_path, monkeypatch, capsys, bad
) -> None:
    checkpoint = sharded_copy(tiny_classifier, tmp_path / "checkpoint")
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(BAD_INDEXES[bad]))
    assert "not a valid shard index" in _inspect_refuses(checkpoint, monkeypatch, capsys)


def test_a_plain_shard_index_still_loads(tiny_classifier, tmp_path, monkeypatch, capsys) -> None:
    """The check refuses escapes, not sharded checkpoints."""
    checkpoint = sharded_copy(tiny_classifier, tmp_path / "checkpoint")
    code, stderr = cli(monkeypatch, capsys, "inspect", checkpoint)
    assert code == 0, stderr


# ---- a resealed manifest (its digest recomputed) that no bertc writes: every reader refuses


def _add_listed(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["files"].update({name: {"sha256": "0" * 64, "bytes": 1}})


def _set_labels(labels: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        manifest["model"]["labels"] = labels
        manifest["head"]["labels"] = labels

    return edit


RESEALED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "files names a parent path": (_add_listed("../tiny/config.json"), "../tiny/config.json"),
    "files names an absolute path": (_add_listed("/etc/hostname"), "/etc/hostname"),
    "files names a dot path": (_add_listed("./x/../y"), "./x/../y"),
    "schema version 999": (lambda m: m.update(schema_version=999), "schema"),
    "schema version 0": (lambda m: m.update(schema_version=0), "schema"),
    "head a string": (lambda m: m.update(head="evil"), "head"),
    "head a list": (lambda m: m.update(head=[]), "head"),
    "head problem type unknown": (lambda m: m["head"].update(problem_type="evil"), "head"),
    "too few labels": (_set_labels({"0": "a"}), "labels"),
    "too many labels": (_set_labels({"0": "a", "1": "b", "2": "c"}), "labels"),
    "labels not 0..N-1": (_set_labels({"0": "a", "5": "b"}), "labels"),
    "head labels differ": (lambda m: m["head"].update(labels={"0": "x", "1": "y"}), "labels"),
    "newline in a label": (_set_labels({"0": "neg\nEVIL", "1": "pos"}), "U+000A"),
    "tab in a label": (_set_labels({"0": "neg", "1": "p\tos"}), "U+0009"),
    "empty label": (_set_labels({"0": "", "1": "pos"}), "empty"),
    "blank label": (_set_labels({"0": "neg", "1": "  "}), "empty"),
    "zero-width label": (_set_labels({"0": "neg\u200b", "1": "pos"}), "U+200B"),
    "line separator label": (_set_labels({"0": "neg\u2028x", "1": "pos"}), "U+2028"),
    "duplicate labels": (_set_labels({"0": "same", "1": "same"}), "label '1'"),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("edit", list(RESEALED))
def test_a_resealed_manifest_no_bertc_writes_is_refused(
    artifact, glue_data_dir, monkeypatch, capsys, edit, reader
) -> None:
    directory = artifact("onnx")
    manifest = read(directory)
    change, word = RESEALED[edit]
    change(manifest)
    write_manifest(directory, manifest)
    message = refusal(reader, directory, glue_data_dir, monkeypatch, capsys)
    assert word in message, message
