"""Where the CLI writes: results on stdout, progress and notes on stderr.

Progress is one plain line per stage on stderr, whether or not stderr is a terminal (a CI log
should show what a long command is doing); a terminal also gets a spinner. Libraries print their
own progress to stdout (NNCF's bars and log), so stdout is sent to stderr while a stage runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from bertc.compiler.core.files import finite_json
from bertc.compiler.core.progress import Progress

_CONSOLES: dict[str, Any] = {}


def console(stream: str) -> Any:
    """rich's Console for "stdout" or "stderr", made on first use: `bertc run` prints plain
    lines and should not pay for importing rich (part of its cold start, bench/README.md)."""
    if stream not in _CONSOLES:
        from rich.console import Console

        _CONSOLES[stream] = Console(stderr=True) if stream == "stderr" else Console(soft_wrap=True)
    return _CONSOLES[stream]


def __getattr__(name: str) -> Any:
    """`output.stdout` / `output.stderr`: the consoles, made on first use."""
    if name in ("stdout", "stderr"):
        return console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Fault injection for the tests (tests/adversarial/test_faults.py): "STAGE:SIGNAL", e.g.
# "quantize:SIGTERM", makes the process send itself SIGNAL as STAGE starts.
SIGNAL_AT_ENV = "BERTC_TEST_SIGNAL_AT"


def _signal_at(stage: str) -> None:
    wanted, _, name = os.environ.get(SIGNAL_AT_ENV, "").partition(":")
    if wanted and wanted == stage:
        os.kill(os.getpid(), signal.Signals[name])


COMPILE_STAGES = {
    "load": "loading checkpoint",
    "export": "exporting to ONNX",
    "parity": "checking parity with PyTorch",
    "tokenizer": "converting the tokenizer, checking its ids against HF",
    "budget": "accuracy budget: fp32 PyTorch on the held-out train slice",
    "quantize": "quantizing to INT8",
    "package": "writing artifact",
    "golden": "recording golden outputs (the artifact's and fp32 PyTorch's)",
    "gate": "verifying the staged artifact (--verify)",
    "sign": "signing the staged artifact (--sign-key)",
}


def compile_stages(quantization: Any) -> dict[str, str]:
    """COMPILE_STAGES as this compile runs them: `--quantization none` converts, not quantizes
    (`quantization`: the --quantization value, a QuantizationMode or its string, or None)."""
    if getattr(quantization, "value", quantization) != "none":
        return COMPILE_STAGES
    return {**COMPILE_STAGES, "quantize": "converting for the runtime (fp32: --quantization none)"}


def print_json(document: Any) -> None:
    """`document` as strict JSON on stdout: a NaN or infinite float prints as null."""
    text = json.dumps(
        finite_json(document), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False
    )
    print(text)


def warning(message: str) -> None:
    """A warning the user must see even with --json (e.g. verify's reports were not saved)."""
    console("stderr").print(f"warning: {message}", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A note the user must see even with --json (e.g. the artifact takes token ids)."""
    console("stderr").print(f"note: {message}", highlight=False, soft_wrap=True)


class StageLines:
    """`progress(stage)`: one line per stage on stderr, and the spinner's text on a terminal.

    Away from a terminal the first stage's line waits until the second stage starts: the first
    stage reads and checks the inputs, and a bad input should leave exactly its one error line.
    """

    def __init__(
        self, labels: Mapping[str, str], status: Any = None, terminal: bool | None = None
    ) -> None:
        self.labels = labels
        self.status = status
        self.terminal = console("stderr").is_terminal if terminal is None else terminal
        self.held: str | None = None
        self.started = False

    def __call__(self, stage: str) -> None:
        _signal_at(stage)
        label = self.labels.get(stage, stage)
        if self.status is not None:
            self.status.update(label)
        if self.terminal:
            self._write(label)
        elif not self.started:
            self.held = label
        else:
            if self.held is not None:
                self._write(self.held)
                self.held = None
            self._write(label)
        self.started = True

    def _write(self, label: str) -> None:
        if self.terminal:
            console("stderr").print(f"• {label}", highlight=False, soft_wrap=True)
        else:
            print(f"• {label}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress(
    label: str, labels: Mapping[str, str] | None = None, spinner: bool = True
) -> Iterator[Progress]:
    """The progress callback of a long command. `spinner=False` where the command draws its own
    bar (training's tqdm)."""
    status = console("stderr").status(label) if spinner else contextlib.nullcontext()
    with status as shown, contextlib.redirect_stdout(sys.stderr):
        yield StageLines(labels or {}, shown)
