"""The artifact commands from the command line. `bertc compile`: bad inputs fail with one line, a
distinct exit code and no output directory; good ones print the manifest as JSON on stdout and
nothing else there; `--verify` is decided before the compile and gates the staged artifact, so a
failed gate leaves an earlier artifact as it was. `verify`, `run`: progress on stderr, flags
passed through, a stray second text refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
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


# ---- compile --verify: decided before the compile, gating the staged artifact ----

# `bertc ARGS` with verify's gate made too strict to pass (as `--max-drop -100` would be, a value
# the flag refuses): every artifact fails it, whatever its accuracy.
FAILING_GATE_DRIVER = """
import sys
import bertc.compiler.verify.report as report  # where the report applies the gate
real_gate = report.apply_gate
report.apply_gate = lambda task, headline, max_drop: real_gate(task, headline, -100.0)
sys.argv = ["bertc", *sys.argv[1:]]
from bertc.compiler.cli import main
main()
"""


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def with_finetuning_task(checkpoint: Path, copy: Path, task: str) -> Path:
    shutil.copytree(checkpoint, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "finetuning_task": task}))
    return copy


def compile_arguments(model: Path, out: Path, glue_data_dir: Path, *extra) -> list:
    return [
        "compile", model, "--target", "openvino", "--out", out, "--data-dir", glue_data_dir,
        "--calibration-samples", "8", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def verified(tmp_path_factory, tiny_classifier: Path, glue_data_dir: Path, bertc_cli):
    """`compile --verify` with no --task, of a checkpoint whose config names sst2: the run and
    its artifact (a fused tokenizer: strings in)."""
    root = tmp_path_factory.mktemp("verified")
    model = with_finetuning_task(tiny_classifier, root / "sst2-checkpoint", "SST-2")
    out = root / "artifact"
    result = bertc_cli(
        *compile_arguments(model, out, glue_data_dir, "--verify", "--max-drop", "100")
    )
    return result, out


def test_verify_takes_the_task_from_the_checkpoint_config(verified) -> None:
    result, out = verified
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    assert manifest["task"] == "sst2"
    assert "gate passed: sst2 accuracy" in result.stdout
    report = json.loads((out / "reports" / "verify-sst2.json").read_text())
    assert report["gate"]["passed"] is True
    assert report["artifact_dir"] == str(out)  # the final directory, not the staging one
    assert f"reports: {out / 'reports' / 'verify-sst2.md'}" in result.stdout
    assert sorted(path.name for path in out.parent.iterdir()) == ["artifact", "sst2-checkpoint"]


def test_progress_lines_on_stderr_when_it_is_not_a_terminal(verified) -> None:
    result, _ = verified
    lines = result.stderr.splitlines()
    for stage in (
        "• loading checkpoint",
        "• exporting to ONNX",
        "• quantizing to INT8",
        "• verifying the staged artifact (--verify)",
        "• verify: running the artifact at batch 1",
        "• verify: running the fp32 reference",
    ):
        assert lines.count(stage) == 1, (stage, result.stderr)
    assert lines.index("• loading checkpoint") < lines.index("• exporting to ONNX")


def test_verify_without_a_task_is_refused_before_any_work(
    tmp_path: Path, tiny_encoder: Path, glue_data_dir: Path, bertc_cli
) -> None:
    out = tmp_path / "artifact"
    started = time.perf_counter()
    result = bertc_cli(*compile_arguments(tiny_encoder, out, glue_data_dir, "--verify"))
    elapsed = time.perf_counter() - started
    assert result.returncode == errors.UsageError.exit_code
    assert result.stderr.splitlines() == [
        "error: --verify needs a GLUE task to score on: pass --task, or compile a checkpoint "
        "whose config names its finetuning_task"
    ]
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no artifact, no staging directory
    assert elapsed < 60, elapsed  # the imports alone; a compile and verify take far longer


def test_a_failed_gate_leaves_the_previous_artifact_byte_identical(
    verified, tmp_path: Path, tiny_classifier: Path, glue_data_dir: Path
) -> None:
    _, previous = verified
    out = Path(shutil.copytree(previous, tmp_path / "artifact"))
    before = tree_bytes(out)
    arguments = compile_arguments(
        tiny_classifier, out, glue_data_dir, "--task", "sst2", "--verify", "--overwrite"
    )
    result = subprocess.run(
        [sys.executable, "-c", FAILING_GATE_DRIVER, *map(str, arguments)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert result.returncode == errors.GateFailedError.exit_code == 12, result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: gate failed: sst2 accuracy")
    assert "more than --max-drop -100" in result.stderr
    assert "gate failed" in result.stdout  # the report's table, though nothing was kept
    assert "reports:" not in result.stdout
    assert tree_bytes(out) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["artifact"]  # no staging left


# ---- verify, run ----


def test_verify_prints_one_line_per_stage_when_piped(
    verified, glue_data_dir, bertc_cli, artifact_copy
) -> None:
    _, artifact = verified
    copy = artifact_copy(artifact)  # verify writes reports/: never into the shared artifact
    result = bertc_cli("verify", copy, "--task", "sst2", "--data-dir", glue_data_dir)
    assert result.returncode == 0, result.stderr
    stages = [line for line in result.stderr.splitlines() if line.startswith("• ")]
    assert stages == [
        "• checking the artifact against its manifest",
        "• reading the task's examples",
        "• loading the fp32 reference",
        "• running the artifact at batch 1",
        "• measuring batched throughput",
        "• running the fp32 reference",
        "• scoring, paired bootstrap",
        "• writing reports",
    ]


def test_verify_passes_reference_threads_only_when_given(monkeypatch, tmp_path: Path) -> None:
    """`--threads` is the runtime's; `--reference-threads` reaches verify only when given, so
    the CLI works with a verify_artifact with or without that parameter."""
    import bertc.compiler.verify as verify
    from bertc.compiler.cli import main

    calls = []

    def fake_verify_artifact(artifact_dir, task, **options):
        calls.append(options)
        raise errors.DataError("stopped here")

    monkeypatch.setattr(verify, "verify_artifact", fake_verify_artifact)
    for extra in ([], ["--reference-threads", "3"]):
        arguments = ["verify", str(tmp_path), "--task", "sst2", "--threads", "2", *extra]
        monkeypatch.setattr(sys, "argv", ["bertc", *arguments])
        with pytest.raises(SystemExit) as exit:
            main()
        assert exit.value.code == errors.DataError.exit_code
    assert calls[0]["threads"] == calls[1]["threads"] == 2
    assert "reference_threads" not in calls[0]
    assert calls[1]["reference_threads"] == 3


def test_run_refuses_a_second_text_for_a_one_text_artifact(verified, bertc_cli) -> None:
    _, artifact = verified
    result = bertc_cli("run", artifact, "a warm film", "--json", "true")
    assert result.returncode == errors.UsageError.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {artifact} takes one text per example, but a second text was given: 'true'"
    )
    assert result.stdout == ""
    done = bertc_cli("run", artifact, "a warm film", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == "a warm film"


def test_token_ids_note_is_printed_once(tmp_path: Path, tiny_classifier: Path, bertc_cli) -> None:
    """ORT's tokenizer falls back to token ids in on the hard set: one note, on stderr."""
    out = tmp_path / "artifact"
    result = bertc_cli(
        "compile", tiny_classifier, "--target", "onnx", "--out", out, "--quantization", "dynamic"
    )
    assert result.returncode == 0, result.stderr
    notes = [note for note in read_manifest(out)["notes"] if note.startswith("token ids in")]
    if not notes:
        pytest.skip("this onnxruntime-extensions' tokenizer passed the parity check")
    assert (result.stdout + result.stderr).count("token ids in") == 1
    assert f"note: {notes[0]}" in " ".join(result.stderr.split())


def test_an_fp32_compile_does_not_say_it_quantizes(
    tmp_path: Path, tiny_classifier: Path, glue_data_dir: Path, bertc_cli
) -> None:
    out = tmp_path / "fp32"
    arguments = compile_arguments(tiny_classifier, out, glue_data_dir, "--quantization", "none")
    result = bertc_cli(*arguments, "--task", "sst2", "--max-drop", "none")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "• converting for the runtime (fp32: --quantization none)" in lines
    assert not [line for line in lines if "quantizing to INT8" in line], result.stderr
