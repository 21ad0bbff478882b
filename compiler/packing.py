"""A download form of an artifact that turns pruned weights' zeros into bytes saved.

INT8 weights pruned N:M are half (or more) zero bytes interleaved with values; a general
compressor spends about a bit on every zero and cannot drop them. The pack splits each file into
a bitmap of its non-zero bytes and the non-zero bytes themselves, each deflated (zlib level 6):
the bitmap of an N:M matrix is regular and the zeros vanish from the value stream, while dense
regions (embeddings, fp32 constants) cost what zlib alone would. Lossless and layout-agnostic:
unpacking restores every file byte for byte, checked against the manifest's sha256.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
from bertc.compiler.core.errors import (
    ArtifactError,
    OutputExistsError,
    OutputWriteError,
    UsageError,
)
from bertc.compiler.core.files import check_output, make_staging_dir, move_into_place, writing
from bertc.compiler.core.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    check_integrity,
    read_manifest,
)

ZLIB_LEVEL = 6
MAX_SIGNATURE_BYTES = 1 << 20  # a model-signing bundle is a few KiB
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
    """The exact bytes `pack_bytes` was given (whole streams in memory: for small payloads;
    `unpack_artifact` streams each file with its size capped instead)."""
    sink = io.BytesIO()
    magic, length, _, _ = _HEADER.unpack_from(packed)
    if magic != _MAGIC:
        raise ArtifactError("not a bertc zero-bitmap stream")
    _restore_stream(_SpanReader(io.BytesIO(packed), 0, len(packed)), length, sink.write)
    return sink.getvalue()


def zlib6_size(data: bytes) -> int:
    return len(zlib.compress(data, ZLIB_LEVEL))


def pack_artifact(artifact: Path, out_file: Path | None = None) -> Path:
    """Write `<artifact>.bertcpack`: a tar of every file, each as a zero-bitmap stream."""
    manifest = read_manifest(artifact)
    check_integrity(artifact, manifest)
    out_file = out_file or artifact.with_name(artifact.name + PACK_SUFFIX)
    check_output(out_file, overwrite=False, sources=[artifact])  # never inside the artifact
    if out_file.exists():
        raise OutputExistsError(f"{out_file} already exists")
    _check_parent(out_file)
    signed = [SIGNATURE_FILE] if (artifact / SIGNATURE_FILE).is_file() else []
    names = sorted([*manifest["files"], MANIFEST_FILE, *signed])  # a signed artifact stays signed
    with writing(out_file):
        handle, temporary = tempfile.mkstemp(prefix=f".{out_file.name}.", dir=out_file.parent)
        os.close(handle)
    try:
        with writing(out_file), tarfile.open(temporary, "w") as archive:
            for name in names:
                payload = pack_bytes((artifact / name).read_bytes())
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                info.mtime = 0  # the same artifact packs to the same bytes
                archive.addfile(info, io.BytesIO(payload))
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0o600; a pack is for sharing
        os.replace(temporary, out_file)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return out_file


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent} does not exist: create it, or choose another --out")


# Sane upper bounds, whatever a pack claims: a manifest is a few kB, an artifact (bert-base fp32
# with its tokenizer) under 1 GB, a pack a few dozen members.
MAX_MANIFEST_BYTES = 16 << 20
MAX_ARTIFACT_BYTES = 16 << 30
MAX_MEMBERS = 4096
# Bytes of bitmap inflated at a time: 64 KiB of bitmap restores 512 KiB of a file.
_BITMAP_BLOCK = 64 << 10
_READ_BLOCK = 64 << 10

# What a damaged or foreign file raises while it is read as a pack (OSError: the pack itself
# cannot be read; a failure to write the output is told apart in `unpack_artifact`).
DAMAGED_PACK_ERRORS = (
    tarfile.TarError,
    EOFError,
    struct.error,
    zlib.error,
    ValueError,
    KeyError,
    UnicodeDecodeError,
)


T = TypeVar("T")


class _DamagedPack(Exception):
    """What makes a pack unreadable, said in a few words (becomes an ArtifactError)."""


class _SpanReader:
    """`length` bytes of a binary file from `offset`, read in blocks (never all at once)."""

    def __init__(self, handle: BinaryIO, offset: int, length: int) -> None:
        self.handle, self.position, self.left = handle, offset, length

    def read(self, size: int) -> bytes:
        size = min(size, self.left)
        if size <= 0:
            return b""
        self.handle.seek(self.position)
        data = self.handle.read(size)
        if not data:
            raise _DamagedPack("the pack ends inside a member")
        self.position += len(data)
        self.left -= len(data)
        return data


class _BoundedInflater:
    """A zlib stream read `exactly(n)` bytes at a time: `max_length` caps every inflate call,
    so no header's or stream's claim makes more than the caller asks for sit in memory."""

    def __init__(self, source: _SpanReader, what: str) -> None:
        self.source, self.what = source, what
        self.inflater = zlib.decompressobj()
        self.pending = b""

    def exactly(self, size: int) -> bytes:
        parts, wanted = [], size
        while wanted:
            if not self.pending:
                if self.inflater.eof:
                    raise _DamagedPack(f"its {self.what} stream ends early")
                self.pending = self.source.read(_READ_BLOCK)
                if not self.pending:
                    raise _DamagedPack(f"its {self.what} stream is cut short")
            chunk = self._inflate(wanted)
            self.pending = self.inflater.unconsumed_tail
            parts.append(chunk)
            wanted -= len(chunk)
            if self.inflater.eof and self.inflater.unused_data:
                raise _DamagedPack(f"its {self.what} stream has bytes after its end")
        return b"".join(parts)

    def _inflate(self, most: int) -> bytes:
        try:
            return self.inflater.decompress(self.pending, most)
        except zlib.error as error:  # a damaged stream, or its adler-32 check failed
            raise _DamagedPack(f"its {self.what} stream is corrupt ({error})") from error

    def finish(self) -> None:
        """The stream must end exactly here: no more output, its end reached, nothing after."""
        while not self.inflater.eof:
            if not self.pending:
                self.pending = self.source.read(_READ_BLOCK)
                if not self.pending:
                    raise _DamagedPack(f"its {self.what} stream is cut short")
            if self._inflate(1):
                raise _DamagedPack(
                    f"its {self.what} stream holds more than the file's recorded size"
                )
            self.pending = self.inflater.unconsumed_tail
        if self.pending or self.inflater.unused_data or self.source.left:
            raise _DamagedPack(f"its {self.what} stream has bytes after its end")


def _restore_stream(member: _SpanReader, length: int, write: Callable[[bytes], object]) -> None:
    """Inflate one zero-bitmap stream (header already checked to hold `length`) block by block
    into `write`; every stream is capped at the size the file must have."""
    header = member.read(_HEADER.size)
    if len(header) != _HEADER.size:
        raise _DamagedPack("it is shorter than its header")
    magic, claimed, bitmap_length, values_length = _HEADER.unpack(header)
    if magic != _MAGIC:
        raise _DamagedPack("it is not a bertc zero-bitmap stream")
    if claimed != length:
        raise _DamagedPack(f"it claims {claimed} bytes where {length} are recorded")
    if bitmap_length + values_length != member.left:
        raise _DamagedPack("its stream lengths do not add up to its size")
    handle, start = member.handle, member.position
    bitmap = _BoundedInflater(_SpanReader(handle, start, bitmap_length), "bitmap")
    values = _BoundedInflater(_SpanReader(handle, start + bitmap_length, values_length), "values")
    left = length
    while left:
        count = min(left, 8 * _BITMAP_BLOCK)
        block = np.frombuffer(bitmap.exactly((count + 7) // 8), np.uint8)
        nonzero = np.unpackbits(block, count=count).astype(bool)
        restored = np.zeros(count, dtype=np.uint8)
        restored[nonzero] = np.frombuffer(values.exactly(int(nonzero.sum())), np.uint8)
        write(restored.tobytes())
        left -= count
    bitmap.finish()
    values.finish()


def _restore_member(
    handle: BinaryIO, member: tarfile.TarInfo, length: int, write: Callable[[bytes], object]
) -> None:
    """`_restore_stream` of one tar member; its damage is told with the member's name."""
    try:
        _restore_stream(_SpanReader(handle, member.offset_data, member.size), length, write)
    except _DamagedPack as error:
        raise _DamagedPack(f"{member.name}: {error}") from error


def unpack_artifact(pack_file: Path, out_dir: Path) -> Path:
    """Restore the artifact directory from a pack and check it against its manifest.

    The manifest is read first (at most MAX_MANIFEST_BYTES); only the files it lists are
    restored, each inflated in blocks and capped at its recorded size, its sha256 checked as it
    is written. Disk use is bounded by the manifest's listed sizes (at most
    MAX_ARTIFACT_BYTES), memory by a block. Raises OutputExistsError (exit 13) when `out_dir`
    exists, UsageError (2) when its folder does not or lacks the room, ArtifactError (11) for a
    missing, damaged or foreign pack; nothing is left behind.
    """
    if not Path(pack_file).is_file():
        raise ArtifactError(f"no such pack file: {pack_file}")
    check_output(out_dir, overwrite=False, sources=[pack_file])
    if out_dir.exists():
        raise OutputExistsError(f"{out_dir} already exists")
    _check_parent(out_dir)
    try:
        return _unpack(pack_file, out_dir)
    except _DamagedPack as error:
        raise ArtifactError(f"{pack_file} is a damaged bertc pack: {error}") from error
    except (ArtifactError, OutputExistsError, OutputWriteError):
        raise
    except DAMAGED_PACK_ERRORS as error:
        raise ArtifactError(
            f"{pack_file} is not a readable bertc pack ({type(error).__name__}: {error})"
        ) from error
    except OSError as error:  # writing: a read-only or full file system
        raise UsageError(f"cannot unpack into {out_dir.parent}: {error}") from error


def _unpack(pack_file: Path, out_dir: Path) -> Path:
    with open(pack_file, "rb") as handle:
        try:  # "r:": an uncompressed tar only, as pack_artifact writes
            with tarfile.open(fileobj=handle, mode="r:") as archive:
                members = _members(archive)
        except OSError as error:
            raise ArtifactError(f"cannot read {pack_file}: {error}") from error
        if MANIFEST_FILE not in members:
            raise _DamagedPack(f"it holds no {MANIFEST_FILE}")
        staging = make_staging_dir(out_dir)
        try:
            with writing(staging):
                manifest_bytes = _member_bytes(handle, members[MANIFEST_FILE], MAX_MANIFEST_BYTES)
                (staging / MANIFEST_FILE).write_bytes(manifest_bytes)
                files = _listed_files(_staged(read_manifest, staging))
                _check_members(members, files)
                _check_room(files, out_dir)
                for name in sorted(files):
                    _restore_file(handle, members[name], staging / name, *files[name])
                if SIGNATURE_FILE in members:  # not hashed: `verify --public-key` checks it
                    signature = _member_bytes(handle, members[SIGNATURE_FILE], MAX_SIGNATURE_BYTES)
                    (staging / SIGNATURE_FILE).write_bytes(signature)
                _staged(lambda where: check_integrity(where, read_manifest(where)), staging)
                move_into_place(staging, out_dir, overwrite=False)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _staged(check: Callable[[Path], T], staging: Path) -> T:
    """`check(staging)`, its ArtifactError a _DamagedPack naming the files as the pack does
    (not the internal staging path)."""
    try:
        return check(staging)
    except ArtifactError as error:
        message = str(error).replace(f"{staging}{os.sep}", "").replace(str(staging), "it")
        raise _DamagedPack(message) from error


def _members(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """The pack's members by name: regular files only, each name once, at most MAX_MEMBERS."""
    members: dict[str, tarfile.TarInfo] = {}
    while (member := archive.next()) is not None:
        if len(members) >= MAX_MEMBERS:
            raise _DamagedPack(f"it holds more than {MAX_MEMBERS} members")
        if not member.isfile():
            raise _DamagedPack(f"it holds an unsafe entry: {member.name} (not a regular file)")
        if member.name != MANIFEST_FILE and not _is_safe_name(member.name):
            raise _DamagedPack(f"it holds an unsafe entry: {member.name}")
        if member.name in members:
            raise _DamagedPack(f"it holds {member.name} twice")
        members[member.name] = member
    return members


def _listed_files(manifest: dict) -> dict[str, tuple[int, str]]:
    """The manifest's files and their recorded (bytes, sha256); each name relative and inside."""
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        raise _DamagedPack("its manifest has no files section")
    files = {}
    for name, entry in recorded.items():
        size, digest = (
            (entry.get("bytes"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
        )
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _DamagedPack(f"its manifest records no size for {name!r}")
        if not isinstance(digest, str):
            raise _DamagedPack(f"its manifest records no sha256 for {name!r}")
        if not _is_safe_name(name):
            raise _DamagedPack(f"it holds an unsafe entry: {name}")
        files[name] = (size, digest)
    _check_collisions(files)
    total = sum(size for size, _ in files.values())
    if total > MAX_ARTIFACT_BYTES:
        raise _DamagedPack(
            f"its manifest lists {total:,} bytes, more than an artifact may hold "
            f"({MAX_ARTIFACT_BYTES:,})"
        )
    return files


def _check_collisions(names: Iterable[str]) -> None:
    """_DamagedPack when two listed names cannot both be files of one directory: one is a folder
    of another (`zz` and `zz/a`), they differ only in case (one file on a case-insensitive file
    system), or one stands where the manifest or the signature goes."""
    names = sorted(names)
    folded: dict[str, str] = {}
    for name in names:
        if name.split("/")[0] in (MANIFEST_FILE, SIGNATURE_FILE):
            raise _DamagedPack(
                f"its manifest lists {name}, where its own {name.split('/')[0]} goes"
            )
        if (twin := folded.setdefault(name.casefold(), name)) != name:
            raise _DamagedPack(f"its manifest lists {twin} and {name} (the same name but for case)")
    folders = {
        "/".join(name.split("/")[:i]) for name in names for i in range(1, name.count("/") + 1)
    }
    folded_folders = {folder.casefold() for folder in folders}
    for name in names:
        if name.casefold() in folded_folders:
            raise _DamagedPack(f"its manifest lists {name} both as a file and as a folder")


def _is_safe_name(name: str) -> bool:
    """A plain relative POSIX path below the directory: no `..`, `.`, empty part or root."""
    parts = name.split("/")
    return (
        name != MANIFEST_FILE
        and "\\" not in name
        and "\0" not in name
        and all(part not in ("", ".", "..") for part in parts)
    )


def _check_members(members: dict[str, tarfile.TarInfo], files: dict[str, tuple]) -> None:
    unlisted = sorted(set(members) - set(files) - {MANIFEST_FILE, SIGNATURE_FILE})
    if unlisted:
        raise _DamagedPack(f"it holds {unlisted[0]}, which its manifest does not list")
    missing = sorted(set(files) - set(members))
    if missing:
        raise _DamagedPack(f"it lacks {missing[0]}, which its manifest lists")


def _check_room(files: dict[str, tuple[int, str]], out_dir: Path) -> None:
    needed = sum(size for size, _ in files.values())
    free = shutil.disk_usage(out_dir.parent).free
    if needed > free:
        raise UsageError(f"unpacking needs {needed:,} bytes but {out_dir.parent} has {free:,} free")


def _member_bytes(handle: BinaryIO, member: tarfile.TarInfo, limit: int) -> bytes:
    """A small member (the manifest) restored in memory, refused past `limit` bytes."""
    header = _SpanReader(handle, member.offset_data, member.size).read(_HEADER.size)
    if len(header) != _HEADER.size:
        raise _DamagedPack(f"{member.name} is shorter than its header")
    length = _HEADER.unpack(header)[1]
    if length > limit:
        raise _DamagedPack(f"{member.name} claims {length:,} bytes (at most {limit:,})")
    sink = io.BytesIO()
    _restore_member(handle, member, length, sink.write)
    return sink.getvalue()


def _restore_file(
    handle: BinaryIO, member: tarfile.TarInfo, target: Path, length: int, sha256: str
) -> None:
    """One listed file written block by block, at most its recorded size; its sha256 must be
    the manifest's."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(target, "xb") as sink:

        def write(block: bytes) -> None:
            digest.update(block)
            sink.write(block)

        _restore_member(handle, member, length, write)
    if digest.hexdigest() != sha256:
        raise _DamagedPack(f"{member.name} has changed (sha256 differs from the manifest's)")


def _umask() -> int:
    """The process's umask (read by setting it, then set back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask
