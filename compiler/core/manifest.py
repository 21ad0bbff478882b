"""The artifact's manifest: provenance, hashes, versions and what compression did.

An app or CI job reads it to know what it holds; `verify` checks every file against it before
trusting a number. The manifest covers itself too: `manifest_sha256` is the sha256 of its
canonical JSON (every other field, keys sorted, separators `,` and `:`, non-ASCII
escaped), so an edited label, task or config is refused like an edited weight. Hashes
detect corruption and naive edits; only a signature (`model.sig`, see `bertc.compiler.signing`)
proves who built the artifact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bertc.compiler.core.errors import ArtifactError
from bertc.compiler.core.hashing import sha256_file
from bertc.compiler.core.manifest_schema import (
    MANIFEST_DIGEST_FIELD,
    check_contained,
    check_label_count,
    check_named_paths,
    check_relative_path,
    validate_manifest,
)

MANIFEST_FILE = "manifest.json"
# Written into an artifact after its build (verify's reports), so outside the integrity check.
REPORTS_DIR = "reports"
# The artifact's signature (`bertc sign`): written after the manifest, so outside its files list;
# the signature itself covers every file, the manifest included.
SIGNATURE_FILE = "model.sig"
UNLISTED_FILES = (MANIFEST_FILE, SIGNATURE_FILE)
SCHEMA_VERSION = 1
TOOLCHAIN_PACKAGES = ("bertc", "torch", "transformers", "onnx", "onnxruntime", "openvino", "nncf")
# CPU features that decide whether an INT8 model is fast, or even accurate, on a machine.
ISA_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
)


def toolchain_versions() -> dict[str, str]:
    """Installed versions of the packages that shape an artifact's bytes."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in TOOLCHAIN_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def host_description() -> dict[str, Any]:
    """The build machine's architecture and the INT8-relevant ISA flags it has."""
    import platform

    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                flags.update(line.split(":", 1)[1].split())
                break
    return {
        "machine": platform.machine(),
        "isa": sorted(flag for flag in ISA_FLAGS if flag in flags),
    }


def describe_files(directory: Path) -> dict[str, dict[str, Any]]:
    """Bytes and sha256 of every file under the artifact except the manifest and signature."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.relative_to(directory).as_posix() not in UNLISTED_FILES:
            relative = path.relative_to(directory).as_posix()
            files[relative] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return files


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths and enums as plain JSON values, keys sorted by json.dumps."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_jsonable(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value") and hasattr(value, "name"):  # enums
        return value.value
    return value


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """Hex sha256 of the manifest's canonical JSON, every field but `manifest_sha256` itself."""
    body = {
        key: value for key, value in to_jsonable(manifest).items() if key != MANIFEST_DIGEST_FIELD
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest as JSON values with its `manifest_sha256` (re)computed."""
    sealed = {
        key: value for key, value in to_jsonable(manifest).items() if key != MANIFEST_DIGEST_FIELD
    }
    sealed[MANIFEST_DIGEST_FIELD] = manifest_digest(sealed)
    return sealed


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest, sealed with its own digest (`seal_manifest`)."""
    path = directory / MANIFEST_FILE
    path.write_text(
        json.dumps(seal_manifest(manifest), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return path


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an artifact directory, every field bertc reads of the right type, or
    ArtifactError in one line saying why it is not an artifact (naming the field)."""
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise ArtifactError(f"no such artifact directory: {directory}")
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {MANIFEST_FILE}: not a bertc artifact")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from error
    except OSError as error:
        raise ArtifactError(f"cannot read {path}: {error.strerror or error}") from error
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} holds a JSON {type(manifest).__name__}, not a manifest object")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema version {manifest.get('schema_version')!r}; "
            f"this bertc reads {SCHEMA_VERSION}"
        )
    if MANIFEST_DIGEST_FIELD not in manifest:
        raise ArtifactError(
            f"{path} has no {MANIFEST_DIGEST_FIELD}: it was written by an older bertc or edited; "
            "recompile the artifact"
        )
    validate_manifest(manifest, str(path))
    return manifest


def check_integrity(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse an artifact whose manifest changed since the build, whose files are missing, extra
    or changed, that holds a symbolic link leading outside it, or whose manifest names a file
    that is not a listed, plain relative path inside it (ArtifactError, exit 11). Expects a
    manifest `read_manifest` returned (its fields already typed)."""
    recorded_digest = manifest.get(MANIFEST_DIGEST_FIELD)
    if recorded_digest != manifest_digest(manifest):
        raise ArtifactError(
            f"artifact {directory} failed its integrity check: {MANIFEST_FILE} has changed since "
            f"the build (its sha256 differs from {MANIFEST_DIGEST_FIELD})"
        )
    check_label_count(manifest, f"artifact {directory}")
    recorded = manifest["files"]
    for name in recorded:
        check_relative_path(name, "files entry", f"artifact {directory}")
    check_named_paths(directory, manifest, set(recorded))
    check_links(directory)
    actual = {
        name: entry
        for name, entry in describe_files(directory).items()
        if not name.startswith(f"{REPORTS_DIR}/")
    }
    problems = []
    for name in sorted(set(recorded) - set(actual)):
        problems.append(f"{name} is missing")
    for name in sorted(set(actual) - set(recorded)):
        problems.append(f"{name} is not in the manifest")
    for name in sorted(set(recorded) & set(actual)):
        if recorded[name]["sha256"] != actual[name]["sha256"]:
            problems.append(f"{name} has changed (sha256 differs)")
    if problems:
        raise ArtifactError(
            f"artifact {directory} failed its integrity check: " + "; ".join(problems)
        )


def check_links(directory: Path) -> None:
    """Refuse a symbolic link anywhere in the artifact that resolves outside it."""
    for folder, subfolders, files in os.walk(directory):
        for name in [*subfolders, *files]:
            path = Path(folder) / name
            if path.is_symlink():
                relative = path.relative_to(directory).as_posix()
                check_contained(directory, relative, "the symbolic link")
