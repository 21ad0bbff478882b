"""What a manifest must hold before bertc reads it: each field's type, and each path it names.

A manifest is input like any other: a field of the wrong type (a string where a section is
expected, a number where labels are), a missing key, or a path that leaves the artifact is
refused here with ArtifactError (exit 11) and one line naming the field, before any runtime or
report code reads it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from bertc.compiler.core.errors import ArtifactError

# The manifest's own digest: sha256 of its canonical JSON without this field (see manifest.py).
MANIFEST_DIGEST_FIELD = "manifest_sha256"
# The manifest schema versions this bertc reads (core/manifest.py writes the newest).
SUPPORTED_SCHEMA_VERSIONS = range(1, 2)
# Unicode categories a label name may not hold: control, format, line and paragraph separators
# (a tab or newline in a label would break `bertc run`'s one-line-per-example output).
FORBIDDEN_LABEL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# Longest sequence (tokens) and largest static bucket a manifest may name.
MAX_SEQUENCE_LENGTH = 1 << 16

_NONE = type(None)
# (dotted field, allowed JSON types, required when its section is there). A section that is
# absent or null skips its fields; `[]` checks each item of a list, `{}` each value of a mapping.
FIELDS: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("schema_version", (int,), True),
    (MANIFEST_DIGEST_FIELD, (str,), True),
    ("target", (str,), True),
    ("task", (str, _NONE), False),
    ("source", (dict,), True),
    ("source.id", (str,), True),
    ("source.path", (str,), True),
    ("source.weights", (list,), False),
    ("source.weights[]", (dict,), True),
    ("source.weights[].name", (str,), True),
    ("source.weights[].sha256", (str,), True),
    ("model", (dict,), True),
    ("model.head", (str,), True),
    ("model.labels", (dict, _NONE), False),
    ("model.labels{}", (str,), True),
    ("model.max_sequence_length", (int,), True),
    ("model.inputs", (list,), True),
    ("model.inputs[]", (str,), True),
    ("model.outputs", (list,), True),
    ("model.outputs[]", (str,), True),
    ("model.tokenizer_dir", (str,), True),
    ("model.config", (dict,), True),
    ("runtime", (dict,), True),
    ("runtime.name", (str,), True),
    ("runtime.version", (str,), True),
    ("runtime.model", (str,), True),
    ("runtime.weights", (str,), False),
    ("runtime.operator_config", (str,), False),
    ("runtime.compile_config", (dict,), False),
    ("runtime.compile_config{}", (str, int, float, bool), True),
    ("runtime.static_shapes", (dict,), False),
    ("runtime.static_shapes.sequence_buckets", (list,), False),
    ("runtime.static_shapes.sequence_buckets[]", (int,), True),
    ("runtime.static_shapes.split_at", (list, _NONE), False),
    ("runtime.static_shapes.split_at[]", (str,), True),
    ("tokenizer", (dict, _NONE), False),
    ("tokenizer.mode", (str,), True),
    ("tokenizer.model", (str,), False),
    ("tokenizer.inputs", (list, str), False),
    ("tokenizer.pair", (bool,), False),
    ("calibration", (dict, _NONE), False),
    ("calibration.task", (str, _NONE), False),
    ("files", (dict,), True),
    ("files{}", (dict,), True),
    ("files{}.sha256", (str,), True),
    ("files{}.bytes", (int,), True),
    ("size", (dict,), True),
    ("parity", (dict,), True),
    ("quantization", (dict, _NONE), False),
    ("sparsity", (dict, _NONE), False),
    ("host", (dict,), False),
    ("notes", (list,), False),
    ("head", (dict,), False),
    ("head.problem_type", (str, _NONE), False),
    ("head.scores", (str, _NONE), False),
    ("head.labels", (dict, _NONE), False),
    ("head.labels{}", (str,), True),
    ("head.labels_named", (bool,), False),
    ("head.threshold", (float,), False),
    ("notes[]", (str,), True),
    ("golden", (dict, _NONE), False),
    ("golden.file", (str,), True),
    ("golden.examples", (int,), False),
    ("golden.tolerance", (float,), False),
)
# Values bertc and its loader know; anything else is refused rather than guessed at.
CHOICES: dict[str, tuple[str | None, ...]] = {
    "model.head": ("classifier", "regression", "encoder"),
    "model.inputs[]": ("input_ids", "attention_mask", "token_type_ids"),
    "runtime.name": ("openvino", "onnxruntime"),
    "tokenizer.mode": ("fused", "separate", "none"),
    "head.problem_type": (
        "single_label_classification",
        "multi_label_classification",
        "regression",
        None,
    ),
    "head.scores": ("softmax", "sigmoid", "identity", None),
}
# Files the manifest names that a runtime, tokenizer or golden check reads (tokenizer_dir: a
# folder).
PATH_FIELDS = (
    "runtime.model",
    "runtime.weights",
    "runtime.operator_config",
    "tokenizer.model",
    "golden.file",
)
DIRECTORY_FIELDS = ("model.tokenizer_dir",)

_JSON_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    _NONE: "null",
}


def _is_type(value: Any, types: tuple[type, ...]) -> bool:
    """JSON typing: true/false are not integers, an integer is a number."""
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _values_at(manifest: Any, field: str) -> list[tuple[str, Any]]:
    """(concrete name, value) of every value the dotted `field` names; absent parents skip."""
    found: list[tuple[str, Any]] = [("", manifest)]
    for part in field.split("."):
        key, each_item, each_value = part.rstrip("[]{}"), part.endswith("[]"), part.endswith("{}")
        step = []
        for name, value in found:
            if not isinstance(value, dict) or key not in value:
                continue
            child, child_name = value[key], f"{name}.{key}".lstrip(".")
            if each_item and isinstance(child, list):
                step += [(f"{child_name}[{i}]", item) for i, item in enumerate(child)]
            elif each_value and isinstance(child, dict):
                step += [(f"{child_name}[{k!r}]", item) for k, item in child.items()]
            elif not (each_item or each_value):
                step.append((child_name, child))
        found = step
    return found


def _sections_for(manifest: dict[str, Any], field: str) -> list[tuple[str, dict[str, Any]]]:
    """(concrete name, section) of every section that should hold `field`."""
    parent = field.rpartition(".")[0]
    if not parent:
        return [("", manifest)]
    found = _values_at(manifest, parent)
    return [(name, value) for name, value in found if isinstance(value, dict)]


def validate_manifest(manifest: Any, where: str) -> None:
    """ArtifactError naming the first field of the wrong type, a missing one, or a value bertc
    does not know; `where` names the manifest in the message."""
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{where} holds a JSON {type(manifest).__name__}, not a manifest")
    for field, types, required in FIELDS:
        key = field.rpartition(".")[2]
        if required and not key.endswith(("[]", "{}")):
            for parent, section in _sections_for(manifest, field):
                if key not in section:
                    raise ArtifactError(f"{where}: field {_join(parent, key)!r} is missing")
        for name, value in _values_at(manifest, field):
            if not _is_type(value, types):
                expected = " or ".join(_JSON_NAMES[kind] for kind in types)
                raise ArtifactError(
                    f"{where}: field {name!r} must be {expected}, not {_describe(value)}"
                )
            if field in CHOICES and value not in CHOICES[field]:
                raise ArtifactError(
                    f"{where}: field {name!r} is {value!r}; bertc knows "
                    + ", ".join(map(str, CHOICES[field]))
                )
    _check_ranges(manifest, where)


def label_name_problem(name: Any) -> str | None:
    """Why `name` cannot be a label name (None: it can): not a string, empty or blank, or
    holding a control, format, line or paragraph separator character (tab and newline among
    them), which would break one-line-per-example output."""
    if not isinstance(name, str):
        return f"is {_describe(name)}, not a string"
    if not name.strip():
        return "is empty"
    bad = next((c for c in name if unicodedata.category(c) in FORBIDDEN_LABEL_CATEGORIES), None)
    if bad is not None:
        return f"holds the control character U+{ord(bad):04X}"
    return None


def label_map_problem(labels: Mapping[Any, Any]) -> str | None:
    """The first label (by id) whose name `label_name_problem` refuses, or a name two ids share,
    as `label 'ID' ...`; None when every name is fit to print."""
    seen: dict[Any, Any] = {}
    for key, name in labels.items():
        problem = label_name_problem(name)
        if problem is not None:
            return f"label {key!r} {problem}"
        if name in seen:
            return f"label {key!r} has the name {name!r} of label {seen[name]!r}"
        seen[name] = key
    return None


def _check_ranges(manifest: dict[str, Any], where: str) -> None:
    version = manifest["schema_version"]
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ArtifactError(
            f"{where}: field 'schema_version' is {version}; this bertc reads "
            f"{SUPPORTED_SCHEMA_VERSIONS.start} to {SUPPORTED_SCHEMA_VERSIONS.stop - 1}"
        )
    length = manifest["model"]["max_sequence_length"]
    if not 1 <= length <= MAX_SEQUENCE_LENGTH:
        raise ArtifactError(
            f"{where}: field 'model.max_sequence_length' is {length}, not 1 to "
            f"{MAX_SEQUENCE_LENGTH}"
        )
    for name, bucket in _values_at(manifest, "runtime.static_shapes.sequence_buckets[]"):
        if not 1 <= bucket <= MAX_SEQUENCE_LENGTH:
            raise ArtifactError(
                f"{where}: field {name!r} is {bucket}, not 1 to {MAX_SEQUENCE_LENGTH}"
            )
    for key in manifest["model"].get("labels") or {}:
        if not (key.isascii() and key.isdigit()):
            raise ArtifactError(
                f"{where}: field 'model.labels' has the key {key!r}, not a class index"
            )
    for field in ("model.labels", "head.labels"):
        for name, labels in _values_at(manifest, field):
            problem = label_map_problem(labels or {})
            if problem is not None:
                raise ArtifactError(f"{where}: field {name!r}: {problem}")


def check_label_count(manifest: Mapping[str, Any], where: str) -> None:
    """The label maps cover exactly the model's output ids: 0..N-1, with N the size of the
    model config's id2label (the head's outputs), the same in `model.labels` and `head.labels`;
    else ArtifactError. Run after the manifest's digest matched (an edit is named as such)."""
    model = manifest["model"]
    labels = model.get("labels")
    if not labels or model["head"] == "encoder":
        return
    expected = {str(index) for index in range(len(labels))}
    if set(labels) != expected:
        raise ArtifactError(f"{where}: field 'model.labels' keys are not 0 to {len(labels) - 1}")
    id2label = model["config"].get("id2label")
    if isinstance(id2label, dict) and len(id2label) != len(labels):
        raise ArtifactError(
            f"{where}: field 'model.labels' names {len(labels)} labels, but the model has "
            f"{len(id2label)} outputs"
        )
    head = manifest.get("head")
    head_labels = head.get("labels") if isinstance(head, dict) else None
    if head_labels is not None and head_labels != labels:
        raise ArtifactError(f"{where}: field 'head.labels' differs from 'model.labels'")


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _describe(value: Any) -> str:
    kind = next((name for kind, name in _JSON_NAMES.items() if type(value) is kind), None)
    return kind or type(value).__name__


def check_relative_path(value: str, field: str, where: str) -> str:
    """`value` if it is a plain relative POSIX path (no `..`, `.`, empty or absolute part, no
    backslash or drive), else ArtifactError naming `field`."""
    posix = PurePosixPath(value)
    if (
        not value
        or "\\" in value
        or "\0" in value
        or posix.is_absolute()
        or PureWindowsPath(value).drive
        or posix.as_posix() != value
        or not posix.parts
        or any(part in (".", "..") for part in posix.parts)
    ):
        raise ArtifactError(
            f"{where}: {field} {value!r} is not a plain relative path inside the artifact"
        )
    return value


def check_contained(directory: Path, relative: str, field: str) -> Path:
    """The resolved path of `relative` under `directory`, or ArtifactError when it (through a
    symbolic link) resolves outside the directory."""
    root = directory.resolve()
    try:
        resolved = (root / relative).resolve()
    except (OSError, RuntimeError) as error:  # Python 3.11 raises RuntimeError on a link loop
        raise ArtifactError(
            f"artifact {directory}: {field} {relative!r} cannot be resolved: {error}"
        ) from error
    if not resolved.is_relative_to(root):
        raise ArtifactError(
            f"artifact {directory}: {field} {relative!r} resolves to {resolved}, outside the "
            "artifact"
        )
    return resolved


def named_paths(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, relative path) of every file the manifest tells a runtime to read."""
    found = []
    for field in PATH_FIELDS:
        found += [(name, value) for name, value in _values_at(manifest, field) if value]
    return found


def check_named_paths(directory: Path, manifest: Mapping[str, Any], listed: set[str]) -> None:
    """Refuse any path the manifest names that is not plain and relative, not listed in its files
    section, or not inside the artifact; a directory field must hold listed files."""
    where = f"artifact {directory}"
    for field, value in named_paths(manifest):
        check_relative_path(value, field, where)
        if value not in listed:
            raise ArtifactError(
                f"{where}: {field} {value!r} is not in the manifest's files section"
            )
        check_contained(directory, value, field)
    for field in DIRECTORY_FIELDS:
        for name, value in _values_at(manifest, field):
            check_relative_path(value, name, where)
            if not any(file.startswith(f"{value}/") for file in listed):
                raise ArtifactError(
                    f"{where}: {name} {value!r} holds no file of the manifest's files section"
                )
            check_contained(directory, value, name)
