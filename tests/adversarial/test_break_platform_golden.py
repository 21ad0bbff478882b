"""What a careless or hostile user found wrong in `verify --platform arm64`, `bertc platform
install` and the golden outputs (`run --check`, `loader.check()`), one test per failure kind,
parametrized over the kind's cases. Each asserts the documented answer: one line on stderr with
its code (11 a broken artifact, 19 a platform failure), never a traceback (70), and no emulator
left running once bertc is gone.

The emulator is a fake (tests/platform_helpers.py) over a fake installation, so these run
everywhere in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from bertc.compiler.core.errors import ArtifactError, PlatformError
from bertc.compiler.core.hashing import sha256_file
from bertc.compiler.core.manifest import MANIFEST_FILE, write_manifest
from bertc.compiler.golden import GOLDEN_FILE
from bertc.targets import loader
from bertc.targets.platforms import arm64
from platform_helpers import (
    fake_emulator,
    fake_installation,
    process_alive,
    sleeping_emulator,
    write_script,
)

PLATFORM_EXIT = PlatformError.exit_code  # 19
EXIT_BROKEN = ArtifactError.exit_code  # 11


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def ids_artifact(compile_once, tiny_classifier: Path) -> Path:
    return compile_once(tiny_classifier, "ort-mobile", "dynamic").artifact_dir


def verify_arguments(artifact: Path, data: Path, *extra: str) -> list:
    return ["verify", artifact, "--data-dir", data, "--bootstrap-samples", "10", *extra]


# ---- kind: BERTC_PLATFORM_DIR cannot hold a platform (was: exit 70, NotADirectoryError) ----


def platform_dir_is_a_file(tmp_path: Path) -> Path:
    (tmp_path / "a-file").write_text("not a directory\n")
    return tmp_path / "a-file"


def platform_dir_below_a_file(tmp_path: Path) -> Path:
    (tmp_path / "a-file").write_text("not a directory\n")
    return tmp_path / "a-file" / "below"


def arm64_is_a_file(tmp_path: Path) -> Path:
    (tmp_path / "platforms").mkdir()
    (tmp_path / "platforms" / arm64.PLATFORM).write_text("junk\n")
    return tmp_path / "platforms"


UNUSABLE_DIRS: dict[str, Callable[[Path], Path]] = {
    "BERTC_PLATFORM_DIR is a file": platform_dir_is_a_file,
    "BERTC_PLATFORM_DIR is below a file": platform_dir_below_a_file,
    "BERTC_PLATFORM_DIR/arm64 is a file": arm64_is_a_file,
}


@pytest.mark.parametrize("command", ["install", "verify"])
@pytest.mark.parametrize("case", list(UNUSABLE_DIRS))
def test_a_platform_dir_that_cannot_be_a_directory_is_one_line_and_exit_19(
    case: str, command: str, bertc_cli, tmp_path: Path, ids_artifact: Path, glue_data_dir: Path
) -> None:
    root = UNUSABLE_DIRS[case](tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    (tmp_path / "bin").mkdir()
    qemu = fake_emulator(tmp_path / "bin", "host")
    env = {"BERTC_PLATFORM_DIR": str(root), "BERTC_QEMU_AARCH64": str(qemu)}
    if command == "install":
        result = bertc_cli("platform", "install", "arm64", env=env)
    else:
        arguments = verify_arguments(ids_artifact, glue_data_dir, "--platform", "arm64:a76")
        result = bertc_cli(*arguments, env=env)
    assert result.returncode == PLATFORM_EXIT, result.stderr
    assert "cannot create the platform directory" in one_error_line(result.stderr)
    assert "BERTC_PLATFORM_DIR" in one_error_line(result.stderr)
    # the file in the way is the user's: left as it was
    assert {path: path.read_bytes() for path in before} == before


# ---- kind: a relative BERTC_PLATFORM_DIR (was: apt ran in another directory, exit 19 with a
# missing-list error and an empty folder left behind) ----


@pytest.mark.parametrize("relative", ["platforms", "with space/platforms", "./p", "a/../b"])
def test_a_relative_platform_dir_is_taken_from_the_working_directory(
    relative: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BERTC_PLATFORM_DIR", relative)
    found = arm64.platform_dir()
    assert found.is_absolute()
    assert found == tmp_path / relative / arm64.PLATFORM
    # every path the emulator is given is absolute too, whatever its working directory
    argv = arm64.command("qemu", arm64.Layout(found), "a76", "worker.py")
    assert all(Path(part).is_absolute() for part in argv[1:4] if "/" in part), argv


# ---- kind: golden.json with a repeated key (was: accepted, the last value silently won) ----


def reseal(artifact: Path) -> None:
    """What a hostile user without a key does: list golden.json's new sha256 and bytes and
    recompute the manifest's own digest."""
    manifest = json.loads((artifact / MANIFEST_FILE).read_text(encoding="utf-8"))
    path = artifact / GOLDEN_FILE
    manifest["files"][GOLDEN_FILE] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    write_manifest(artifact, manifest)


def repeat_top_key(text: str) -> str:
    # a second "examples" before the real one: the last wins in Python, the first elsewhere
    return text.replace("{", '{"examples": [], ', 1)


def repeat_example_key(text: str) -> str:
    return text.replace('"output": [', '"output": [1.0, 1.0], "output": [', 1)


def repeat_ids_key(text: str) -> str:
    return text.replace('"input_ids": [', '"input_ids": [2, 3], "input_ids": [', 1)


REPEATED_KEYS: dict[str, tuple[Callable[[str], str], str]] = {
    "top level": (repeat_top_key, "'examples'"),
    "an example": (repeat_example_key, "'output'"),
    "the ids": (repeat_ids_key, "'input_ids'"),
}


def check_answer(reader: str, artifact: Path, bertc_cli) -> tuple[int, str]:
    """(exit code, one-line message) of `reader` checking the artifact."""
    if reader == "api":
        try:
            report = loader.check(artifact)
        except loader.ArtifactLoadError as error:
            return EXIT_BROKEN, str(error)
        return (0 if report.passed else 12), "; ".join(report.problems)
    result = bertc_cli("run", artifact, "--check")
    return result.returncode, one_error_line(result.stderr) if result.returncode else ""


@pytest.mark.parametrize("reader", ["api", "cli"])
@pytest.mark.parametrize("case", list(REPEATED_KEYS))
def test_a_resealed_golden_file_with_a_repeated_key_is_refused(
    case: str, reader: str, bertc_cli, artifact_copy, ids_artifact: Path
) -> None:
    artifact = artifact_copy(ids_artifact)
    edit, key = REPEATED_KEYS[case]
    path = artifact / GOLDEN_FILE
    text = path.read_text(encoding="utf-8")
    edited = edit(text)
    assert edited != text
    path.write_text(edited, encoding="utf-8")
    reseal(artifact)
    code, message = check_answer(reader, artifact, bertc_cli)
    assert code == EXIT_BROKEN, message
    assert "golden.json" in message and f"holds the key {key} twice" in message


def test_the_untouched_golden_file_still_passes_every_reader(
    bertc_cli, artifact_copy, ids_artifact: Path
) -> None:
    # the repeated-key check must not refuse what bertc itself writes
    artifact = artifact_copy(ids_artifact)
    for reader in ("api", "cli"):
        assert check_answer(reader, artifact, bertc_cli) == (0, "")


# ---- kind: bertc killed outright (SIGKILL, OOM killer) during emulation (was: the emulator,
# in its own session, ran on to the end of its examples) ----


@pytest.mark.parametrize("core", ["arm64:a76", "arm64"])
def test_an_emulator_does_not_outlive_a_killed_bertc(
    core: str,
    bertc_cli,
    tmp_path: Path,
    artifact_copy,
    ids_artifact: Path,
    glue_data_dir: Path,
) -> None:
    fake_installation(tmp_path / "platforms")
    pid_file = tmp_path / "qemu.pid"
    qemu = sleeping_emulator(tmp_path, pid_file)
    env = {"BERTC_PLATFORM_DIR": str(tmp_path / "platforms"), "BERTC_QEMU_AARCH64": str(qemu)}
    arguments = verify_arguments(artifact_copy(ids_artifact), glue_data_dir, "--platform", core)
    process = bertc_cli(*arguments, env=env, wait=False)
    deadline = time.monotonic() + 240
    while not pid_file.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), process.communicate()[1]
    emulator = int(pid_file.read_text())
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while process_alive(emulator) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not process_alive(emulator)
    finally:
        if process_alive(emulator):
            os.kill(emulator, signal.SIGKILL)


# ---- kind: an installation whose runtime no longer imports (a file deleted from site/) passes
# is_installed() on its stamps, and verify calls the failure a gate failure (12), not a broken
# platform (19); `platform install` then answers "already installed" and does not repair it ----

SHADOW_RUNTIME = (
    "raise ModuleNotFoundError(\"No module named 'onnxruntime.capi.onnxruntime_pybind11_state'\")\n"
)


def broken_runtime_emulator(folder: Path) -> Path:
    """The host "emulator" with an onnxruntime that cannot import, as when a .so is deleted."""
    shadow = folder / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    folder.mkdir(exist_ok=True)
    (shadow / "__init__.py").write_text(SHADOW_RUNTIME)
    version = 'if [ "$1" = --version ]; then echo "qemu-aarch64 version 7.2.0-fake"; exit 0; fi\n'
    host = fake_emulator(folder, "host").read_text().splitlines()[-1]
    body = host.replace("env -u PYTHONPATH", f"env PYTHONPATH={folder / 'shadow'}")
    return write_script(folder / "qemu-broken-runtime", version + body + "\n")


def test_a_platform_whose_runtime_cannot_import_is_a_platform_failure(
    bertc_cli, tmp_path: Path, artifact_copy, ids_artifact: Path, glue_data_dir: Path
) -> None:
    fake_installation(tmp_path / "platforms")
    qemu = broken_runtime_emulator(tmp_path / "bin")
    env = {"BERTC_PLATFORM_DIR": str(tmp_path / "platforms"), "BERTC_QEMU_AARCH64": str(qemu)}
    arguments = verify_arguments(artifact_copy(ids_artifact), glue_data_dir)
    result = bertc_cli(*arguments, "--platform", "arm64:a76", "--limit", "2", env=env)
    assert "No module named" in result.stderr  # the shadow runtime did stand in
    assert result.returncode == PLATFORM_EXIT, result.stderr
    assert "reinstall the platform" in result.stderr
    assert "Traceback" not in result.stderr


# ---- kind: golden outputs of another model whose logits spread less than the tolerance (a
# tiny or barely trained model) are "reproduced": the tolerance is an absolute 0.2 logits,
# not scaled to the outputs it guards ----


@pytest.fixture(scope="module")
def untrained_pair(compile_once, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two untrained tiny classifiers (seeds 0 and 7): logits spread well under 0.2."""
    from model_factory import make_checkpoint

    built = []
    for seed in (0, 7):
        checkpoint = make_checkpoint(tmp_path_factory.mktemp(f"untrained-{seed}"), seed=seed)
        built.append(compile_once(checkpoint, "ort-mobile", "dynamic").artifact_dir)
    return built[0], built[1]


@pytest.mark.xfail(
    strict=True,
    reason="golden tolerance is an absolute 0.2 logits (loader.GOLDEN_TOLERANCE) whatever the "
    "model's output spread: another model's golden.json (same inputs, different weights), "
    "resealed, passes check() when both models' logits lie within 0.2; scaling the tolerance "
    "to the recorded outputs' spread is a design change, not a small fix",
)
def test_golden_outputs_of_another_model_within_the_tolerance_are_not_reproduced(
    artifact_copy, untrained_pair: tuple[Path, Path]
) -> None:
    mine_artifact, other_ids_artifact = untrained_pair
    artifact = artifact_copy(mine_artifact)
    mine = json.loads((artifact / GOLDEN_FILE).read_text(encoding="utf-8"))
    theirs = json.loads((other_ids_artifact / GOLDEN_FILE).read_text(encoding="utf-8"))
    assert [e["ids"] for e in mine["examples"]] == [e["ids"] for e in theirs["examples"]]
    moved = max(
        abs(a - b)
        for x, y in zip(mine["examples"], theirs["examples"], strict=True)
        for a, b in zip(x["output"], y["output"], strict=True)
    )
    assert moved > 0  # another model: its outputs are not this one's
    shutil.copyfile(other_ids_artifact / GOLDEN_FILE, artifact / GOLDEN_FILE)
    reseal(artifact)
    assert not loader.check(artifact).passed


# ---- kind: examples/check_on_device.py run carelessly (was: IndexError / JSONDecodeError /
# AttributeError tracebacks, exit 1) ----

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "check_on_device.py"


def run_example(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "BERTC_DEBUG"}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=300,
    )


BAD_EXAMPLE_ARGUMENTS: dict[str, Callable[[Path], list[str | Path]]] = {
    "nothing": lambda artifact: [],
    "no text": lambda artifact: [artifact],
    "--help": lambda artifact: ["--help"],
    "one text too many": lambda artifact: [artifact, "a", "b", "c"],
}


@pytest.mark.parametrize("case", list(BAD_EXAMPLE_ARGUMENTS))
def test_the_example_app_with_the_wrong_arguments_prints_its_usage(
    case: str, tmp_path: Path, ids_artifact: Path
) -> None:
    result = run_example(*BAD_EXAMPLE_ARGUMENTS[case](ids_artifact), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        'usage: python check_on_device.py ARTIFACT "first text" ["second text, for a pair task"]'
    ]
    assert not (tmp_path / "bertc-check.json").exists()  # nothing checked, nothing cached


DAMAGED_CACHES: dict[str, bytes] = {
    "not JSON": b"{garbage",
    "a list": b"[1]",
    "a string": b'"passed"',
    "not UTF-8": b"\xff\xfe{}",
    "empty": b"",
}


@pytest.mark.parametrize("case", list(DAMAGED_CACHES))
def test_a_damaged_cached_verdict_is_checked_again(
    case: str, tmp_path: Path, ids_artifact: Path
) -> None:
    (tmp_path / "bertc-check.json").write_bytes(DAMAGED_CACHES[case])
    result = run_example(ids_artifact, "a gorgeous movie", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "golden outputs reproduced" in result.stderr  # a fresh check ran
    assert len(result.stdout.strip().splitlines()) == 1  # the label
    verdict = json.loads((tmp_path / "bertc-check.json").read_text(encoding="utf-8"))
    assert verdict["passed"] is True  # the damaged cache was replaced
