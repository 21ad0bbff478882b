"""The `bertc` Typer app: its commands, `--version`, and `main()`, which turns each error into
one line on stderr and its exit code.

Importing this module imports typer and rich and nothing heavy: a bad flag or value is refused
before torch, ONNX or a runtime loads. Help is click's plain layout, which wraps the help text
and never cuts an option's name, whatever the width of the terminal.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Annotated

import typer
from bertc.compiler.cli import artifact, platforms, signing, training
from bertc.compiler.cli.fast_run import plain_run_arguments
from bertc.compiler.core.errors import BertcError

UNEXPECTED_ERROR_EXIT = 70  # EX_SOFTWARE: a bug, not a bad input
ABORTED_EXIT = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


class Interrupted(BaseException):
    """SIGINT or SIGTERM. A BaseException, as KeyboardInterrupt is, so no `except Exception`
    swallows it and every `finally` on the way out runs (staging directories are removed); not
    a KeyboardInterrupt, which typer would turn into a plain return of 130."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.exit_code = 128 + signal_number


# The first signal received: a library that catches the Interrupted raised in its frames (NNCF,
# a runtime's callback) and raises something else of its own must still end as "aborted".
_received: list[int] = []


def _raise_interrupted(signal_number: int, _frame: object) -> None:
    _received.append(signal_number)
    raise Interrupted(signal_number)


def _interrupted_code() -> int | None:
    return 128 + _received[0] if _received else None


app = typer.Typer(
    name="bertc",
    help="Compile small BERT models to INT8 artifacts for OpenVINO, ORT Mobile and ONNX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for name, command in {**artifact.COMMANDS, **signing.COMMANDS, **training.COMMANDS}.items():
    app.command(name)(command)
app.add_typer(platforms.platform_app, name="platform")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"bertc {version('bertc')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print bertc's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Compile small BERT models to INT8 artifacts for OpenVINO, ORT Mobile and ONNX."""


def _quiet_libraries() -> None:
    """Keep third-party chatter (tracer warnings, load bars) off the user's terminal."""
    import logging
    import warnings

    if os.environ.get("BERTC_DEBUG"):
        return
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("nncf", "transformers", "onnxruntime", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main() -> None:
    """Console-script entry point: map BertcError to its exit code and one line on stderr;
    Ctrl-C (SIGINT) and SIGTERM to `aborted` and 130 / 143, after the cleanup has run."""
    _quiet_libraries()
    _received.clear()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, _raise_interrupted) for number in signals}
    try:
        _run()
    finally:  # main() may run inside another program (a test): give its handlers back
        for number, handler in previous.items():
            signal.signal(number, handler)


def _run() -> None:
    try:
        plain_run = plain_run_arguments(sys.argv[1:])
        if plain_run is not None:  # a plainly valid `bertc run`: skip typer's coercion
            artifact.run_command(**plain_run)
            return
        code = app(standalone_mode=False)
    except Interrupted as interrupted:
        _fail("aborted", interrupted.exit_code)
    except BertcError as error:
        _fail(f"error: {error}", error.exit_code)
    except typer.Abort:
        _fail("aborted", ABORTED_EXIT)
    except Exception as error:  # click usage errors carry their own exit code
        import click

        # typer >= 0.2x vendors click (typer._click), whose errors derive from TyperException.
        usage_errors = (click.exceptions.ClickException, getattr(typer, "TyperException", ()))
        if isinstance(error, usage_errors):
            _fail(f"error: {error.format_message()}", error.exit_code)
        if isinstance(error, (click.exceptions.Exit, typer.Exit)):
            sys.exit(error.exit_code)
        _fail(f"internal error ({type(error).__name__}): {error}", UNEXPECTED_ERROR_EXIT)
    # Without standalone mode typer returns the code of a typer.Exit, and of a
    # KeyboardInterrupt that got past the handler (130), rather than exiting with it.
    if code == ABORTED_EXIT:
        _fail("aborted", ABORTED_EXIT)
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str, code: int) -> None:
    if _interrupted_code() is not None:  # whatever a library made of the signal: aborted
        message, code = "aborted", _interrupted_code()
    if os.environ.get("BERTC_DEBUG") and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(" ".join(message.split()) or "error", file=sys.stderr)
    sys.exit(code)
