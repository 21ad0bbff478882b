"""Careless and hostile use of the Python API, the runtime loader and packs: each case found by
trying to break bertc, each refused in one typed error (or answered correctly), never a crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from bertc.compiler import CompileOptions
from bertc.compiler.core.errors import ArtifactError, BertcError, OutputExistsError, UsageError

REPO = Path(__file__).resolve().parents[2]


# ---- CompileOptions: every bad value is a UsageError when the options are built


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantization": "int4"}, "quantization must be one of static, dynamic, none"),
        ({"recipe": "fast"}, "recipe must be one of"),
        ({"tokenizer": "fusd"}, "tokenizer must be one of fused, separate, none"),
        ({"max_sequence_length": 0}, "max_sequence_length"),
        ({"max_sequence_length": 12.5}, "max_sequence_length"),
        ({"calibration_samples": -5}, "calibration_samples"),
        ({"calibration_samples": True}, "calibration_samples"),
        ({"parity_tolerance": float("nan")}, "parity_tolerance"),
        ({"target": ""}, "target must name"),
        ({"task": "  "}, "task must name"),
    ],
)
def test_bad_compile_options_are_usage_errors(overrides: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        CompileOptions(**{"target": "onnx", **overrides})


def test_compile_options_take_the_enums_values_as_strings() -> None:
    options = CompileOptions(target="onnx", quantization="dynamic", tokenizer="none", data_dir=".")
    assert options.quantization.value == "dynamic" and options.tokenizer.value == "none"
    assert isinstance(options.data_dir, Path)


def test_compile_options_import_no_torch() -> None:
    code = "import sys; from bertc.compiler import CompileOptions; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# ---- compile: a task the head cannot answer is refused before any weight is read


def test_a_task_the_head_cannot_answer_is_refused_before_loading(
    tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from bertc.compiler import pipeline

    def no_loading(*args, **kwargs):
        raise AssertionError("the weights were read before the task was checked")

    monkeypatch.setattr(pipeline, "load_model", no_loading)
    options = CompileOptions(target="ort-mobile", task="stsb", data_dir=glue_data_dir)
    with pytest.raises(UsageError, match="classifier head with 2 output.* stsb needs a regression"):
        pipeline.compile_model(str(tiny_classifier), tmp_path / "out", options)
    assert not (tmp_path / "out").exists()


def test_static_int8_without_a_task_is_refused_before_loading(
    tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from bertc.compiler import pipeline

    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: pytest.fail("weights read"))
    options = CompileOptions(target="onnx", data_dir=glue_data_dir)
    with pytest.raises(UsageError, match="static INT8 needs calibration sentences"):
        pipeline.compile_model(str(tiny_classifier), tmp_path / "out", options)


# ---- verify without a task reads the artifact's own


def test_verify_without_a_task_uses_the_manifests(
    compile_once, tiny_classifier, glue_data_dir, artifact_copy
) -> None:
    from bertc.compiler import verify_artifact

    artifact = artifact_copy(compile_once(tiny_classifier, "onnx").artifact_dir)
    report = verify_artifact(artifact, None, data_dir=glue_data_dir, max_drop=100)
    assert report.task == "sst2"


def test_verify_without_a_task_refuses_an_artifact_that_records_none(
    compile_once, tiny_classifier, glue_data_dir, artifact_copy
) -> None:
    from bertc.compiler import verify_artifact
    from bertc.compiler.core.manifest import describe_files, write_manifest

    artifact = artifact_copy(compile_once(tiny_classifier, "onnx").artifact_dir)
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["task"] = None
    manifest["calibration"] = None
    manifest["model"]["config"].pop("finetuning_task", None)
    manifest["files"] = describe_files(artifact)
    write_manifest(artifact, manifest)  # resealed: a manifest bertc wrote with no task
    with pytest.raises(UsageError, match="records no task: pass the GLUE task"):
        verify_artifact(artifact, None, data_dir=glue_data_dir)


# ---- the runtime loader


@pytest.fixture(scope="module")
def loader():
    from bertc.targets import loader

    return loader


def test_a_single_string_is_one_example_not_its_characters(
    compile_once, tiny_classifier, loader
) -> None:
    model = loader.load(compile_once(tiny_classifier, "onnx").artifact_dir)
    assert len(model.predict("good movie")) == 1
    with pytest.raises(ValueError, match="texts must be a string or a list of strings"):
        model.predict([1, 2])


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
@pytest.mark.parametrize("target", ["openvino", "onnx"])
def test_bad_thread_counts_are_refused_before_the_runtime_sees_them(
    compile_once, tiny_classifier, loader, threads, target
) -> None:
    artifact = compile_once(tiny_classifier, target).artifact_dir
    with pytest.raises(ValueError, match="threads must be"):
        loader.load(artifact, threads=threads)
    with pytest.raises(ValueError, match="threads must be"):
        loader.load_ids(artifact, threads=threads)


@pytest.mark.parametrize("manifest", ["[]", "{}", '{"model": 1, "runtime": {}}', "not json"])
def test_a_malformed_manifest_is_one_load_error(tmp_path: Path, loader, manifest: str) -> None:
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(loader.ArtifactLoadError):
        loader.load(tmp_path)


@pytest.mark.parametrize("script", ["loader.py", "runtime_app.py"])
def test_the_loader_script_runs_from_inside_the_repo_and_fails_in_one_line(
    compile_once, tiny_classifier, script: str, tmp_path: Path
) -> None:
    """`python targets/loader.py` (and the old name) from the repo root: targets/openvino.py
    must not shadow the openvino package; a missing artifact is one line, not a traceback."""
    artifact = compile_once(tiny_classifier, "openvino").artifact_dir
    path = REPO / "targets" / script
    done = subprocess.run(
        [sys.executable, str(path), str(artifact), "a fine film"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() in {"positive", "negative"}
    missing = subprocess.run(
        [sys.executable, str(path), str(tmp_path / "nothing"), "a fine film"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert missing.returncode == 11
    assert missing.stderr.strip().count("\n") == 0 and "error:" in missing.stderr


# ---- packs: damaged or foreign input is one ArtifactError, nothing is left behind


@pytest.fixture(scope="module")
def packed(compile_once, tiny_classifier, tmp_path_factory) -> Path:
    from bertc.compiler.packing import pack_artifact

    artifact = compile_once(tiny_classifier, "onnx").artifact_dir
    return pack_artifact(artifact, tmp_path_factory.mktemp("pack") / "tiny.bertcpack")


def _truncated(packed: Path, tmp: Path) -> Path:
    path = tmp / "truncated.bertcpack"
    path.write_bytes(packed.read_bytes()[:1000])
    return path


def _garbage(packed: Path, tmp: Path) -> Path:
    path = tmp / "garbage.bertcpack"
    path.write_bytes(b"\x00not a pack at all" * 100)
    return path


def _foreign_tar(packed: Path, tmp: Path) -> Path:
    path = tmp / "foreign.bertcpack"
    (tmp / "a.txt").write_text("hello")
    with tarfile.open(path, "w") as archive:
        archive.add(tmp / "a.txt", arcname="a.txt")
    return path


def _manifest_not_an_object(packed: Path, tmp: Path) -> Path:
    from bertc.compiler.packing import pack_bytes

    path = tmp / "list-manifest.bertcpack"
    payload = pack_bytes(b"[]")
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(payload)
        import io

        archive.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.parametrize(
    "make", [_truncated, _garbage, _foreign_tar, _manifest_not_an_object], ids=lambda f: f.__name__
)
def test_a_damaged_or_foreign_pack_is_one_artifact_error(packed, tmp_path: Path, make) -> None:
    from bertc.compiler.packing import unpack_artifact

    pack = make(packed, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ArtifactError):
        unpack_artifact(pack, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_unpack_paths_that_do_not_exist(packed, tmp_path: Path) -> None:
    from bertc.compiler.packing import pack_artifact, unpack_artifact

    with pytest.raises(ArtifactError, match="no such pack file"):
        unpack_artifact(tmp_path / "missing.bertcpack", tmp_path / "out")
    with pytest.raises(ArtifactError, match="no such pack file"):
        unpack_artifact(tmp_path, tmp_path / "out2")  # a directory, not a pack
    with pytest.raises(UsageError, match="does not exist"):
        unpack_artifact(packed, tmp_path / "no" / "such" / "out")
    with pytest.raises(OutputExistsError):
        unpack_artifact(packed, tmp_path)
    artifact = unpack_artifact(packed, tmp_path / "restored")
    with pytest.raises(UsageError, match="does not exist"):
        pack_artifact(artifact, tmp_path / "no" / "such.bertcpack")


def test_every_failure_here_is_a_bertc_error() -> None:
    for error in (ArtifactError, OutputExistsError, UsageError):
        assert issubclass(error, BertcError) and error.exit_code not in (0, 1, 70)


# ---- a label map that does not cover the model's outputs


@pytest.mark.parametrize("labels", [{"0": "only"}, {"0": "a", "1": "b", "2": "c"}], ids=len)
def test_labels_that_miss_the_models_outputs_are_refused_when_they_run(
    compile_once, tiny_classifier, loader, tmp_path: Path, labels: dict, bertc_cli
) -> None:
    """A resealed manifest whose every label map agrees (so load() passes) but whose model has
    another number of outputs: predict() is an ArtifactLoadError, `bertc run` exit 11."""
    import shutil

    from bertc.compiler.core.manifest import write_manifest

    artifact = tmp_path / "artifact"
    shutil.copytree(compile_once(tiny_classifier, "onnx").artifact_dir, artifact)
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["model"]["labels"] = manifest["head"]["labels"] = labels
    manifest["model"]["config"]["id2label"] = labels
    manifest["model"]["config"]["label2id"] = {name: int(i) for i, name in labels.items()}
    write_manifest(artifact, manifest)
    model = loader.load(artifact)
    with pytest.raises(loader.ArtifactLoadError, match=f"names {len(labels)} labels"):
        model.predict(["good movie"])
    done = bertc_cli("run", artifact, "good movie")
    assert done.returncode == ArtifactError.exit_code and done.stdout == "", done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "labels" in done.stderr


@pytest.mark.parametrize(
    "name", ["neg\nEVIL", "a\tb", "", " ", "x\u200by", "x\x00", 3, None], ids=repr
)
def test_the_loader_and_bertc_refuse_the_same_label_names(loader, name) -> None:
    from bertc.compiler.core.manifest_schema import label_name_problem

    assert label_name_problem(name) is not None
    assert loader.label_name_problem(name) is not None


@pytest.mark.parametrize("name", ["positive", "not_entailment", "très bien", "😀", "a b"])
def test_printable_label_names_pass_both_checks(loader, name) -> None:
    from bertc.compiler.core.manifest_schema import label_name_problem

    assert label_name_problem(name) is None and loader.label_name_problem(name) is None
