"""`compile_model` end to end: real BERT shapes for every target, the manifest, determinism,
and failures that leave nothing behind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from artifact_readers import ort_model_contents
from bertc.compiler.core.errors import OutputExistsError, ParityError, TargetBuildError
from bertc.compiler.core.manifest import MANIFEST_FILE, SCHEMA_VERSION, read_manifest, to_jsonable
from bertc.compiler.export import encode
from bertc.compiler.loading import load_model
from bertc.compiler.pipeline import CompileOptions, compile_model
from bertc.targets import get_target
from model_factory import (
    HUB_IDS,
    REAL_CONFIGS,
    make_checkpoint,
    make_real_checkpoint,
    read_sst2_dev,
    write_hub_cache,
)

TARGETS = ("onnx", "ort-mobile", "openvino")
MODEL_FILES = {
    "onnx": ("model.int8-qdq.onnx",),
    "ort-mobile": ("model.ort", "required_operators.config"),
    "openvino": ("model.xml", "model.bin"),
}
HEX64 = 64


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_on_disk(directory: Path) -> dict[str, Path]:
    return {
        path.relative_to(directory).as_posix(): path
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }


def leftovers(out_dir: Path) -> list[str]:
    """Staging (.NAME.partial-*) or replaced (.NAME.old-*) siblings of an output directory."""
    return sorted(
        path.name
        for path in out_dir.parent.iterdir()
        if path.name.startswith((f".{out_dir.name}.partial-", f".{out_dir.name}.old-"))
    )


def torch_outputs(source: str, sentences) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    loaded = load_model(source)
    batch = encode(loaded, sentences, padding_to=None)
    with torch.no_grad():
        outputs = loaded.module(*(torch.from_numpy(batch[name]) for name in loaded.input_names))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return batch, [output.numpy() for output in outputs]


def run_artifact(result, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    manifest = read_manifest(result.artifact_dir)
    return get_target(manifest["target"]).load(result.artifact_dir, manifest).run(batch)


def masked_mean(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    mask = attention_mask[..., None].astype(np.float64)
    return (hidden * mask).sum(axis=1) / mask.sum(axis=1)


# ---- the manifest of the tiny classifier, per target


@pytest.mark.parametrize("target", TARGETS)
def test_manifest_matches_the_files_and_the_source(
    compile_once, tiny_classifier: Path, glue_data_dir: Path, target: str
) -> None:
    result = compile_once(tiny_classifier, target)
    artifact = result.artifact_dir
    manifest = read_manifest(artifact)
    assert manifest == json.loads(json.dumps(to_jsonable(result.manifest)))
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["target"] == target
    on_disk = files_on_disk(artifact)
    assert set(manifest["files"]) == set(on_disk)
    for name, path in on_disk.items():
        assert manifest["files"][name] == {"bytes": path.stat().st_size, "sha256": sha256(path)}
    assert set(MODEL_FILES[target]) <= set(on_disk)
    assert any(name.startswith("tokenizer/") for name in on_disk)
    (weights,) = manifest["source"]["weights"]
    assert weights["sha256"] == sha256(tiny_classifier / "model.safetensors")
    assert manifest["source"]["path"] == str(tiny_classifier.resolve())
    parity = manifest["parity"]
    assert parity["passed"] and 0 <= parity["max_abs_diff"] <= parity["tolerance"]
    model = manifest["model"]
    assert model["labels"] == {"0": "negative", "1": "positive"}
    assert model["max_sequence_length"] == 128
    assert model["outputs"] == ["logits"] and model["head"] == "classifier"
    assert manifest["calibration"] == {
        "task": "sst2",
        "split": "train",
        "samples": 16,
        "seed": 0,
        "data_dir": str(glue_data_dir),
    }
    size = manifest["size"]
    model_bytes = sum(on_disk[name].stat().st_size for name in MODEL_FILES[target])
    assert size["model_bytes"] == model_bytes
    assert size["fp32_onnx_bytes"] == manifest["export"]["fp32_onnx_bytes"]
    assert len(manifest["export"]["fp32_onnx_sha256"]) == HEX64
    assert manifest["toolchain"]["onnxruntime"] and manifest["toolchain"]["torch"]
    assert leftovers(artifact) == []


def test_artifact_tokenizer_encodes_as_the_checkpoint_does(
    compile_once, tiny_classifier: Path
) -> None:
    from transformers import AutoTokenizer

    result = compile_once(tiny_classifier, "onnx")
    packaged = AutoTokenizer.from_pretrained(str(result.artifact_dir / "tokenizer"))
    original = AutoTokenizer.from_pretrained(str(tiny_classifier))
    sentences = ["a gorgeous , witty , seductive movie .", "Édith sang in Paris!"]
    assert packaged(sentences)["input_ids"] == original(sentences)["input_ids"]
    assert packaged.model_max_length == 128  # the artifact truncates where it was compiled to


# ---- the real configurations, random weights


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face cache holding the BERT-Tiny-shaped checkpoint under its hub id."""
    checkpoint = make_real_checkpoint(tmp_path_factory.mktemp("bert-tiny"), "bert-tiny")
    cache = tmp_path_factory.mktemp("hf-home") / "hub"
    write_hub_cache(cache, HUB_IDS["bert-tiny"], checkpoint)
    return cache


@pytest.fixture(scope="session")
def real_source(tmp_path_factory: pytest.TempPathFactory, hub_cache: Path):
    """`real_source(name)`: what to pass to compile_model for a real config, and the env it
    needs. BERT-Tiny goes through the hub cache by its id; the others are directories."""
    directories: dict[str, Path] = {}

    def source(name: str) -> tuple[str, dict[str, str]]:
        if name == "bert-tiny":
            return HUB_IDS[name], {"HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
        if name not in directories:
            directories[name] = make_real_checkpoint(tmp_path_factory.mktemp(name), name)
        return str(directories[name]), {}

    return source


@pytest.fixture(scope="session")
def compile_real(compile_once, real_source):
    def build(name: str, target: str):
        source, env = real_source(name)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            return compile_once(source, target), source, env

    return build


REAL_CASES = [
    pytest.param(name, target, id=f"{name}-{target}")
    for name in ("bert-tiny", "bert-mini", "tinybert-4l")
    for target in TARGETS
] + [
    pytest.param(
        "bert-base-sparse-1_2", target, id=f"bert-base-sparse-1_2-{target}", marks=pytest.mark.slow
    )
    for target in TARGETS
]


@pytest.mark.parametrize(("name", "target"), REAL_CASES)
def test_real_config_compiles_for_every_target(
    compile_real, glue_data_dir: Path, name: str, target: str
) -> None:
    result, source, env = compile_real(name, target)
    manifest = read_manifest(result.artifact_dir)
    shape = REAL_CONFIGS[name]
    config = manifest["model"]["config"]
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "type_vocab_size",
    ):
        assert config[key] == shape[key], key
    layers = shape["num_hidden_layers"]
    int8 = manifest["quantization"]["int8_ops"]
    assert sum(n for op, n in int8.items() if op.startswith("MatMul")) >= 6 * layers
    assert manifest["size"]["ratio_to_fp32_onnx"] < 0.3  # int8 weights: about a quarter
    assert manifest["parity"]["max_abs_diff"] <= manifest["parity"]["tolerance"]

    sentences = [text for text, _ in read_sst2_dev(glue_data_dir)][:6]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        batch, expected = torch_outputs(source, sentences)
    actual = run_artifact(result, batch)
    assert [array.shape for array in actual] == [array.shape for array in expected]
    for value, reference in zip(actual, expected, strict=True):
        # Random heads give tiny logits; bound the INT8 error by the output's own scale.
        assert np.abs(value - reference).max() <= 0.25 * np.abs(reference).max()

    if name == "bert-tiny":
        assert manifest["source"]["id"] == HUB_IDS[name]
        assert Path(manifest["source"]["path"]).is_relative_to(Path(env["HF_HUB_CACHE"]).resolve())
    if name == "tinybert-4l":
        assert manifest["source"]["family"] == "tinybert"
        assert any("fit_denses" in note for note in manifest["notes"])
    if manifest["model"]["head"] == "encoder":
        hidden, embedding = actual
        assert manifest["model"]["outputs"] == ["last_hidden_state", "sentence_embedding"]
        np.testing.assert_allclose(
            embedding, masked_mean(hidden, batch["attention_mask"]), rtol=0, atol=1e-4
        )
        cosine = (embedding * expected[1]).sum(-1) / (
            np.linalg.norm(embedding, axis=-1) * np.linalg.norm(expected[1], axis=-1)
        )
        assert cosine.min() >= 0.99
    if name == "bert-base-sparse-1_2":
        assert manifest["source"]["family"] == "bert"
        assert manifest["model"]["head"] == "encoder"  # BertForMaskedLM compiles as an encoder
        sparsity = manifest["sparsity"]
        assert len(sparsity["matrices"]) == 6 * layers
        assert {matrix["pattern"] for matrix in sparsity["matrices"]} == {"1:2"}
        assert sparsity["pattern"] == "1:2" and sparsity["zeros"] * 2 == sparsity["parameters"]
        int8 = sparsity["int8"]
        assert int8["all_zeros_kept"] and int8["fp32_zeros_kept"] == sparsity["zeros"]


# ---- heads and storage variants


@pytest.mark.parametrize("target", TARGETS)
def test_encoder_artifact_pools_the_mean_over_the_mask(
    compile_once, tiny_encoder: Path, glue_data_dir: Path, target: str
) -> None:
    result = compile_once(tiny_encoder, target)
    manifest = read_manifest(result.artifact_dir)
    assert manifest["model"]["head"] == "encoder"
    assert manifest["model"]["outputs"] == ["last_hidden_state", "sentence_embedding"]
    assert manifest["model"]["labels"] is None
    assert "mean" in manifest["model"]["sentence_embedding"]
    sentences = [text for text, _ in read_sst2_dev(glue_data_dir)][:9]
    batch, (expected_hidden, _) = torch_outputs(str(tiny_encoder), sentences)
    assert batch["attention_mask"].min() == 0
    hidden, embedding = run_artifact(result, batch)
    assert hidden.shape == expected_hidden.shape
    np.testing.assert_allclose(
        embedding, masked_mean(hidden, batch["attention_mask"]), rtol=0, atol=1e-4
    )


@pytest.fixture(scope="module")
def regression_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("stsb"), head="regression", train_steps=30)


@pytest.mark.parametrize("target", TARGETS)
def test_regression_head_compiles_with_one_wide_logits(
    compile_once, regression_checkpoint: Path, glue_data_dir: Path, target: str
) -> None:
    result = compile_once(regression_checkpoint, target, task="stsb")
    manifest = read_manifest(result.artifact_dir)
    assert manifest["model"]["head"] == "regression"
    assert manifest["model"]["labels"] is None
    assert manifest["calibration"]["task"] == "stsb"
    sentences = [text for text, _ in read_sst2_dev(glue_data_dir)][:8]
    batch, (expected,) = torch_outputs(str(regression_checkpoint), sentences)
    (scores,) = run_artifact(result, batch)
    assert scores.shape == (len(sentences), 1)
    assert np.abs(scores - expected).max() <= 0.05 * max(1.0, np.abs(expected).max())


def test_fp16_weights_compile_from_fp32_with_a_note(
    compile_once, tmp_path_factory: pytest.TempPathFactory
) -> None:
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("fp16"), fp16=True)
    result = compile_once(checkpoint, "onnx")
    manifest = read_manifest(result.artifact_dir)
    assert manifest["source"]["weights"][0]["dtype"] == "F16"
    assert manifest["source"]["weights"][0]["sha256"] == sha256(checkpoint / "model.safetensors")
    assert any("float16" in note and "fp32" in note for note in manifest["notes"])
    assert manifest["parity"]["max_abs_diff"] <= manifest["parity"]["tolerance"]


# ---- atomic output: success replaces, failure leaves nothing


def options(glue_data_dir: Path, **overrides) -> CompileOptions:
    settings = dict(target="onnx", task="sst2", data_dir=glue_data_dir, calibration_samples=8)
    settings.update(overrides)
    return CompileOptions(**settings)


def test_overwrite_replaces_an_existing_artifact(
    tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "artifact"
    compile_model(str(tiny_classifier), out, options(glue_data_dir))
    (out / "stale.txt").write_text("from an older build")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        compile_model(str(tiny_classifier), out, options(glue_data_dir))
    assert (out / "stale.txt").is_file()
    with pytest.raises(OutputExistsError, match="stale.txt"):  # a file bertc did not write
        compile_model(str(tiny_classifier), out, options(glue_data_dir, overwrite=True))
    assert (out / "stale.txt").is_file()
    (out / "stale.txt").unlink()
    compile_model(str(tiny_classifier), out, options(glue_data_dir, overwrite=True))
    assert set(read_manifest(out)["files"]) == set(files_on_disk(out))
    assert leftovers(out) == []


def test_parity_failure_leaves_no_output(
    tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "artifact"
    with pytest.raises(ParityError, match="within 0:"):
        compile_model(str(tiny_classifier), out, options(glue_data_dir, parity_tolerance=0.0))
    assert not out.exists()
    assert leftovers(out) == []


def test_a_failing_target_leaves_no_output(
    tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self, graph, request, out_dir):
        (out_dir / "half-written.onnx").write_bytes(b"\0" * 16)
        raise TargetBuildError("converter rejected the graph")

    monkeypatch.setattr(type(get_target("onnx")), "build", fail)
    out = tmp_path / "artifact"
    with pytest.raises(TargetBuildError):
        compile_model(str(tiny_classifier), out, options(glue_data_dir))
    assert not out.exists()
    assert leftovers(out) == []


# ---- determinism


NONDETERMINISTIC_ORT = pytest.mark.xfail(
    strict=True,
    reason="onnxruntime 1.32 writes the ORT format's kernel-type-string table from a hash map, "
    "so model.ort's bytes change from build to build although what it holds reads back the same "
    "(test_ort_mobile_rebuild_differs_only_in_layout)",
)


@pytest.fixture(scope="session")
def compiled_twice(
    tmp_path_factory: pytest.TempPathFactory, bertc_cli, tiny_classifier, glue_data_dir
):
    """`compiled_twice(target)`: two artifacts from the same command in two fresh processes,
    run side by side (the claim is about rerunning the build, as CI or a user would)."""
    built: dict[str, tuple[Path, Path]] = {}

    def build(target: str) -> tuple[Path, Path]:
        if target not in built:
            root = tmp_path_factory.mktemp(f"twice-{target}")
            outs = (root / "first", root / "second")
            arguments = ["compile", tiny_classifier, "--target", target, "--task", "sst2"]
            arguments += ["--data-dir", glue_data_dir, "--calibration-samples", "16"]
            processes = [bertc_cli(*arguments, "--out", out, wait=False) for out in outs]
            for process in processes:
                _, error = process.communicate(timeout=300)
                assert process.returncode == 0, error
            built[target] = outs
        return built[target]

    return build


@pytest.mark.parametrize(
    "target",
    [
        "onnx",
        pytest.param("ort-mobile", marks=NONDETERMINISTIC_ORT),
        "openvino",
    ],
)
def test_compile_is_deterministic(compiled_twice, target: str) -> None:
    first, second = compiled_twice(target)
    files = read_manifest(first)["files"]
    assert files == read_manifest(second)["files"]
    for name in MODEL_FILES[target]:
        assert sha256(first / name) == sha256(second / name), name


def test_ort_mobile_rebuild_differs_only_in_layout(compiled_twice) -> None:
    """What the nondeterministic .ort holds is the same each time, and so is its config."""
    first, second = compiled_twice("ort-mobile")
    config = "required_operators.config"
    assert (first / config).read_bytes() == (second / config).read_bytes()
    assert str(first.parent) not in (first / config).read_text()  # no staging path recorded
    # The writer's order moves its vectors, and FlatBuffers pads each to its alignment, so the
    # sizes may differ by up to 3 padding bytes a string (100664 vs 100672 seen in CI), never
    # by content: the size bound catches a duplicated payload, the contents check the rest.
    sizes = [(out / "model.ort").stat().st_size for out in (first, second)]
    assert abs(sizes[0] - sizes[1]) <= 0.005 * max(sizes), sizes
    assert ort_model_contents(first / "model.ort") == ort_model_contents(second / "model.ort")


@pytest.mark.parametrize(
    "target",
    [
        "onnx",
        pytest.param("ort-mobile", marks=NONDETERMINISTIC_ORT),
        pytest.param(
            "openvino",
            marks=pytest.mark.xfail(
                strict=True,
                reason="OpenVINO 2026.4 names unnamed nodes from a per-process counter "
                "(Constant_26525 on one build, Constant_53329 on the next): model.xml differs "
                "within one process, model.bin does not; fresh processes agree",
            ),
        ),
    ],
)
def test_recompiling_in_the_same_process_is_deterministic(
    compile_once, tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path, target: str
) -> None:
    first = compile_once(tiny_classifier, target).artifact_dir  # static, as compile_once builds
    second = tmp_path / "again"
    settings = dict(target=target, calibration_samples=16, quantization="static")
    compile_model(str(tiny_classifier), second, options(glue_data_dir, **settings))
    for name in MODEL_FILES[target]:
        assert sha256(first / name) == sha256(second / name), name


# ---- the task, decided once; the gate runs on the staged artifact


def test_the_task_is_resolved_once_and_recorded_at_the_top(
    tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path
) -> None:
    """A config that names `finetuning_task` ("SST-2") stands in for --task: it is resolved,
    under its canonical name, before any weight is read (`compile_task`) and in the manifest."""
    import shutil

    from bertc.compiler.pipeline import compile_task

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_classifier, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "finetuning_task": "SST-2"}))
    no_task = options(glue_data_dir, task=None)
    assert compile_task(str(checkpoint), no_task).name == "sst2"
    assert compile_task(str(tiny_classifier), no_task) is None
    result = compile_model(str(checkpoint), tmp_path / "artifact", no_task)
    assert result.manifest["task"] == "sst2"
    assert result.manifest["calibration"]["task"] == "sst2"


def test_a_failing_gate_leaves_the_previous_artifact_untouched(
    tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "artifact"
    compile_model(str(tiny_classifier), out, options(glue_data_dir))
    before = {name: sha256(path) for name, path in files_on_disk(out).items()}
    seen: list[tuple[Path, dict]] = []

    def gate(staged: Path, manifest) -> None:
        seen.append((staged, dict(manifest)))
        assert (staged / MANIFEST_FILE).is_file()
        raise OutputExistsError("gate failed on purpose")  # any BertcError

    with pytest.raises(OutputExistsError):
        compile_model(str(tiny_classifier), out, options(glue_data_dir, overwrite=True), gate=gate)
    staged, manifest = seen[0]
    assert staged != out and manifest["task"] == "sst2"
    assert {name: sha256(path) for name, path in files_on_disk(out).items()} == before
    assert leftovers(out) == []


def test_a_passing_gate_sees_the_artifact_before_it_moves_into_place(
    tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "artifact"
    calls: list[bool] = []
    compile_model(
        str(tiny_classifier),
        out,
        options(glue_data_dir),
        gate=lambda staged, manifest: calls.append(out.exists()),
    )
    assert calls == [False] and (out / MANIFEST_FILE).is_file()
