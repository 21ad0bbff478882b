"""`bertc compile` from the command line: bad inputs fail with one line, a distinct exit code and
no output directory; good ones print the manifest as JSON on stdout and nothing else there."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from bertc.compiler.core import errors
from bertc.compiler.core.manifest import read_manifest
from model_factory import (
    REAL_CONFIGS,
    corrupt_safetensors_header,
    make_checkpoint,
    truncate_file,
)


@dataclass(frozen=True)
class BadInput:
    """One failing `bertc compile`: how to call it, and the error class it must end in."""

    error: type[errors.BertcError] | None  # None: a usage error caught by click itself
    message: str
    model: str = "checkpoint"  # a key of the workspace below, or a literal source
    extra: tuple[str, ...] = ()
    target: str = "onnx"
    task: str | None = "sst2"
    data: str = "glue"  # a key of the workspace below

    @property
    def exit_code(self) -> int:
        return 2 if self.error is None else self.error.exit_code


BAD_INPUTS = {
    "non-BERT architecture": BadInput(
        errors.UnsupportedModelError, "unsupported architecture: model_type='roberta'", "roberta"
    ),
    "missing directory": BadInput(errors.ModelNotFoundError, "no such model directory", "absent"),
    "hub id not in the cache": BadInput(
        errors.ModelNotFoundError,
        "is neither a directory nor in the local Hugging Face cache",
        "google/bert_uncased_L-4_H-256_A-4",
    ),
    "missing config.json": BadInput(errors.ModelFileError, "no config.json", "no-config"),
    "corrupt safetensors": BadInput(
        errors.ModelFileError, "is not a readable safetensors file", "corrupt"
    ),
    "truncated safetensors": BadInput(errors.ModelFileError, "file not fully covered", "truncated"),
    "pickle-only weights": BadInput(errors.UnsafeCheckpointError, "--allow-pickle", "pickle"),
    "missing weights": BadInput(errors.ModelFileError, "has no weights", "no-weights"),
    "weights lacking the pooler": BadInput(
        errors.ModelFileError, "lacks 2 weights the config needs", "no-pooler"
    ),
    "unknown target": BadInput(errors.UsageError, "unknown target 'tflite'", target="tflite"),
    "existing output": BadInput(errors.OutputExistsError, "already exists; choose another --out"),
    "task data missing": BadInput(
        errors.DataFileMissingError, "GLUE sst2 train split not found", data="empty-glue"
    ),
    "static INT8 without a task": BadInput(
        errors.UsageError, "static INT8 needs calibration sentences", task=None
    ),
    "zero calibration samples": BadInput(
        errors.UsageError,
        "--calibration-samples must be at least 1",
        extra=("--calibration-samples", "0"),
    ),
    "unknown quantization mode": BadInput(
        None, "Invalid value for '--quantization'", extra=("--quantization", "int4")
    ),
    "unknown option": BadInput(None, "No such option: --bogus", extra=("--bogus",)),
}


def workspace(root: Path, glue_data_dir: Path) -> dict[str, Path]:
    """One checkpoint per kind of damage, written once for all cases."""
    good = make_checkpoint(root / "checkpoint")
    roberta = root / "roberta"
    roberta.mkdir()
    config = {**REAL_CONFIGS["bert-tiny"], "model_type": "roberta"}
    config["architectures"] = ["RobertaForSequenceClassification"]
    (roberta / "config.json").write_text(json.dumps(config))
    copies = {}
    for name in ("no-config", "corrupt", "truncated", "no-weights"):
        copies[name] = Path(shutil.copytree(good, root / name))
    (copies["no-config"] / "config.json").unlink()
    corrupt_safetensors_header(copies["corrupt"] / "model.safetensors")
    truncate_file(copies["truncated"] / "model.safetensors")
    (copies["no-weights"] / "model.safetensors").unlink()
    empty_data = root / "empty-glue"
    (empty_data / "SST-2").mkdir(parents=True)
    return {
        "checkpoint": good,
        "roberta": roberta,
        "absent": root / "absent",
        "pickle": make_checkpoint(root / "pickle", safetensors=False),
        "no-pooler": make_checkpoint(root / "no-pooler", drop_pooler=True),
        "empty-cache": root / "empty-cache",
        "glue": glue_data_dir,
        "empty-glue": empty_data,
        **copies,
    }


def command(case: BadInput, paths: dict[str, Path], out: Path) -> list[str]:
    task = ["--task", case.task] if case.task else []
    model = str(paths.get(case.model, case.model))
    arguments = ["compile", model, "--out", str(out), "--target", case.target, *task]
    return [*arguments, "--data-dir", str(paths[case.data]), *case.extra]


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory: pytest.TempPathFactory, glue_data_dir: Path, bertc_cli):
    """Every bad input, each in its own fresh `bertc` process, all started at once."""
    root = tmp_path_factory.mktemp("bad-inputs")
    paths = workspace(root / "inputs", glue_data_dir)
    running = {}
    for name, case in BAD_INPUTS.items():
        out = root / name.replace(" ", "-") / "artifact"
        out.parent.mkdir()
        if case.error is errors.OutputExistsError:
            out.mkdir()
            (out / "keep.txt").write_text("an earlier artifact")
        env = {"HF_HUB_CACHE": str(paths["empty-cache"]), "HF_HUB_OFFLINE": "1"}
        running[name] = (out, bertc_cli(*command(case, paths, out), env=env, wait=False))
    finished = {}
    for name, (out, process) in running.items():
        stdout, stderr = process.communicate(timeout=300)
        finished[name] = (out, process.returncode, stdout, stderr)
    return finished


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_fails_with_one_line_its_code_and_no_output(bad_input_runs, name: str) -> None:
    case = BAD_INPUTS[name]
    out, code, stdout, stderr = bad_input_runs[name]
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert case.message in lines[0]
    assert "Traceback" not in stderr + stdout
    assert stdout == ""
    assert code == case.exit_code
    if case.error is errors.OutputExistsError:
        assert sorted(path.name for path in out.iterdir()) == ["keep.txt"]
    else:
        assert not out.exists()
    assert sorted(path.name for path in out.parent.iterdir() if path != out) == []


def test_exit_codes_are_distinct_per_cause() -> None:
    """One code per cause; DataError's subclasses share its code (all: task data unusable)."""
    causes = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.BertcError)
    ]
    by_code: dict[int, set[type]] = {}
    for cls in causes:
        family = errors.DataError if issubclass(cls, errors.DataError) else cls
        by_code.setdefault(cls.exit_code, set()).add(family)
    assert all(len(families) == 1 for families in by_code.values()), by_code
    assert 2 not in {cls.exit_code for cls in causes if cls is not errors.UsageError}
    assert errors.UnsafeCheckpointError.exit_code == 6


def test_debug_mode_shows_the_traceback(tmp_path: Path, bertc_cli) -> None:
    result = bertc_cli(
        "compile",
        tmp_path / "absent",
        "--target",
        "onnx",
        "--out",
        tmp_path / "out",
        env={"BERTC_DEBUG": "1"},
    )
    assert result.returncode == errors.ModelNotFoundError.exit_code
    assert "Traceback (most recent call last)" in result.stderr
    assert "ModelNotFoundError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: no such model directory")


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_json_output_is_the_manifest_alone(
    tiny_classifier: Path, glue_data_dir: Path, tmp_path: Path, bertc_cli, target: str
) -> None:
    out = tmp_path / "artifact"
    result = bertc_cli(
        "compile",
        tiny_classifier,
        "--target",
        target,
        "--out",
        out,
        "--task",
        "sst2",
        "--data-dir",
        glue_data_dir,
        "--calibration-samples",
        "8",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    # NNCF prints progress and a log table; none of it may reach stdout.
    assert json.loads(result.stdout) == read_manifest(out)
    assert "Traceback" not in result.stderr


def test_pickle_weights_compile_with_the_opt_in(
    tmp_path: Path, glue_data_dir: Path, bertc_cli
) -> None:
    checkpoint = make_checkpoint(tmp_path / "pickle", safetensors=False)
    out = tmp_path / "artifact"
    result = bertc_cli(
        "compile",
        checkpoint,
        "--target",
        "onnx",
        "--out",
        out,
        "--allow-pickle",
        "--quantization",
        "dynamic",
    )
    assert result.returncode == 0, result.stderr
    assert "compiled" in result.stdout
    assert read_manifest(out)["source"]["weights"][0]["name"] == "pytorch_model.bin"
