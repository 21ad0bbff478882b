"""`verify --platform arm64` and `bertc platform install` under every kind of bad input and
fault (issue 19): a bad --platform, --limit or gate value; no emulator; an emulated run that
crashes, exits, writes nothing, fails in its runtime, hangs (timeout) or is interrupted; an
emulated core whose logits drift. Each is one line on stderr with its code (2, 19, 12, 130,
143), never a traceback, and no emulator process outlives bertc.

The emulator here is a fake (tests/platform_helpers.py) over a fake installation, so these run
everywhere in seconds; the real QEMU runs are tests/targets/test_platform_arm64.py's.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from platform_helpers import (
    fake_emulator,
    fake_installation,
    process_alive,
    sleeping_emulator,
)

PLATFORM_EXIT = 19


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def ids_artifact(compile_once, tiny_classifier: Path) -> Path:
    return compile_once(tiny_classifier, "ort-mobile", "dynamic").artifact_dir


@pytest.fixture(scope="module")
def ov_artifact(compile_once, tiny_classifier: Path) -> Path:
    return compile_once(tiny_classifier, "openvino").artifact_dir


@pytest.fixture
def platform_env(tmp_path: Path) -> dict[str, str]:
    fake_installation(tmp_path / "platforms")
    return {"BERTC_PLATFORM_DIR": str(tmp_path / "platforms")}


def verify_arguments(artifact: Path, data: Path, *extra: str) -> list:
    return ["verify", artifact, "--data-dir", data, "--bootstrap-samples", "10", *extra]


# ---- bad values: exit 2 before anything runs ----

BAD_FLAGS = {
    "unknown platform": ["--platform", "riscv64"],
    "unknown core": ["--platform", "arm64:a53"],
    "empty core": ["--platform", "arm64:"],
    "empty platform": ["--platform", ""],
    "zero limit": ["--platform", "arm64", "--limit", "0"],
    "negative limit": ["--platform", "arm64", "--limit", "-5"],
    "fractional limit": ["--platform", "arm64", "--limit", "2.5"],
    "word limit": ["--platform", "arm64", "--limit", "many"],
    "negative max error": ["--platform", "arm64", "--platform-max-error", "-0.1"],
    "nan max error": ["--platform", "arm64", "--platform-max-error", "nan"],
    "infinite max error": ["--platform", "arm64", "--platform-max-error", "inf"],
    "agreement over one": ["--platform", "arm64", "--platform-min-agreement", "1.5"],
    "negative agreement": ["--platform", "arm64", "--platform-min-agreement", "-0.1"],
    "limit without platform": ["--limit", "10"],
    "gate without platform": ["--platform-max-error", "0.1"],
}


@pytest.mark.parametrize("case", list(BAD_FLAGS))
def test_a_bad_platform_flag_is_one_usage_line(
    case: str, bertc_cli, tmp_path: Path, platform_env: dict[str, str]
) -> None:
    # the artifact need not exist: the flags are refused first
    result = bertc_cli("verify", tmp_path / "absent", *BAD_FLAGS[case], env=platform_env)
    assert result.returncode == 2, result.stderr
    assert "--platform" in one_error_line(result.stderr) or "--limit" in result.stderr


@pytest.mark.parametrize("name", ["x86", "arm", "ARM64:a76", ""])
def test_an_unknown_platform_to_install_is_one_usage_line(name: str, bertc_cli) -> None:
    result = bertc_cli("platform", "install", name)
    assert result.returncode == 2 and "unknown platform" in one_error_line(result.stderr)


# ---- no emulator: exit 19 with the command that installs it ----


@pytest.mark.parametrize("command", ["install", "verify"])
def test_no_emulator_is_one_line_naming_the_package_and_exit_19(
    command: str, bertc_cli, tmp_path: Path, ids_artifact: Path, glue_data_dir: Path
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty), "BERTC_PLATFORM_DIR": str(tmp_path / "platforms")}
    if command == "install":
        result = bertc_cli("platform", "install", "arm64", env=env)
    else:
        arguments = verify_arguments(ids_artifact, glue_data_dir, "--platform", "arm64:a76")
        result = bertc_cli(*arguments, env=env)
    assert result.returncode == PLATFORM_EXIT, result.stderr
    assert "apt-get install qemu-user-static" in one_error_line(result.stderr)
    assert not (tmp_path / "platforms").exists()  # nothing half-installed
    assert not (ids_artifact / "reports").exists() or command == "install"


# ---- the emulated run fails: exit 19, one line naming the core ----

FAULTS = {
    "segfault": "killed by SIGSEGV: qemu: uncaught target signal 11",
    "exit": "exited with status 3: Illegal instruction",
    "garbage": "wrote no readable results",
    "runtime": "on the emulated arm64 a76: ort: the runtime failed on example 3",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_emulated_run_that_fails_is_one_line_and_exit_19(
    fault: str,
    bertc_cli,
    tmp_path: Path,
    platform_env: dict[str, str],
    artifact_copy,
    ids_artifact: Path,
    glue_data_dir: Path,
) -> None:
    qemu = fake_emulator(tmp_path, fault)
    artifact = artifact_copy(ids_artifact)
    arguments = verify_arguments(artifact, glue_data_dir, "--platform", "arm64:a76")
    result = bertc_cli(*arguments, env={**platform_env, "BERTC_QEMU_AARCH64": str(qemu)})
    assert result.returncode == PLATFORM_EXIT, result.stderr
    assert FAULTS[fault] in one_error_line(result.stderr)
    runs = tmp_path / "platforms" / "arm64" / "runs"
    assert not any(runs.iterdir())  # the run's folder is removed


def test_an_emulated_run_past_its_time_is_killed_and_exit_19(
    bertc_cli,
    tmp_path: Path,
    platform_env: dict[str, str],
    artifact_copy,
    ids_artifact: Path,
    glue_data_dir: Path,
) -> None:
    pid_file = tmp_path / "qemu.pid"
    qemu = sleeping_emulator(tmp_path, pid_file)
    arguments = verify_arguments(artifact_copy(ids_artifact), glue_data_dir, "--platform", "arm64")
    env = {**platform_env, "BERTC_QEMU_AARCH64": str(qemu), "BERTC_PLATFORM_TIMEOUT_S": "3"}
    result = bertc_cli(*arguments, env=env)
    assert result.returncode == PLATFORM_EXIT, result.stderr
    assert "a55 run gave no result within 3 s" in one_error_line(result.stderr)
    assert not process_alive(int(pid_file.read_text()))


@pytest.mark.parametrize(("signal_name", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupt_during_emulation_kills_the_emulator_and_aborts(
    signal_name: str,
    code: int,
    bertc_cli,
    tmp_path: Path,
    platform_env: dict[str, str],
    artifact_copy,
    ids_artifact: Path,
    glue_data_dir: Path,
) -> None:
    pid_file = tmp_path / "qemu.pid"
    qemu = sleeping_emulator(tmp_path, pid_file)
    arguments = verify_arguments(artifact_copy(ids_artifact), glue_data_dir, "--platform", "arm64")
    process = bertc_cli(
        *arguments, env={**platform_env, "BERTC_QEMU_AARCH64": str(qemu)}, wait=False
    )
    deadline = time.monotonic() + 240
    while not pid_file.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), process.communicate()[1]
    emulator = int(pid_file.read_text())
    process.send_signal(getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == "aborted" and "Traceback" not in stderr
    assert not process_alive(emulator)
    runs = tmp_path / "platforms" / "arm64" / "runs"
    assert not any(runs.iterdir())


# ---- an emulated core that drifts: the gate fails (12), the report keeps every row ----


@pytest.mark.parametrize("target", ["ort-mobile", "openvino"])
def test_drifting_emulated_logits_fail_the_gate_with_every_row_reported(
    target: str,
    bertc_cli,
    tmp_path: Path,
    platform_env: dict[str, str],
    artifact_copy,
    ids_artifact: Path,
    ov_artifact: Path,
    glue_data_dir: Path,
) -> None:
    artifact = artifact_copy(ids_artifact if target == "ort-mobile" else ov_artifact)
    env = {**platform_env, "BERTC_QEMU_AARCH64": str(fake_emulator(tmp_path, "scaled"))}
    arguments = verify_arguments(artifact, glue_data_dir, "--platform", "arm64:a76,v9")
    result = bertc_cli(*arguments, "--limit", "12", "--json", env=env)
    assert result.returncode == 12, result.stderr
    assert "platform gate failed" in one_error_line(result.stderr)
    check = json.loads(result.stdout)["platform"]
    ways = ["ort"] if target == "ort-mobile" else ["ov-static", "ov-as-loaded"]
    assert [(row["core"], row["way"]) for row in check["rows"]] == [
        (core, way) for core in ("host", "a76", "v9") for way in ways
    ]
    assert check["examples"] == 12 and not check["passed"]
    for row in check["rows"][len(ways) :]:
        assert row["max_abs_x86"] > 0.05 and not row["passed"] and row["examples"] == 12
    saved = json.loads((artifact / "reports" / "verify-sst2.json").read_text())
    assert saved["platform"] == check


def test_a_faithful_emulator_matches_x86_exactly_and_passes(
    bertc_cli,
    tmp_path: Path,
    platform_env: dict[str, str],
    artifact_copy,
    ov_artifact: Path,
    glue_data_dir: Path,
) -> None:
    artifact = artifact_copy(ov_artifact)
    env = {**platform_env, "BERTC_QEMU_AARCH64": str(fake_emulator(tmp_path, "host"))}
    arguments = verify_arguments(artifact, glue_data_dir, "--platform", "arm64:a72")
    result = bertc_cli(*arguments, "--limit", "all", "--json", env=env)
    assert result.returncode == 0, result.stderr
    check = json.loads(result.stdout)["platform"]
    assert check["passed"] and check["examples"] == check["split_examples"] == 40
    emulated = [row for row in check["rows"] if row["core"] == "a72"]
    assert [row["max_abs_x86"] for row in emulated] == [0.0, 0.0]
    assert [row["agreement_x86"] for row in emulated] == [1.0, 1.0]


def test_a_way_whose_runtime_fails_on_the_emulated_core_is_a_failed_row_not_a_crash(
    bertc_cli,
    tmp_path: Path,
    platform_env: dict[str, str],
    artifact_copy,
    ov_artifact: Path,
    glue_data_dir: Path,
) -> None:
    """OpenVINO 2026.4.1's aarch64 plugin cannot compile the tiny INT8 IRs (its
    ConvertFullyConnectedBias pass throws): each way's failure is its row, the gate fails (12)
    naming it, and the report says why."""
    artifact = artifact_copy(ov_artifact)
    env = {**platform_env, "BERTC_QEMU_AARCH64": str(fake_emulator(tmp_path, "way-fails"))}
    arguments = verify_arguments(artifact, glue_data_dir, "--platform", "arm64:a76")
    result = bertc_cli(*arguments, "--limit", "5", "--json", env=env)
    assert result.returncode == 12, result.stderr
    line = one_error_line(result.stderr)
    assert "arm64 a76 ov-static: the runtime failed (ov-static: cannot load" in line
    rows = json.loads(result.stdout)["platform"]["rows"]
    failed = [row for row in rows if row["core"] == "a76"]
    assert [row["way"] for row in failed] == ["ov-static", "ov-as-loaded"]
    assert all(row["error"] and not row["passed"] and row["max_abs_x86"] is None for row in failed)
    markdown = (artifact / "reports" / "verify-sst2.md").read_text()
    assert "ConvertFullyConnectedBias" in markdown and "arm64 a76 FAIL" in markdown
