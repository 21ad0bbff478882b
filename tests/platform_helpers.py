"""Helpers for the `--platform arm64` tests: a fake installation (stamps only) and fake
emulators (scripts standing in for qemu-aarch64-static), so the launcher, the report and every
failure path run without QEMU; the real emulation is tests/targets/test_platform_arm64.py's."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from bertc.targets.platforms import arm64


def fake_installation(root: Path) -> arm64.Layout:
    """A platform directory whose every step reads as done (no real Python or wheels inside)."""
    layout = arm64.Layout(root / arm64.PLATFORM)
    versions, cpus = arm64.wheel_versions(), arm64.cpu_count()
    layout.python.parent.mkdir(parents=True)
    layout.python.write_text("")
    (layout.rootfs / ".bertc-rootfs").write_text("fake\n")
    layout.site.mkdir()
    (layout.site / ".bertc-wheels").write_text(arm64._wheels_stamp(versions) + "\n")
    for name, core in arm64.CORES.items():
        layout.core(name).mkdir(parents=True)
        (layout.core(name) / "core.json").write_text(json.dumps(arm64._core_stamp(core, cpus)))
    layout.stamp.write_text(json.dumps(arm64.expected_stamp(versions, cpus)))
    return layout


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


WAYS_FAIL = Path(__file__).with_name("platform_way_fails.py")
SCALER = Path(__file__).with_name("platform_scaler.py")
# Arguments a fake emulator gets: -L PREFIX PYTHON WORKER REQUEST.
FAKE_EMULATORS = {
    # runs the worker with this (x86) Python: a perfect "emulator", for the report's plumbing
    "host": f'shift 3; exec env -u PYTHONPATH {sys.executable} "$@"\n',
    "segfault": 'echo "qemu: uncaught target signal 11 (Segmentation fault)" >&2; kill -SEGV $$\n',
    "exit": 'echo "Illegal instruction in the emulated code" >&2; exit 3\n',
    "garbage": "shift 4; exit 0\n",  # exits 0 and writes no results
    # every way's runtime fails on the emulated core (e.g. OpenVINO cannot compile the IR)
    "way-fails": f'shift 4; exec {sys.executable} {WAYS_FAIL} "$@"\n',
    "runtime": 'echo "ort: the runtime failed on example 3: bad shape" >&2; exit 11\n',
    # the worker, then every logit times 0.83: OpenVINO's known aarch64 fault, simulated
    "scaled": f'shift 3; exec env -u PYTHONPATH {sys.executable} {SCALER} "$@"\n',
}


def fake_emulator(folder: Path, kind: str) -> Path:
    """A stand-in for qemu-aarch64-static; `--version` answers like QEMU's."""
    version = 'if [ "$1" = --version ]; then echo "qemu-aarch64 version 7.2.0-fake"; exit 0; fi\n'
    return write_script(folder / f"qemu-{kind}", version + FAKE_EMULATORS[kind])


def sleeping_emulator(folder: Path, pid_file: Path) -> Path:
    """An emulator that records its PID and sleeps: for timeouts and interrupts."""
    version = 'if [ "$1" = --version ]; then echo "qemu-aarch64 version 7.2.0-fake"; exit 0; fi\n'
    return write_script(
        folder / "qemu-sleep", version + f'echo $$ > "{pid_file}"; exec sleep 600\n'
    )


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
