"""`bertc run`'s fast path (compiler/cli/fast_run.py) takes exactly the plainly valid command
lines, hands `run_command` what typer would, and prints what typer's path prints."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from bertc.compiler.cli.artifact import run_command
from bertc.compiler.cli.fast_run import plain_run_arguments


def test_it_fills_every_parameter_of_run_command() -> None:
    parsed = plain_run_arguments(["run", "art", "a text"])
    assert set(parsed) == set(inspect.signature(run_command).parameters)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "art", "t"], {"text": "t"}),
        (["run", "art", "a", "b", "--json"], {"text": "a", "text_pair": "b", "as_json": True}),
        (
            ["run", "art", "--file", "in.txt", "--threads", "2"],
            {"file": Path("in.txt"), "threads": 2},
        ),
        (["run", "--threads=3", "art", "t"], {"text": "t", "threads": 3}),
        (["run", "art", "--file=in.txt"], {"file": Path("in.txt")}),
        (["run", "art", "t", "--public-key", "k.pub"], {"text": "t", "public_key": Path("k.pub")}),
        (["run", "art", "--check", "--json"], {"check": True, "as_json": True}),
    ],
)
def test_plain_command_lines_parse_as_typer_would(argv, expected) -> None:
    defaults = {
        "text": None,
        "text_pair": None,
        "file": None,
        "threads": None,
        "as_json": False,
        "public_key": None,
        "check": False,
    }
    assert plain_run_arguments(argv) == {"artifact": Path("art"), **defaults, **expected}


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["compile", "model"],
        ["run"],
        ["run", "--help"],
        ["run", "art", "-h"],
        ["run", "art", "--threads", "0"],
        ["run", "art", "--threads", "-1"],
        ["run", "art", "--threads", "two"],
        ["run", "art", "--thread", "2"],
        ["run", "art", "--bogus"],
        ["run", "art", "a", "b", "c"],
        ["run", "art", "--", "-text"],
        ["run", "art", "--file"],
    ],
)
def test_anything_else_goes_to_typer(argv) -> None:
    assert plain_run_arguments(argv) is None


def test_both_paths_print_the_same(compile_once, tiny_classifier, bertc_cli) -> None:
    from bertc.compiler.cli import app
    from typer.testing import CliRunner

    artifact = compile_once(tiny_classifier, "ort-mobile").artifact_dir
    words = ["run", str(artifact), "a gorgeous movie", "--json", "--threads", "1"]
    fast = bertc_cli(*words)
    assert fast.returncode == 0, fast.stderr
    typer_path = CliRunner().invoke(app, words)
    assert typer_path.exit_code == 0, typer_path.output
    assert typer_path.stdout == fast.stdout
