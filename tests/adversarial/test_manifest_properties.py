"""Property: whatever a manifest holds, bertc and the loader either load the artifact and it
works, or refuse it with their artifact error (exit 11); never another exception (exit 70).

Mutations of a real manifest's JSON: a field deleted, replaced by any JSON value (wrong types,
nesting), or pointed at a path out of the artifact; resealed or not (a resealed manifest reaches
the type and path checks past the digest, as a buggy or hostile producer's would).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from bertc.compiler.core.enums import QuantizationMode
from bertc.compiler.core.errors import ArtifactError
from bertc.compiler.core.manifest import (
    MANIFEST_FILE,
    check_integrity,
    read_manifest,
    seal_manifest,
)
from bertc.targets import loader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
HOSTILE_PATHS = st.sampled_from(
    ["../x", "/etc/hostname", "", ".", "..", "a/../../b", "tokenizer/../../x", "C:/x", "a\\b"]
)


def all_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON value (list items by index)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += all_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += all_paths(item, (*prefix, index))
    return found


@pytest.fixture(scope="module")
def pristine(compile_once, tiny_classifier, tmp_path_factory) -> Path:
    built = compile_once(tiny_classifier, "onnx", quantization=QuantizationMode.DYNAMIC)
    copy = tmp_path_factory.mktemp("fuzzed") / "artifact"
    shutil.copytree(built.artifact_dir, copy)
    return copy


@pytest.fixture(scope="module")
def original(pristine: Path) -> dict[str, Any]:
    return json.loads((pristine / MANIFEST_FILE).read_text())


# Paths of the manifest worth mutating (model.config's 40 keys would crowd out the rest).
def mutation_targets(manifest: dict[str, Any]) -> list[tuple]:
    return [
        path
        for path in all_paths(manifest)
        if path[:2] != ("model", "config") or len(path) == 2
        if path[:1] not in (("quantization",), ("sparsity",), ("toolchain",)) or len(path) == 1
    ]


def mutate(manifest: dict[str, Any], path: tuple, action: str, value: Any) -> Any:
    """The manifest with the value at `path` deleted or replaced (a deep copy), or a whole new
    JSON value when `path` is empty."""
    if not path:
        return value
    copy = json.loads(json.dumps(manifest))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copy


def write(directory: Path, manifest: Any, reseal: bool) -> None:
    if reseal and isinstance(manifest, dict):
        manifest = seal_manifest(manifest)
    text = json.dumps(manifest, allow_nan=True)
    (directory / MANIFEST_FILE).write_text(text, encoding="utf-8")


def exercise(model: Any) -> None:
    """Use the loaded artifact as an app would: one example through it."""
    if model.head == "encoder":
        assert model.embed(["a fine film"]).shape[0] == 1
        return
    pairs = ["another"] if model.pair else None
    predictions = model.predict(["a fine film"], pairs)
    assert len(predictions) == 1


def check_both(directory: Path) -> None:
    """bertc's reader then the loader: each works or raises its artifact error."""
    with contextlib.suppress(ArtifactError):
        check_integrity(directory, read_manifest(directory))
    try:
        model = loader.load(directory)
    except loader.ArtifactLoadError:
        return
    exercise(model)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_mutated_manifest_loads_or_is_an_artifact_error(pristine, original, data) -> None:
    path = data.draw(st.sampled_from(mutation_targets(original)), label="path")
    action = data.draw(st.sampled_from(["delete", "replace", "hostile path"]), label="action")
    value = data.draw(HOSTILE_PATHS if action == "hostile path" else JSON_VALUES, label="value")
    reseal = data.draw(st.booleans(), label="reseal")
    write(pristine, mutate(original, path, action, value), reseal)
    try:
        check_both(pristine)
    finally:
        write(pristine, original, reseal=False)


@settings(max_examples=60, deadline=None)
@given(value=JSON_VALUES)
def test_a_manifest_that_is_any_json_value_is_an_artifact_error(tmp_path_factory, value) -> None:
    directory = tmp_path_factory.mktemp("any-json")
    write(directory, value, reseal=True)
    with pytest.raises(ArtifactError):
        read_manifest(directory)
    with pytest.raises(loader.ArtifactLoadError):
        loader.load(directory)


def test_the_unmutated_manifest_loads_and_works(pristine) -> None:
    """The property's other branch is reachable: the real manifest passes both readers."""
    check_integrity(pristine, read_manifest(pristine))
    exercise(loader.load(pristine))
