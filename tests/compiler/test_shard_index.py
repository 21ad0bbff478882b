"""A sharded checkpoint's index names shard files of that checkpoint only (compiler/loading)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bertc.compiler.core.errors import ModelFileError
from bertc.compiler.loading import find_weight_files


def checkpoint_with_index(directory: Path, weight_map: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "a.safetensors").write_bytes(b"x")
    (directory / "b.safetensors").write_bytes(b"y")
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


def test_the_shards_of_a_plain_index_are_found(tmp_path: Path) -> None:
    checkpoint = checkpoint_with_index(tmp_path, {"w1": "a.safetensors", "w2": "b.safetensors"})
    assert find_weight_files(checkpoint, allow_pickle=False) == (
        checkpoint / "a.safetensors",
        checkpoint / "b.safetensors",
    )


def test_a_shard_may_be_a_symbolic_link_as_in_the_hub_cache(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "0123").write_bytes(b"x")
    checkpoint = checkpoint_with_index(tmp_path / "snapshot", {"w": "c.safetensors"})
    (checkpoint / "c.safetensors").symlink_to(blobs / "0123")
    assert find_weight_files(checkpoint, allow_pickle=False) == (checkpoint / "c.safetensors",)


@pytest.mark.parametrize(
    "shard", ["../a.safetensors", "/tmp/a.safetensors", "sub/a.safetensors", "..", "", "C:a"]
)
def test_a_shard_outside_the_checkpoint_is_refused(tmp_path: Path, shard: str) -> None:
    checkpoint = checkpoint_with_index(tmp_path, {"w1": "a.safetensors", "w2": shard})
    with pytest.raises(ModelFileError, match="outside the checkpoint directory"):
        find_weight_files(checkpoint, allow_pickle=False)


@pytest.mark.parametrize("weight_map", [["a.safetensors"], "a.safetensors", {}, {"w": 3}, None])
def test_a_weight_map_of_the_wrong_type_is_a_model_file_error(
    tmp_path: Path, weight_map: object
) -> None:
    checkpoint = checkpoint_with_index(tmp_path, weight_map)
    with pytest.raises(ModelFileError, match="not a valid shard index"):
        find_weight_files(checkpoint, allow_pickle=False)
