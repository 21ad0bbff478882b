"""`bertc run` without typer's per-parameter coercion, for the one command whose start-up an app
developer times: typer 0.29 builds a pydantic TypeAdapter for every parameter it parses, about
0.1 s of a 0.37 s cold start on the ORT quick-start artifact (bench/README.md, "Loading an
artifact in an app").

Only a plainly valid `bertc run` command line takes this path, and it ends in the very same
`run_command` function; anything else (`--help`, an unknown or malformed option, a bad value)
returns None and goes through typer, which gives the canonical help and error messages.
tests/compiler/cli/test_fast_run.py checks that both paths agree.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bertc.compiler.options import MAX_THREADS

# The options of `run_command`, as `bertc run` spells them.
VALUE_OPTIONS = ("--file", "--threads", "--public-key")
FLAG_OPTIONS = ("--json", "--check")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting (some errors, such as a
    missing positional, ignore `exit_on_error=False`)."""

    def error(self, message: str):  # type: ignore[override]
        raise ValueError(message)


def plain_run_arguments(argv: list[str]) -> dict[str, Any] | None:
    """`run_command`'s keyword arguments for `argv` (the words after `bertc`), or None when the
    command line is not a plainly valid `bertc run`."""
    if not argv or argv[0] != "run":
        return None
    words = argv[1:]
    for word in words:
        name = word.split("=", 1)[0]
        if word.startswith("-") and name not in VALUE_OPTIONS + FLAG_OPTIONS:
            return None  # --help, -h, --, a typo: typer says what to say
    parser = _Parser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("artifact")
    parser.add_argument("text", nargs="?")
    parser.add_argument("text_pair", nargs="?")
    parser.add_argument("--file")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--public-key")
    parser.add_argument("--json", dest="as_json", action="store_true")
    parser.add_argument("--check", action="store_true")
    try:
        parsed, extra = parser.parse_known_args(words)
    except (argparse.ArgumentError, ValueError):
        return None
    if extra or (parsed.threads is not None and not 1 <= parsed.threads <= MAX_THREADS):
        return None
    return {
        "artifact": Path(parsed.artifact),
        "text": parsed.text,
        "text_pair": parsed.text_pair,
        "file": None if parsed.file is None else Path(parsed.file),
        "threads": parsed.threads,
        "as_json": parsed.as_json,
        "public_key": None if parsed.public_key is None else Path(parsed.public_key),
        "check": parsed.check,
    }
