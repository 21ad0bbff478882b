"""`bertc inspect`: a checkpoint's layers and sparsity from its weights, an artifact's files and
quantization from its manifest, and a refusal when the artifact was changed after its build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bertc.compiler.core.errors import ArtifactError
from bertc.compiler.inspection import inspect_path
from model_factory import make_checkpoint, write_hub_cache


def layer_sparsity_from_weights(directory: Path) -> dict[str, float]:
    """Zero fraction of every tensor of each encoder layer, computed here from the file."""
    from safetensors.torch import load_file

    zeros: dict[str, int] = {}
    total: dict[str, int] = {}
    for name, tensor in load_file(str(directory / "model.safetensors")).items():
        if ".encoder.layer." not in f".{name}":
            continue
        layer = f"layer {int(name.split('layer.')[1].split('.')[0]):02d}"
        zeros[layer] = zeros.get(layer, 0) + int((tensor == 0).sum())
        total[layer] = total.get(layer, 0) + tensor.numel()
    return {layer: zeros[layer] / total[layer] for layer in total}


@pytest.fixture(scope="module")
def sparse_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Intel's sparse-1_2 layout in miniature: BertForMaskedLM, encoder Linears pruned 1:2."""
    return make_checkpoint(
        tmp_path_factory.mktemp("sparse"), head="encoder", masked_lm=True, sparse_1_2=True
    )


def test_pruned_weights_are_exactly_half_zero(sparse_checkpoint: Path) -> None:
    """The fixture itself: every encoder Linear weight keeps one of each input pair."""
    from safetensors.torch import load_file

    weights = {
        name: tensor
        for name, tensor in load_file(str(sparse_checkpoint / "model.safetensors")).items()
        if ".encoder.layer." in f".{name}" and name.endswith(".weight") and tensor.dim() == 2
    }
    assert len(weights) == 6 * 2
    for name, tensor in weights.items():
        pairs = tensor.reshape(tensor.shape[0], -1, 2)
        assert bool(((pairs == 0).sum(dim=-1) == 1).all()), name


def test_checkpoint_table_lists_layers_with_their_sparsity(
    sparse_checkpoint: Path, bertc_cli
) -> None:
    result = bertc_cli("inspect", sparse_checkpoint, "--json")
    assert result.returncode == 0, result.stderr
    inspection = json.loads(result.stdout)
    assert inspection["kind"] == "checkpoint"
    layers = {row["layer"]: row for row in inspection["layers"]}
    expected = layer_sparsity_from_weights(sparse_checkpoint)
    assert set(expected) == {"layer 00", "layer 01"}
    for layer, sparsity in expected.items():
        # Half of every weight matrix; biases and LayerNorm (a few %) are dense.
        assert layers[layer]["sparsity"] == round(sparsity, 4)
        assert 0.45 <= layers[layer]["sparsity"] <= 0.5
    assert layers["embeddings"]["sparsity"] < 0.01  # only the [PAD] row (padding_idx) is zero
    assert sum(row["parameters"] for row in inspection["layers"]) == inspection["parameters"]

    table = bertc_cli("inspect", sparse_checkpoint)
    assert table.returncode == 0, table.stderr
    for layer, sparsity in expected.items():
        row = next(line for line in table.stdout.splitlines() if layer in line)
        assert f"{sparsity:.1%}" in row


def test_dense_checkpoint_shows_no_sparsity(tiny_classifier: Path) -> None:
    inspection = inspect_path(str(tiny_classifier))
    layers = {row["layer"]: row for row in inspection["layers"]}
    assert {"layer 00", "layer 01", "embeddings", "pooler", "classifier"} <= set(layers)
    assert all(layers[name]["sparsity"] == 0.0 for name in ("layer 00", "layer 01", "pooler"))
    assert all(row["dtype"] == "float32" for row in inspection["layers"])


def test_checkpoint_in_the_hub_cache_is_inspected_by_id(
    tiny_classifier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_id = "google/bert_uncased_L-2_H-128_A-2"
    snapshot = write_hub_cache(tmp_path / "hub", hub_id, tiny_classifier)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    inspection = inspect_path(hub_id)
    assert inspection["path"] == str(snapshot)
    assert inspection["parameters"] == inspect_path(str(tiny_classifier))["parameters"]


@pytest.fixture(scope="module")
def artifact(compile_once, tiny_classifier: Path) -> Path:
    return compile_once(tiny_classifier, "onnx").artifact_dir


def test_artifact_summary_checks_integrity_first(artifact: Path, bertc_cli) -> None:
    result = bertc_cli("inspect", artifact)
    assert result.returncode == 0, result.stderr
    assert "integrity ok" in result.stdout
    assert "model.int8-qdq.onnx" in result.stdout
    inspection = inspect_path(str(artifact))
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert inspection["integrity"] == "ok"
    assert inspection["target"] == "onnx"
    assert inspection["quantization"] == manifest["quantization"]
    assert inspection["files"] == manifest["files"]


def test_tampered_artifact_is_refused_with_one_line(
    artifact: Path, tmp_path: Path, bertc_cli
) -> None:
    copy = Path(shutil.copytree(artifact, tmp_path / "artifact"))
    model = copy / "model.int8-qdq.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    result = bertc_cli("inspect", copy)
    assert result.returncode == ArtifactError.exit_code == 11
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: artifact ")
    assert "model.int8-qdq.onnx has changed (sha256 differs)" in line
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "tokenizer" / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda d: (d / "extra.bin").write_bytes(b"\0"), "extra.bin is not in the manifest"),
        (lambda d: (d / "manifest.json").write_text("{"), "is not valid JSON"),
    ],
    ids=["missing file", "extra file", "corrupt manifest"],
)
def test_incomplete_artifacts_are_refused(artifact: Path, tmp_path: Path, damage, message: str):
    copy = Path(shutil.copytree(artifact, tmp_path / "artifact"))
    damage(copy)
    with pytest.raises(ArtifactError, match=message):
        inspect_path(str(copy))


def test_dense_artifact_says_nothing_about_int8_keeping_zeros(
    compile_once, tiny_classifier: Path, bertc_cli
) -> None:
    """A dense model has no zeros for INT8 to keep: no "did NOT keep all of them (0 of 0)"."""
    dense = compile_once(tiny_classifier, "openvino").artifact_dir
    sparsity = inspect_path(str(dense))["sparsity"]
    assert sparsity["zeros"] == 0 and sparsity["int8"]["fp32_zeros"] == 0
    result = bertc_cli("inspect", dense)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("encoder weights"))
    assert line == f"encoder weights: 0 of {sparsity['parameters']:,} zero (0.0%), pattern dense"
    assert "INT8 did NOT keep" not in result.stdout and "(0 of 0)" not in result.stdout
