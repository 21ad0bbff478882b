"""Faults (issue 16, kinds 3 and 7): signals at each stage, a full or read-only disk, two runs
racing to one --out. A fault never reports success, never leaves a half-written output and never
touches the previous one; a process killed outright leaves staging that the next run sweeps.

Signals are delivered at a stage deterministically: BERTC_TEST_SIGNAL_AT="STAGE:SIGNAL" makes
the CLI's progress callback send the signal to its own process as STAGE starts
(`bertc.compiler.cli.output`); one case per signal also sends it from outside, while the
quantizer's native code runs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from bertc.compiler.core import errors
from bertc.compiler.core.manifest import check_integrity, read_manifest

COMPILE_STAGES = ("load", "export", "parity", "quantize", "package")
SIGNALS = {"SIGINT": 130, "SIGTERM": 143, "SIGKILL": -signal.SIGKILL}


def compile_arguments(model: Path, out: Path, data: Path, target: str = "onnx") -> list:
    return [
        "compile", model, "--target", target, "--quantization", "dynamic", "--tokenizer", "none",
        "--task", "sst2", "--data-dir", data, "--out", out, "--overwrite",
    ]  # fmt: skip


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "/"
        for path in sorted(root.rglob("*"))
    }


def siblings(out: Path) -> list[str]:
    return sorted(path.name for path in out.parent.iterdir())


@pytest.fixture(scope="module")
def previous_artifact(tmp_path_factory, tiny_classifier: Path, glue_data_dir: Path, bertc_cli):
    """An artifact compiled before the fault: what --out holds when the faulty run starts."""
    out = tmp_path_factory.mktemp("previous") / "artifact"
    result = bertc_cli(*compile_arguments(tiny_classifier, out, glue_data_dir))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def out_with_previous(tmp_path: Path, previous_artifact: Path) -> Path:
    return Path(shutil.copytree(previous_artifact, tmp_path / "artifact"))


# ---- signals at each compile stage ----


@pytest.mark.parametrize("signal_name", list(SIGNALS))
@pytest.mark.parametrize("stage", COMPILE_STAGES)
def test_a_signal_at_each_compile_stage_keeps_the_previous_artifact(
    stage: str,
    signal_name: str,
    out_with_previous: Path,
    tiny_classifier: Path,
    glue_data_dir: Path,
    bertc_cli,
) -> None:
    out = out_with_previous
    before = tree_digest(out)
    arguments = compile_arguments(tiny_classifier, out, glue_data_dir)
    result = bertc_cli(*arguments, env={"BERTC_TEST_SIGNAL_AT": f"{stage}:{signal_name}"})
    assert result.returncode == SIGNALS[signal_name], result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(out) == before  # byte-identical, nothing partial inside
    if signal_name != "SIGKILL":
        assert result.stderr.splitlines()[-1] == "aborted", result.stderr
        assert siblings(out) == ["artifact"]  # the staging directory removed on the way out
        return
    # Killed outright: its staging stays (from the export on); the next compile sweeps it.
    left = [name for name in siblings(out) if name != "artifact"]
    assert all(name.startswith(".artifact.partial-") for name in left), left
    assert bool(left) == (stage != "load"), left  # load runs before the staging is made
    again = bertc_cli(*arguments)
    assert again.returncode == 0, again.stderr
    assert siblings(out) == ["artifact"]
    check_integrity(out, read_manifest(out))


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_from_outside_while_native_code_quantizes(
    signal_name: str, out_with_previous: Path, tiny_classifier: Path, glue_data_dir, bertc_cli
) -> None:
    out = out_with_previous
    before = tree_digest(out)
    arguments = compile_arguments(tiny_classifier, out, glue_data_dir, target="openvino")
    process = bertc_cli(*[a if a != "dynamic" else "static" for a in arguments], wait=False)
    seen = []
    try:
        # Piped, a stage's line is printed as the stage starts (from the second one on).
        while not (line := process.stderr.readline()).startswith("• quantizing"):
            assert line, f"compile ended before quantizing: {''.join(seen)}"
            seen.append(line)
        process.send_signal(getattr(signal, signal_name))
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # a no-op once it has exited
    assert process.returncode == SIGNALS[signal_name], stderr
    assert stderr.splitlines()[-1] == "aborted", stderr
    assert tree_digest(out) == before
    assert siblings(out) == ["artifact"]


# ---- signals in the other long commands ----


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", ["artifact", "reference"])
def test_a_signal_during_verify_fails_the_gate_run(
    stage: str, signal_name: str, out_with_previous: Path, glue_data_dir: Path, bertc_cli
) -> None:
    out = out_with_previous
    before = tree_digest(out)
    result = bertc_cli(
        "verify", out, "--data-dir", glue_data_dir, "--max-drop", "100",
        env={"BERTC_TEST_SIGNAL_AT": f"{stage}:{signal_name}"},
    )  # fmt: skip
    assert result.returncode == SIGNALS[signal_name], result.stderr  # never 0: CI must see it
    assert result.stderr.splitlines()[-1] == "aborted"
    assert "gate passed" not in result.stdout
    assert tree_digest(out) == before  # no reports written


TRAINING = {
    "finetune": lambda model, out, data: ["finetune", model, "--task", "sst2"],
    "distill": lambda model, out, data: [
        "distill", "--teacher", model, "--student", model, "--task", "sst2",
    ],
    "prune": lambda model, out, data: ["prune", model, "--pattern", "2:4", "--task", "sst2"],
}  # fmt: skip


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", ["read data", "save"])
@pytest.mark.parametrize("command", list(TRAINING))
def test_a_signal_during_training_leaves_no_output(
    command: str,
    stage: str,
    signal_name: str,
    tmp_path: Path,
    tiny_classifier: Path,
    glue_data_dir: Path,
    bertc_cli,
) -> None:
    out = tmp_path / "out"
    result = bertc_cli(
        *TRAINING[command](tiny_classifier, out, glue_data_dir),
        "--data-dir", glue_data_dir, "--max-steps", "1", "--train-samples", "8", "--out", out,
        env={"BERTC_TEST_SIGNAL_AT": f"{stage}:{signal_name}"},
    )  # fmt: skip
    assert result.returncode == SIGNALS[signal_name], result.stderr
    assert result.stderr.splitlines()[-1] == "aborted"
    assert list(tmp_path.iterdir()) == []  # no output, no staging, no checkpoints folder


# ---- two compiles racing to one --out ----


def test_two_compiles_racing_to_one_out_one_wins_one_refuses(
    tmp_path: Path, tiny_classifier: Path, glue_data_dir: Path, bertc_cli
) -> None:
    out = tmp_path / "artifact"
    arguments = compile_arguments(tiny_classifier, out, glue_data_dir)[:-1]  # no --overwrite
    runs = [bertc_cli(*arguments, wait=False) for _ in range(2)]
    results = [(run.wait(timeout=300), run.communicate()[1]) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, errors.OutputExistsError.exit_code], results
    loser = next(stderr for code, stderr in results if code)
    assert loser.splitlines()[-1].startswith(f"error: {out} "), loser
    assert siblings(out) == ["artifact"]
    check_integrity(out, read_manifest(out))  # the winner's, whole


# ---- a full, read-only or forbidden disk: one line, exit 17, nothing half-written ----


def run_main(monkeypatch, capsys, *arguments) -> tuple[int, str, str]:
    """`bertc ARGUMENTS` in this process (so a test can patch the file system's answers)."""
    from bertc.compiler.cli import main

    monkeypatch.setattr(sys, "argv", ["bertc", *map(str, arguments)])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refuse(number: int):
    def raise_it(*args, **kwargs):
        raise OSError(number, os.strerror(number), "/where/it/wrote")

    return raise_it


WRITE_ERRNOS = [errno.ENOSPC, errno.EROFS, errno.EACCES]


@pytest.mark.parametrize("number", WRITE_ERRNOS, ids=errno.errorcode.get)
def test_compile_onto_a_full_or_read_only_disk(
    number: int, monkeypatch, capsys, out_with_previous, tiny_classifier, glue_data_dir
) -> None:
    import bertc.compiler.pipeline as pipeline

    out = out_with_previous
    before = tree_digest(out)
    monkeypatch.setattr(pipeline, "write_manifest", refuse(number))
    code, _, stderr = run_main(
        monkeypatch, capsys, *compile_arguments(tiny_classifier, out, glue_data_dir)
    )
    assert code == errors.OutputWriteError.exit_code == 17, stderr
    assert stderr.splitlines()[-1] == (
        f"error: cannot write /where/it/wrote: {os.strerror(number)} (free space or permissions?)"
    )
    assert tree_digest(out) == before
    assert siblings(out) == ["artifact"]


@pytest.mark.parametrize("number", WRITE_ERRNOS, ids=errno.errorcode.get)
def test_finetune_onto_a_full_or_read_only_disk(
    number: int, monkeypatch, capsys, tmp_path, tiny_classifier, glue_data_dir
) -> None:
    from bertc.compiler.training import loop

    monkeypatch.setattr(loop, "save_checkpoint", refuse(number))
    out = tmp_path / "out"
    code, _, stderr = run_main(
        monkeypatch, capsys, *TRAINING["finetune"](tiny_classifier, out, glue_data_dir),
        "--data-dir", glue_data_dir, "--max-steps", "1", "--train-samples", "8", "--out", out,
    )  # fmt: skip
    assert code == 17, stderr
    assert stderr.splitlines()[-1].startswith("error: cannot write /where/it/wrote")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("gate_passes", [True, False], ids=["gate-passes", "gate-fails"])
def test_verify_on_a_read_only_artifact_keeps_its_result_and_gate(
    gate_passes: bool, monkeypatch, capsys, out_with_previous: Path, glue_data_dir: Path
) -> None:
    import bertc.compiler.verify.report as report

    monkeypatch.setattr(report, "write_text_atomically", refuse(errno.EROFS))
    if not gate_passes:
        real_gate = report.apply_gate
        monkeypatch.setattr(
            report, "apply_gate", lambda task, headline, max_drop: real_gate(task, headline, -100)
        )
    code, stdout, stderr = run_main(
        monkeypatch, capsys, "verify", out_with_previous, "--data-dir", glue_data_dir,
        "--max-drop", "100",
    )  # fmt: skip
    assert code == (0 if gate_passes else errors.GateFailedError.exit_code), stderr
    assert "warning: the reports were not saved: cannot write the verify reports" in stderr
    assert ("gate passed" if gate_passes else "gate failed") in stdout
    assert "reports:" not in stdout
    assert list(out_with_previous.glob("reports/*")) == []  # (a writable disk: mkdir worked)


# ---- diverged training: a non-finite loss or weights fail the run (exit 18), nothing written


TRAINING_RUNS = {
    "finetune": lambda model, out, data, lr: [
        "finetune", model, "--task", "sst2", "--data-dir", data, "--max-steps", "6",
        "--batch-size", "8", "--train-samples", "16", "--learning-rate", lr, "--out", out,
    ],
    "distill": lambda model, out, data, lr: [
        "distill", "--teacher", model, "--student", model, "--task", "sst2", "--data-dir", data,
        "--max-steps", "6", "--batch-size", "8", "--train-samples", "16", "--learning-rate", lr,
        "--out", out,
    ],
    "prune": lambda model, out, data, lr: [
        "prune", model, "--pattern", "2:4", "--task", "sst2", "--data-dir", data,
        "--max-steps", "6", "--batch-size", "8", "--train-samples", "16", "--learning-rate", lr,
        "--out", out,
    ],
}  # fmt: skip


@pytest.mark.parametrize("learning_rate", ["1e30", "3e38"])
@pytest.mark.parametrize("command", list(TRAINING_RUNS))
def test_diverged_training_fails_with_exit_18_and_writes_nothing(
    command: str,
    learning_rate: str,
    tmp_path: Path,
    tiny_classifier: Path,
    glue_data_dir,
    bertc_cli,
) -> None:
    out = tmp_path / "out"
    result = bertc_cli(*TRAINING_RUNS[command](tiny_classifier, out, glue_data_dir, learning_rate))
    assert result.returncode == errors.TrainingDivergedError.exit_code == 18, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged: ") and "--learning-rate" in last, last
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name != "out.checkpoints") == []


@pytest.mark.parametrize("command", list(TRAINING_RUNS))
def test_a_learning_rate_past_float32_is_a_usage_error(
    command: str, tmp_path: Path, tiny_classifier: Path, glue_data_dir, bertc_cli
) -> None:
    out = tmp_path / "out"
    result = bertc_cli(*TRAINING_RUNS[command](tiny_classifier, out, glue_data_dir, "1e300"))
    assert result.returncode == errors.UsageError.exit_code == 2, result.stderr
    assert "--learning-rate must be a float32 number" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_diverged_grid_trial_is_a_failed_trial(
    tmp_path: Path, tiny_classifier: Path, glue_data_dir, bertc_cli
) -> None:
    """One trial's learning rate diverges: it is recorded as failed (null metrics, its error),
    the other trial wins, and the grid report is strict JSON (no NaN or Infinity)."""
    out = tmp_path / "out"
    result = bertc_cli(
        "finetune", tiny_classifier, "--task", "sst2", "--data-dir", glue_data_dir,
        "--max-steps", "4", "--train-samples", "16", "--grid", "seed",
        "--grid-batch-sizes", "8", "--grid-learning-rates", "1e30,3e-3", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report_path = out / "grid.json"
    report = json.loads(
        report_path.read_text(),
        parse_constant=lambda name: pytest.fail(f"{report_path.name} holds {name}"),
    )
    trials = {trial["learning_rate"]: trial for trial in report["trials"]}
    assert trials[1e30]["error"].startswith("training diverged: ")
    assert trials[3e-3]["error"] is None
    assert report["winner"] == trials[3e-3]["index"]


def test_reports_are_strict_json() -> None:
    from bertc.compiler.core.files import report_text

    text = report_text({"loss": float("nan"), "runs": [float("inf"), 1.5], "n": (float("-inf"),)})
    assert json.loads(text) == {"loss": None, "runs": [None, 1.5], "n": [None]}
