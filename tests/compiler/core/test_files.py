"""core/files.py: what bertc may replace, staging directories, sweeping, atomic replacement."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from bertc.compiler.core.errors import OutputExistsError, OutputWriteError, UsageError
from bertc.compiler.core.files import (
    ARTIFACT,
    TRAINING_OUTPUT,
    TRAINING_REPORTS,
    check_output,
    is_bertc_artifact,
    is_bertc_training_output,
    make_staging_dir,
    move_into_place,
    sweep_stale,
    writing,
)

BERTC_MANIFEST = {"schema_version": 1, "toolchain": {"bertc": "0.1.0"}, "files": {}}


def fake_artifact(path: Path, marker: str = "old") -> Path:
    path.mkdir(parents=True)
    manifest = {**BERTC_MANIFEST, "files": {"model.onnx": {"bytes": len(marker)}}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "model.onnx").write_text(marker)
    return path


def fake_training_output(path: Path, report: str = "finetune.json") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / report).write_text(json.dumps({"task": "sst2", "training": {}, "dev_metrics": {}}))
    return path


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_training_commands_write_the_reports_core_recognises() -> None:
    from bertc.compiler.training import distill, finetune, prune

    assert {finetune.REPORT_FILE, distill.REPORT_FILE, prune.REPORT_FILE} == set(TRAINING_REPORTS)


@pytest.mark.parametrize(
    "manifest",
    [
        {"files": {}},
        {"schema_version": "1", "toolchain": {"bertc": "0.1"}},
        {"schema_version": 1, "toolchain": {"torch": "2.13"}},
        {"schema_version": 1, "toolchain": ["bertc"]},
        ["schema_version", 1],
        "not json at all",
    ],
    ids=["no-schema", "schema-as-text", "no-bertc-version", "toolchain-list", "list", "garbage"],
)
def test_a_manifest_not_of_bertcs_schema_is_not_an_artifact(tmp_path: Path, manifest) -> None:
    (tmp_path / "manifest.json").write_text(
        manifest if isinstance(manifest, str) else json.dumps(manifest)
    )
    assert not is_bertc_artifact(tmp_path)
    assert is_bertc_artifact(fake_artifact(tmp_path / "real"))


@pytest.mark.parametrize("report", TRAINING_REPORTS)
def test_a_training_output_is_recognised_by_its_report(tmp_path: Path, report: str) -> None:
    output = fake_training_output(tmp_path / "out", report)
    assert is_bertc_training_output(output)
    (output / "config.json").unlink()  # a report alone is not a checkpoint
    assert not is_bertc_training_output(output)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "config.json").write_text("{}")
    (stray / report).write_text(json.dumps({"my": "own notes"}))
    assert not is_bertc_training_output(stray)


def test_check_output_refuses_what_bertc_did_not_make(tmp_path: Path) -> None:
    artifact = fake_artifact(tmp_path / "artifact")
    training = fake_training_output(tmp_path / "trained")
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    check_output(tmp_path / "new", overwrite=False)  # absent: nothing to refuse
    check_output(artifact, overwrite=True, kind=ARTIFACT)
    check_output(training, overwrite=True, kind=TRAINING_OUTPUT)
    refused = [
        (artifact, False, ARTIFACT, "pass --overwrite"),
        (user, True, ARTIFACT, "not a bertc artifact"),
        (a_file, True, ARTIFACT, "is a file bertc did not make"),
        (training, True, ARTIFACT, "not a bertc artifact"),  # each command its own kind
        (artifact, True, TRAINING_OUTPUT, "not a bertc training output"),
    ]
    for out, overwrite, kind, message in refused:
        with pytest.raises(OutputExistsError, match=message):
            check_output(out, overwrite, kind)
    assert (user / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("kind", [ARTIFACT, TRAINING_OUTPUT])
@pytest.mark.parametrize("name", ["mynotes.txt", ".hidden", "mine/notes.txt", "reportsx"])
def test_check_output_refuses_a_bertc_output_holding_a_user_file(
    tmp_path: Path, kind: str, name: str
) -> None:
    make = fake_artifact if kind == ARTIFACT else fake_training_output
    out = make(tmp_path / "out")
    check_output(out, overwrite=True, kind=kind)  # only what bertc wrote: replaceable
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text("mine")
    with pytest.raises(OutputExistsError, match=f"holds {name.split('/')[0]}"):
        check_output(out, overwrite=True, kind=kind)


@pytest.mark.parametrize(
    ("out", "relation"),
    [("models/ckpt", "is"), ("models", "holds"), ("models/ckpt/sub", "lies inside")],
)
def test_check_output_refuses_a_run_input_even_when_bertc_made_it(
    tmp_path: Path, out: str, relation: str
) -> None:
    source = fake_training_output(tmp_path / "models" / "ckpt")  # a finetune output, fine-tuned on
    fake_artifact(source / "sub")
    for kind in (ARTIFACT, TRAINING_OUTPUT):
        with pytest.raises(OutputExistsError, match=f"{relation} the run's input"):
            check_output(tmp_path / out, True, kind, sources=[str(source)])


def test_staging_dirs_carry_the_pid_and_mkdirs_mode(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        staging = make_staging_dir(tmp_path / "deep" / "out")
    finally:
        os.umask(previous)
    assert staging.parent == tmp_path / "deep"
    assert staging.name.startswith(f".out.partial-{os.getpid()}-")
    assert stat.S_IMODE(staging.stat().st_mode) == 0o755


def test_a_parent_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="cannot create"):
        make_staging_dir(tmp_path / "file" / "out")


def test_sweep_removes_only_dead_processes_staging(tmp_path: Path) -> None:
    dead, alive = dead_pid(), os.getppid()
    stale = [tmp_path / f".out.{kind}-{dead}-abc" for kind in ("partial", "old", "grid")]
    kept = [
        tmp_path / f".out.partial-{alive}-abc",  # a live process's
        tmp_path / f".out.partial-{os.getpid()}-abc",  # this process's
        tmp_path / f".other.partial-{dead}-abc",  # another destination's
        tmp_path / f".out.partial-{dead}",  # not a name bertc makes
        tmp_path / "out",
    ]
    for path in stale + kept:
        path.mkdir()
    assert sorted(sweep_stale(tmp_path / "out")) == sorted(stale)
    assert all(path.is_dir() for path in kept)
    assert not any(path.exists() for path in stale)


def test_sweep_puts_back_an_output_set_aside_by_a_killed_replacement(tmp_path: Path) -> None:
    aside = tmp_path / f".out.old-{dead_pid()}-abc"
    fake_artifact(aside / "previous", marker="the user's last good build")
    sweep_stale(tmp_path / "out")
    assert (tmp_path / "out" / "model.onnx").read_text() == "the user's last good build"
    assert not aside.exists()


def test_move_into_place_replaces_a_previous_artifact(tmp_path: Path) -> None:
    out = fake_artifact(tmp_path / "out", marker="old")
    staging = make_staging_dir(out)
    move_into_place(fake_artifact(staging / "artifact", marker="new"), out, overwrite=True)
    assert (out / "model.onnx").read_text() == "new"
    staging.rmdir()  # empty: its artifact moved out (the caller removes it)
    assert [path.name for path in tmp_path.iterdir()] == ["out"]  # the old one removed


def test_move_into_place_refuses_user_files_that_appeared_during_the_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    staged = fake_artifact(make_staging_dir(out) / "artifact", marker="new")
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a bertc artifact"):
        move_into_place(staged, out, overwrite=True)
    assert (out / "mine.txt").read_text() == "mine"
    assert (staged / "model.onnx").read_text() == "new"


def test_move_into_place_loses_a_race_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    staged = fake_artifact(make_staging_dir(out) / "artifact", marker="second")
    fake_artifact(out, marker="first")  # the other compile finished first
    with pytest.raises(OutputExistsError, match="appeared"):
        move_into_place(staged, out, overwrite=False)
    assert (out / "model.onnx").read_text() == "first"


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_a_refused_write_is_one_output_write_error(tmp_path: Path, number: int) -> None:
    message = f"cannot write {tmp_path}/x: {os.strerror(number)}"
    with pytest.raises(OutputWriteError, match=message), writing(tmp_path):
        raise OSError(number, os.strerror(number), str(tmp_path / "x"))
    # any other OSError is not a write refusal
    with pytest.raises(FileNotFoundError), writing(tmp_path):
        raise FileNotFoundError(errno.ENOENT, "gone")
