"""The documented Python API: every name resolves to the stage it names, lazily."""

from __future__ import annotations

import inspect

import bertc.compiler as api
import pytest


@pytest.mark.parametrize("name", api.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(api, name)
    module, attribute = api._API[name]
    assert value is getattr(__import__(module, fromlist=[attribute]), attribute)


def test_compile_artifact_is_the_pipeline_with_its_gate() -> None:
    parameters = inspect.signature(api.compile_artifact).parameters
    assert list(parameters)[:3] == ["source", "out_dir", "options"]
    assert "gate" in parameters


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'compile_everything'"):
        api.compile_everything  # noqa: B018


def test_api_compiles_and_verifies_a_tiny_model(tiny_classifier, glue_data_dir, tmp_path) -> None:
    options = api.CompileOptions(
        target="onnx", task="sst2", data_dir=glue_data_dir, calibration_samples=8
    )
    result = api.compile_artifact(str(tiny_classifier), tmp_path / "artifact", options)
    report = api.verify_artifact(
        result.artifact_dir, "sst2", data_dir=glue_data_dir, max_drop=100
    )
    assert report.gate.passed and 0 <= report.agreement.rate <= 1
    labels = set(result.manifest["model"]["labels"].values())
    assert api.load_artifact(result.artifact_dir).predict(["a fine film"])[0].label in labels
