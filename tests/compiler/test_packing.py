"""The zero-bitmap pack: lossless, smaller than zlib alone on N:M-pruned INT8, safe to unpack."""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from bertc.compiler.core.errors import ArtifactError, OutputExistsError
from bertc.compiler.core.manifest import read_manifest
from bertc.compiler.packing import pack_artifact, pack_bytes, unpack_artifact, unpack_bytes


def pruned_int8(rows: int = 256, cols: int = 512, seed: int = 0) -> bytes:
    """Gaussian int8 weights with the smaller of every pair along a row set to zero (1:2)."""
    rng = np.random.default_rng(seed)
    weights = np.clip(np.round(rng.normal(0, 30, size=(rows, cols))), -127, 127).astype(np.int8)
    pairs = weights.reshape(rows, cols // 2, 2)
    smaller = np.abs(pairs).argmin(axis=-1)
    np.put_along_axis(pairs, smaller[..., None], 0, axis=-1)
    return pairs.reshape(rows, cols).tobytes()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 1000,
        bytes(range(256)) * 10,
        pruned_int8(),
        np.random.default_rng(1).bytes(4097),
    ],
    ids=["empty", "all-zero", "no-zero-run", "pruned-1:2", "random"],
)
def test_pack_round_trips_exactly(data: bytes) -> None:
    assert unpack_bytes(pack_bytes(data)) == data


def test_pack_beats_zlib_on_pruned_weights_and_costs_little_on_dense() -> None:
    sparse = pruned_int8()
    assert len(pack_bytes(sparse)) < 0.85 * len(zlib.compress(sparse, 6))
    dense = np.random.default_rng(2).normal(0, 30, 100_000).astype(np.int8).tobytes()
    assert len(pack_bytes(dense)) <= 1.05 * len(zlib.compress(dense, 6))


def test_artifact_packs_and_unpacks_to_the_same_files(
    compile_once, tiny_classifier: Path, tmp_path: Path
) -> None:
    artifact = compile_once(tiny_classifier, "onnx", quantization="dynamic").artifact_dir
    pack = pack_artifact(artifact, tmp_path / "a.bertcpack")
    assert pack_artifact(artifact, tmp_path / "b.bertcpack").read_bytes() == pack.read_bytes()
    restored = unpack_artifact(pack, tmp_path / "restored")
    manifest = read_manifest(restored)
    for name in manifest["files"]:
        assert (restored / name).read_bytes() == (artifact / name).read_bytes()
    with pytest.raises(OutputExistsError):
        unpack_artifact(pack, tmp_path / "restored")


def test_unpacking_refuses_entries_that_escape_the_directory(tmp_path: Path) -> None:
    pack = tmp_path / "evil.bertcpack"
    payload = pack_bytes(b"x")
    with tarfile.open(pack, "w") as archive:
        info = tarfile.TarInfo("../escaped")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    with pytest.raises(ArtifactError, match="unsafe entry"):
        unpack_artifact(pack, tmp_path / "out")
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "out").exists()
