"""The `bertc` app itself: exit codes, tracebacks only on request, `--version`, help that fits 80
columns, and bad flags refused before anything heavy is imported."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from bertc.compiler.cli import app
from bertc.compiler.core import errors

HEAVY = ("torch", "transformers", "onnx", "onnxruntime", "openvino", "nncf")

# Runs `bertc ARGS` in this interpreter and reports the exit code and what got imported.
DRIVER = """
import json, sys
sys.argv = ["bertc", *sys.argv[1:]]
from bertc.compiler.cli import main
try:
    main()
    code = 0
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy}}))
"""


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


def test_version_is_the_package_metadata(bertc_cli) -> None:
    result = bertc_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"bertc {version('bertc')}\n"
    assert result.stderr == ""


def visible_option_names(command) -> list[str]:
    return [
        name
        for param in command.params
        if not getattr(param, "hidden", False)
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("-")
    ]


@pytest.mark.parametrize(
    "name",
    ["compile", "verify", "run", "inspect", "pack", "unpack", "finetune", "distill", "prune"],
)
def test_help_at_80_columns_shows_every_option_name_uncut(name: str, bertc_cli) -> None:
    command = typer.main.get_command(app).commands[name]
    result = bertc_cli(name, "--help", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    words = set(result.stdout.replace(",", " ").split())
    missing = [option for option in visible_option_names(command) if option not in words]
    assert missing == [], result.stdout
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_help_says_what_threads_and_the_tokenizer_default_mean(bertc_cli) -> None:
    verify_help = " ".join(bertc_cli("verify", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "Threads of the artifact's runtime only" in verify_help
    assert "--reference-threads" in verify_help
    compile_help = " ".join(bertc_cli("compile", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "fused (default)" not in compile_help
    assert "Default: fused where the target's tokenizer converts" in compile_help
    assert "otherwise token ids in" in compile_help


def test_old_spellings_are_hidden_aliases(bertc_cli) -> None:
    for name, new, old in (
        ("finetune", "--max-sequence-length", "--max-seq-length"),
        ("distill", "--max-sequence-length", "--max-seq-length"),
        ("distill", "--keep-layers", "--student-layers"),
    ):
        command = typer.main.get_command(app).commands[name]
        assert new in visible_option_names(command)
        assert old not in visible_option_names(command)
        assert any(old in param.opts for param in command.params), (name, old)
    for name in ("compile", "prune", "finetune", "distill"):
        command = typer.main.get_command(app).commands[name]
        assert "--max-sequence-length" in visible_option_names(command), name


BAD_ARGUMENTS = {
    "unknown option": (["compile", "--bogus"], "No such option: --bogus"),
    "zero calibration samples": (
        ["compile", "m", "--target", "onnx", "--out", "o", "--calibration-samples", "0"],
        "--calibration-samples must be at least 1, got 0",
    ),
    "unknown quantization": (
        ["compile", "m", "--target", "onnx", "--out", "o", "--quantization", "int4"],
        "Invalid value for '--quantization'",
    ),
    "unknown target": (
        ["compile", "m", "--target", "tflite", "--out", "o"],
        "unknown target 'tflite'",
    ),
    "zero verify threads": (
        ["verify", "a", "--task", "sst2", "--threads", "0"],
        "--threads must be at least 1, got 0",
    ),
    "zero reference threads": (
        ["verify", "a", "--task", "sst2", "--reference-threads", "0"],
        "--reference-threads must be at least 1, got 0",
    ),
    "negative max drop": (
        ["verify", "a", "--task", "sst2", "--max-drop", "-1"],
        "--max-drop must be a number of points >= 0",
    ),
    "grid flags without a grid": (
        ["finetune", "m", "--task", "sst2", "--out", "o", "--engine", "ray"],
        "need --grid",
    ),
    "an alias at odds with its new name": (
        ["distill", "--teacher", "t", "--student", "s", "--task", "sst2", "--out", "o"]
        + ["--keep-layers", "2", "--student-layers", "3"],
        "--student-layers is the old name of --keep-layers",
    ),
    "zero sequence length under the old name": (
        ["finetune", "m", "--task", "sst2", "--out", "o", "--max-seq-length", "0"],
        "--max-seq-length must be at least 1, got 0",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_are_refused_before_heavy_imports(case: str, tmp_path: Path) -> None:
    arguments, message = BAD_ARGUMENTS[case]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", DRIVER.format(heavy=HEAVY), *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["code"] == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line
    # Only the target registry may load ONNX (to name the known targets); nothing else heavy.
    allowed = {"onnx"} if "--target" in arguments else set()
    assert set(report["heavy"]) <= allowed, report
    assert elapsed < 10, elapsed  # about 0.5 s on an idle machine; torch alone takes seconds
    assert list(tmp_path.iterdir()) == []


def test_a_library_error_after_a_signal_still_ends_as_aborted(monkeypatch, capsys) -> None:
    """NNCF or a runtime may catch the Interrupted raised in its frames and raise its own error:
    after a signal, any failure ends as `aborted` with the signal's code, never 70 or 9."""
    import importlib
    import signal

    cli_app = importlib.import_module("bertc.compiler.cli.app")  # the module, not the Typer

    def quantize_caught_the_signal(*_args, **_kwargs):
        try:
            signal.raise_signal(signal.SIGTERM)
        except BaseException as caught:  # what a library's own `except BaseException` does
            raise RuntimeError("statistics collection failed") from caught

    monkeypatch.setattr(cli_app, "plain_run_arguments", lambda words: None)
    monkeypatch.setattr(cli_app, "app", quantize_caught_the_signal)
    monkeypatch.setattr(sys, "argv", ["bertc", "compile"])
    with pytest.raises(SystemExit) as exited:
        cli_app.main()
    assert exited.value.code == 143
    assert capsys.readouterr().err.strip().splitlines() == ["aborted"]
