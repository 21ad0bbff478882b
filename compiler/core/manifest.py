"""The artifact's manifest: provenance, hashes, versions and what compression did.

An app or CI job reads it to know what it holds; `verify` checks every file against it before
trusting a number.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bertc.compiler.core.errors import ArtifactError
from bertc.compiler.core.hashing import sha256_file

MANIFEST_FILE = "manifest.json"
# Written into an artifact after its build (verify's reports), so outside the integrity check.
REPORTS_DIR = "reports"
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
    """Bytes and sha256 of every file under the artifact except the manifest itself."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST_FILE:
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


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> Path:
    path = directory / MANIFEST_FILE
    path.write_text(
        json.dumps(to_jsonable(manifest), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return path


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an artifact directory, or one line saying why it is not an artifact."""
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise ArtifactError(f"no such artifact directory: {directory}")
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {MANIFEST_FILE}: not a bertc artifact")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} holds a JSON {type(manifest).__name__}, not a manifest object")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema version {manifest.get('schema_version')!r}; "
            f"this bertc reads {SCHEMA_VERSION}"
        )
    return manifest


def check_integrity(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse an artifact whose files are missing, extra or changed since the build."""
    recorded = manifest.get("files", {})
    if not isinstance(recorded, dict) or not all(
        isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
        for entry in recorded.values()
    ):
        raise ArtifactError(f"artifact {directory}: the manifest's files section is malformed")
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
