"""The shared flags: checks that run as the arguments are parsed, and old names as aliases."""

from __future__ import annotations

import sys

import pytest
from bertc.compiler.cli.options import resolve_alias
from bertc.compiler.core import errors


def test_an_alias_gives_its_value_unless_the_new_name_says_otherwise() -> None:
    resolve = lambda value, alias: resolve_alias(value, alias, 128, "--new", "--old")  # noqa: E731
    assert resolve(128, None) == 128
    assert resolve(64, None) == 64
    assert resolve(128, 64) == 64
    assert resolve(64, 64) == 64
    with pytest.raises(errors.UsageError, match="--old is the old name of --new; give one"):
        resolve(32, 64)


def run_main(monkeypatch, *arguments: str) -> int:
    from bertc.compiler.cli import main

    monkeypatch.setattr(sys, "argv", ["bertc", *arguments])
    with pytest.raises(SystemExit) as exit:
        main()
    return exit.value.code


@pytest.fixture
def captured(monkeypatch):
    """finetune_model and distill_model replaced: they record their options and stop."""
    from bertc.compiler.training import distill, finetune

    calls = []

    def record(*arguments, **keywords):
        calls.append(arguments[-1])
        raise errors.DataError("stopped here")

    monkeypatch.setattr(finetune, "finetune_model", record)
    monkeypatch.setattr(distill, "distill_model", record)
    return calls


def test_finetune_and_distill_take_the_old_spellings(monkeypatch, captured, tmp_path) -> None:
    common = ["--task", "sst2", "--out", str(tmp_path / "out")]
    runs = [
        ["finetune", "m", *common],
        ["finetune", "m", *common, "--max-seq-length", "64"],
        ["finetune", "m", *common, "--max-sequence-length", "32", "--keep-layers", "1"],
        ["distill", "--teacher", "t", "--student", "s", *common, "--student-layers", "1"],
        ["distill", "--teacher", "t", "--student", "s", *common, "--keep-layers", "2"]
        + ["--max-seq-length", "48"],
    ]
    for arguments in runs:
        assert run_main(monkeypatch, *arguments) == errors.DataError.exit_code
    lengths = [options.max_sequence_length for options in captured]
    # None: not given, the default (128, capped by the checkpoint's position table)
    assert lengths == [None, 64, 32, None, 48]
    assert [options.keep_layers for options in captured] == [None, None, 1, 1, 2]
