"""Sparsity: pattern detection on hand-made matrices and on a 1:2-pruned checkpoint, the
manifest's sparsity section, INT8 keeping every zero on each target, and the compressed size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bertc.compiler.core.sparsity import (
    analyse_safetensors,
    analyse_weights,
    compare_int8_zeros,
    detect_pattern,
    matrix_sparsity,
    zlib_compressed_bytes,
)
from bertc.compiler.inspection import inspect_path
from bertc.compiler.loading import load_model
from model_factory import make_checkpoint

TARGETS = ("onnx", "ort-mobile", "openvino")
# Encoder Linears of the tiny model: 2 layers × (query, key, value, attention output,
# intermediate, output).
TINY_ENCODER_MATRICES = 12


def dense(rows: int = 16, columns: int = 16, seed: int = 0) -> np.ndarray:
    """A random matrix without a single zero."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.1, 1.0, (rows, columns)) * rng.choice([-1, 1], (rows, columns))).astype(
        np.float32
    )


def keep_per_group(weight: np.ndarray, n: int, m: int, seed: int = 1) -> np.ndarray:
    """Zero all but `n` random entries of each `m` consecutive inputs of every row."""
    rng = np.random.default_rng(seed)
    rows, columns = weight.shape
    groups = weight.reshape(rows, columns // m, m).copy()
    ranks = rng.random(groups.shape).argsort(axis=-1).argsort(axis=-1)
    groups[ranks >= n] = 0.0
    return groups.reshape(rows, columns)


@pytest.mark.parametrize(("n", "m"), [(1, 2), (2, 4), (4, 8)])
def test_each_n_m_pattern_is_detected(n: int, m: int) -> None:
    assert detect_pattern(keep_per_group(dense(), n, m)) == f"{n}:{m}"


def test_two_four_that_is_not_one_two() -> None:
    """Two non-zeros side by side in a group of 4 break 1:2 but not 2:4."""
    weight = dense()
    weight.reshape(16, 4, 4)[..., 2:] = 0.0
    assert detect_pattern(weight) == "2:4"


def test_four_eight_that_is_not_two_four() -> None:
    weight = dense()
    weight.reshape(16, 2, 8)[..., 4:] = 0.0
    assert detect_pattern(weight) == "4:8"


def test_one_two_is_preferred_when_every_pattern_holds() -> None:
    weight = keep_per_group(dense(), 1, 2)
    assert detect_pattern(weight) == "1:2"  # it is also 2:4 and 4:8


def test_four_by_one_blocks() -> None:
    """Whole columns of 4 consecutive output rows zero, nowhere else; not N:M along inputs."""
    weight = dense(16, 16)
    blocks = weight.reshape(4, 4, 16)
    blocks[0, :, 3] = 0.0
    blocks[2, :, 7] = 0.0
    blocks[3, :, 0] = 0.0
    assert detect_pattern(weight) == "block:4x1"
    blocks[1, 2, 5] = 0.0  # one stray zero breaks the blocks
    assert detect_pattern(weight) == "unstructured"


def test_dense_and_unstructured() -> None:
    weight = dense(32, 32)
    assert detect_pattern(weight) == "dense"
    weight[5, 7] = 0.0  # one zero in 1,024 is under the 1% threshold
    assert detect_pattern(weight) == "dense"
    weight.reshape(-1)[::37] = 0.0
    assert detect_pattern(weight) == "unstructured"


def test_matrix_counts_and_model_summary() -> None:
    pruned = keep_per_group(dense(8, 16), 1, 2)
    report = analyse_weights(
        [
            ("bert.encoder.layer.1.output.dense.weight", pruned),
            ("bert.encoder.layer.0.attention.self.query.weight", keep_per_group(dense(8, 8), 1, 2)),
            ("bert.encoder.layer.0.attention.output.LayerNorm.weight", np.zeros(8)),  # 1-D
            ("bert.embeddings.word_embeddings.weight", np.zeros((10, 8))),  # not encoder
        ]
    )
    assert [matrix.name for matrix in report.matrices] == [
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.1.output.dense.weight",
    ]
    assert (report.parameters, report.zeros, report.sparsity) == (192, 96, 0.5)
    assert report.pattern == "1:2"
    mixed = analyse_weights(
        [("encoder.layer.0.a.weight", pruned), ("encoder.layer.0.b.weight", dense())]
    )
    assert mixed.pattern == "mixed"
    single = matrix_sparsity("x.encoder.layer.3.intermediate.dense.weight", pruned)
    assert (single.shape, single.zeros, single.sparsity) == ((8, 16), 64, 0.5)


def test_int8_comparison_tells_kept_zeros_from_rounded_ones() -> None:
    """Counts alone cannot tell a kept zero from a small weight rounded to zero; positions can."""
    fp32 = np.array([[0.0, 0.5], [0.001, 0.0]], dtype=np.float32)
    kept_and_rounded = np.array([[True, False], [True, True]])
    lost_one = np.array([[False, False], [True, True]])  # same count as fp32, a zero moved
    report = compare_int8_zeros("0", {"w": kept_and_rounded, "v": lost_one}, {"w": fp32, "v": fp32})
    by_name = {matrix.name: matrix for matrix in report.matrices}
    assert (by_name["w"].fp32_zeros_kept, by_name["w"].rounded_to_zero) == (2, 1)
    assert by_name["w"].counts_equal is False
    assert (by_name["v"].fp32_zeros_kept, by_name["v"].counts_equal) == (1, True)
    assert report.all_zeros_kept is False and report.counts_equal is False
    assert compare_int8_zeros("0", {"w": kept_and_rounded}, {"w": fp32}).all_zeros_kept is True
    unpaired = compare_int8_zeros("0", {"w": kept_and_rounded}, {})
    assert unpaired.all_zeros_kept is False and unpaired.matrices[0].fp32_zeros is None


# --- On checkpoints and artifacts -------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(
        tmp_path_factory.mktemp("pruned"), head="encoder", masked_lm=True, sparse_1_2=True
    )


@pytest.fixture(scope="module")
def dense_twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same seed and shape as `pruned_checkpoint`, unpruned."""
    return make_checkpoint(tmp_path_factory.mktemp("dense-twin"), head="encoder", masked_lm=True)


def test_pruned_checkpoint_is_one_two_everywhere(pruned_checkpoint: Path, dense_twin: Path):
    loaded = load_model(str(pruned_checkpoint))
    report = loaded.sparsity
    assert len(report.matrices) == TINY_ENCODER_MATRICES
    assert all(matrix.pattern == "1:2" for matrix in report.matrices)
    assert report.pattern == "1:2"
    assert report.zeros * 2 == report.parameters
    # The same from the file, without building the model.
    assert analyse_safetensors([pruned_checkpoint / "model.safetensors"]) == report
    assert load_model(str(dense_twin)).sparsity.pattern == "dense"


def test_inspect_shows_each_matrix_pattern(pruned_checkpoint: Path, bertc_cli) -> None:
    inspection = inspect_path(str(pruned_checkpoint))
    summary = inspection["weight_sparsity"]
    assert summary["pattern"] == "1:2"
    assert len(summary["matrices"]) == TINY_ENCODER_MATRICES
    assert {matrix["pattern"] for matrix in summary["matrices"]} == {"1:2"}

    result = bertc_cli("inspect", pruned_checkpoint, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["weight_sparsity"] == summary
    table = bertc_cli("inspect", pruned_checkpoint)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "layer.1.output.dense" in line)
    assert "1:2" in row and "50.0%" in row and "32x64" in row
    assert "pattern 1:2" in table.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_int8_keeps_every_zero(compile_once, pruned_checkpoint: Path, target: str) -> None:
    """Symmetric int8 weights map 0.0 to 0: each INT8 MatMul weight has exactly as many zeros
    as its fp32 weight, for onnxruntime's QDQ graph (onnx; ort-mobile counts its quantized ONNX
    before conversion) and for NNCF's i8 constants (openvino, SmoothQuant scales included)."""
    manifest = compile_once(pruned_checkpoint, target).manifest
    sparsity = manifest["sparsity"]
    assert sparsity["pattern"] == "1:2"
    assert len(sparsity["matrices"]) == TINY_ENCODER_MATRICES
    int8 = sparsity["int8"]
    assert int8["all_zeros_kept"] is True
    assert int8["fp32_zeros_kept"] == int8["fp32_zeros"] == sparsity["zeros"]
    # The tiny model's kept weights are all above half a step, so the counts match too.
    assert int8["counts_equal"] is True and int8["rounded_to_zero"] == 0
    assert int8["int8_zeros"] == int8["fp32_zeros"]
    names = {matrix["name"] for matrix in sparsity["matrices"]}
    assert {matrix["name"] for matrix in int8["matrices"]} == names
    for matrix in int8["matrices"]:
        assert matrix["fp32_zeros_kept"] == matrix["fp32_zeros"] == matrix["int8_zeros"]
    written = json.loads(
        (compile_once(pruned_checkpoint, target).artifact_dir / "manifest.json").read_text()
    )
    assert written["sparsity"] == sparsity


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_dynamic_int8_keeps_every_zero(compile_once, pruned_checkpoint: Path, target: str) -> None:
    """Dynamic INT8: onnxruntime's MatMulInteger weights (zero point 0) and NNCF's asymmetric u8
    weights, where a zero is the value equal to the channel's zero point."""
    manifest = compile_once(pruned_checkpoint, target, quantization="dynamic").manifest
    int8 = manifest["sparsity"]["int8"]
    assert int8["all_zeros_kept"] is True
    assert len(int8["matrices"]) == TINY_ENCODER_MATRICES
    assert int8["fp32_zeros_kept"] == int8["fp32_zeros"] > 0


def test_fp32_build_has_no_int8_section(compile_once, pruned_checkpoint: Path) -> None:
    manifest = compile_once(pruned_checkpoint, "onnx", quantization="none").manifest
    assert manifest["sparsity"]["int8"] is None
    assert manifest["sparsity"]["pattern"] == "1:2"


@pytest.mark.parametrize("target", TARGETS)
def test_pruned_artifact_compresses_smaller_than_its_dense_twin(
    compile_once, pruned_checkpoint: Path, dense_twin: Path, target: str
) -> None:
    pruned = compile_once(pruned_checkpoint, target)
    twin = compile_once(dense_twin, target)
    size = pruned.manifest["size"]
    expected = sum(
        zlib_compressed_bytes(pruned.artifact_dir / name) for name in _model_files(pruned.manifest)
    )
    assert size["zlib6_bytes"] == expected
    assert size["zlib6_ratio_to_model_bytes"] == round(expected / size["model_bytes"], 4)
    assert size["zlib6_bytes"] < twin.manifest["size"]["zlib6_bytes"]
    assert twin.manifest["sparsity"]["pattern"] == "dense"


def _model_files(manifest) -> list[str]:
    runtime = manifest["runtime"]
    keys = ("model", "weights", "operator_config")
    return [runtime[key] for key in keys if key in runtime]
