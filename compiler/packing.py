"""A download form of an artifact that turns pruned weights' zeros into bytes saved.

INT8 weights pruned N:M are half (or more) zero bytes interleaved with values; a general
compressor spends about a bit on every zero and cannot drop them. The pack splits each file into
a bitmap of its non-zero bytes and the non-zero bytes themselves, each deflated (zlib level 6):
the bitmap of an N:M matrix is regular and the zeros vanish from the value stream, while dense
regions (embeddings, fp32 constants) cost what zlib alone would. Lossless and layout-agnostic:
unpacking restores every file byte for byte, checked against the manifest's sha256.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
from bertc.compiler.core.errors import ArtifactError, OutputExistsError, UsageError
from bertc.compiler.core.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    check_integrity,
    read_manifest,
)

ZLIB_LEVEL = 6
_MAGIC = b"BERTCZB1"
_HEADER = struct.Struct("<8sQQQ")  # magic, original length, bitmap length, values length
PACK_SUFFIX = ".bertcpack"


def pack_bytes(data: bytes) -> bytes:
    """Bitmap of non-zero bytes + the non-zero bytes, each deflated."""
    array = np.frombuffer(data, dtype=np.uint8)
    nonzero = array != 0
    bitmap = zlib.compress(np.packbits(nonzero).tobytes(), ZLIB_LEVEL)
    values = zlib.compress(array[nonzero].tobytes(), ZLIB_LEVEL)
    return _HEADER.pack(_MAGIC, len(array), len(bitmap), len(values)) + bitmap + values


def unpack_bytes(packed: bytes) -> bytes:
    """The exact bytes `pack_bytes` was given."""
    magic, length, bitmap_length, values_length = _HEADER.unpack_from(packed)
    if magic != _MAGIC:
        raise ArtifactError("not a bertc zero-bitmap stream")
    start = _HEADER.size
    bitmap = np.frombuffer(zlib.decompress(packed[start : start + bitmap_length]), np.uint8)
    values = np.frombuffer(
        zlib.decompress(packed[start + bitmap_length : start + bitmap_length + values_length]),
        np.uint8,
    )
    nonzero = np.unpackbits(bitmap, count=length).astype(bool)
    restored = np.zeros(length, dtype=np.uint8)
    restored[nonzero] = values
    return restored.tobytes()


def zlib6_size(data: bytes) -> int:
    return len(zlib.compress(data, ZLIB_LEVEL))


def pack_artifact(artifact: Path, out_file: Path | None = None) -> Path:
    """Write `<artifact>.bertcpack`: a tar of every file, each as a zero-bitmap stream."""
    manifest = read_manifest(artifact)
    check_integrity(artifact, manifest)
    out_file = out_file or artifact.with_name(artifact.name + PACK_SUFFIX)
    if out_file.exists():
        raise OutputExistsError(f"{out_file} already exists")
    _check_parent(out_file)
    signed = [SIGNATURE_FILE] if (artifact / SIGNATURE_FILE).is_file() else []
    names = sorted([*manifest["files"], MANIFEST_FILE, *signed])  # a signed artifact stays signed
    handle, temporary = tempfile.mkstemp(prefix=f".{out_file.name}.", dir=out_file.parent)
    os.close(handle)
    try:
        with tarfile.open(temporary, "w") as archive:
            for name in names:
                payload = pack_bytes((artifact / name).read_bytes())
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                info.mtime = 0  # the same artifact packs to the same bytes
                archive.addfile(info, io.BytesIO(payload))
        os.replace(temporary, out_file)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return out_file


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent} does not exist: create it, or choose another --out")


# What a damaged or foreign file raises while it is read as a pack.
DAMAGED_PACK_ERRORS = (
    tarfile.TarError,
    EOFError,
    struct.error,
    zlib.error,
    ValueError,
    KeyError,
    UnicodeDecodeError,
    OSError,
)


def unpack_artifact(pack_file: Path, out_dir: Path) -> Path:
    """Restore the artifact directory from a pack and check it against its manifest.

    Raises OutputExistsError (exit 13) when `out_dir` exists, UsageError (2) when its folder
    does not, ArtifactError (11) for a missing, damaged or foreign pack; nothing is left behind.
    """
    if out_dir.exists():
        raise OutputExistsError(f"{out_dir} already exists")
    _check_parent(out_dir)
    if not Path(pack_file).is_file():
        raise ArtifactError(f"no such pack file: {pack_file}")
    try:
        return _unpack(pack_file, out_dir)
    except (ArtifactError, OutputExistsError):
        raise
    except DAMAGED_PACK_ERRORS as error:
        raise ArtifactError(
            f"{pack_file} is not a readable bertc pack ({type(error).__name__}: {error})"
        ) from error


def _unpack(pack_file: Path, out_dir: Path) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        with tarfile.open(pack_file, "r") as archive:
            for member in archive.getmembers():
                target = (staging / member.name).resolve()
                if not member.isfile() or staging.resolve() not in target.parents:
                    raise ArtifactError(f"{pack_file} holds an unsafe entry: {member.name}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(unpack_bytes(archive.extractfile(member).read()))
        check_integrity(staging, read_manifest(staging))
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
