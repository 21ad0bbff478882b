"""`verify --platform arm64` for real: QEMU user mode, Debian's aarch64 Python, the runtimes'
aarch64 wheels (issue 19).

The session installs the platform with `bertc platform install arm64` (into $BERTC_PLATFORM_DIR,
default ~/.cache/bertc/platforms: a first install downloads about 300 MB through apt and pip and
took 26 s here with warm caches) unless it is there. It skips only when it is not installed and
cannot be: no qemu-aarch64-static on the machine (`apt-get install qemu-user-static`).

CI runs one emulated core (A76): `verify --platform arm64:a76` on the tiny seeded models for both
targets (about 40 s), and the platform check of MiniLM-L6 SST-2 on verify's 50-sentence sample
for both targets (compiles included, about 3-4 minutes on this 2-core machine; real weights:
skipped with the reason when ../shared/assets is absent). The other cores are `-m slow`.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bertc.compiler.verify import verify_artifact
from bertc.compiler.verify.platform import DEFAULT_MAX_ERROR, PlatformOptions
from bertc.targets.platforms import arm64

REPO = Path(__file__).resolve().parents[2]
ASSETS = Path(os.environ.get("BERTC_ASSETS", REPO.parent / "shared" / "assets"))
INSTALL_TIMEOUT_S = 1800
# The ways whose aarch64 logits must stay within the gate of x86's. OpenVINO as-loaded (the IR
# on dynamic shapes) is measured but not held to it here: on aarch64 it gives ~0.83x the x86
# logits (signed-int8 activations + per-channel weight scales + dynamic shapes, a known
# OpenVINO 2026.4 fault, ../shared/tools/arm64/ov_arm_fc_repro.py); the gate reports it.
HELD = ("ort", "ov-static")


@pytest.fixture(scope="session")
def arm64_platform() -> arm64.Layout:
    layout = arm64.Layout(arm64.platform_dir())
    if arm64.is_installed(layout) and arm64.find_qemu():
        return layout
    if arm64.find_qemu() is None:
        pytest.skip(
            "the arm64 platform is not installed and cannot be: no qemu-aarch64-static "
            "(`sudo apt-get install qemu-user-static`, then `bertc platform install arm64`)"
        )
    bertc = Path(sys.executable).with_name("bertc")
    command = [str(bertc)] if bertc.is_file() else [sys.executable, "-m", "bertc.compiler.cli"]
    start = time.monotonic()
    done = subprocess.run(
        [*command, "platform", "install", "arm64"],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    print(f"bertc platform install arm64: {time.monotonic() - start:.0f} s", file=sys.stderr)
    assert arm64.is_installed(layout)
    return layout


def check(artifact: Path, data_dir: Path, cores: tuple[str, ...], limit: int | None):
    """`bertc verify ARTIFACT --platform arm64:CORES --limit LIMIT`, its platform section."""
    report = verify_artifact(
        artifact,
        data_dir=data_dir,
        bootstrap_samples=10,
        raise_on_gate_failure=False,
        write_reports=False,
        platform=PlatformOptions(cores=cores, limit=limit),
    )
    return report.platform


def check_sample(artifact: Path, data_dir: Path, cores: tuple[str, ...], limit: int):
    """The platform check alone on verify's seeded sample (fp32 on the sample only, no x86 run
    of the whole split): what `verify --platform` adds, in CI's time."""
    from bertc.calibration import get_task, load_examples
    from bertc.compiler.core.manifest import read_manifest
    from bertc.compiler.heads import task_columns
    from bertc.compiler.verify.inputs import encode, load_tokenizer
    from bertc.compiler.verify.platform import check_platform, sample_indices
    from bertc.compiler.verify.reference import load_reference, run_reference

    manifest = read_manifest(artifact)
    task = get_task("sst2")
    examples = load_examples(task, "dev", data_dir)
    sampled = [examples[int(i)] for i in sample_indices(len(examples), limit, seed=0)]
    loaded, _ = load_reference(manifest, None, False)
    tokenizer = load_tokenizer(artifact, manifest)
    length = int(manifest["model"]["max_sequence_length"])
    singles = [encode(tokenizer, [e], length, loaded.input_names) for e in sampled]
    reference_columns = task_columns(loaded.label_map, task, "reference")
    fp32 = run_reference(loaded, singles)[:, reference_columns]
    columns = task_columns(manifest["model"].get("labels"), task, str(artifact))
    options = PlatformOptions(cores=cores, limit=None)
    return check_platform(artifact, manifest, task, sampled, fp32, columns, options)


def rows_by_way(platform) -> dict[tuple[str, str], object]:
    return {(row.core, row.way): row for row in platform.rows}


def assert_reported(platform, ways: tuple[str, ...], cores: tuple[str, ...], examples: int):
    """Every core and way has a row: figures, or the runtime's failure; the gate agrees."""
    assert [(row.core, row.way) for row in platform.rows] == [
        (core, way) for core in ("host", *cores) for way in ways
    ]
    for row in platform.rows:
        assert row.examples == examples
        if row.error is None:
            assert math.isfinite(row.max_abs_fp32)
            assert row.core == "host" or (math.isfinite(row.max_abs_x86) and row.seconds > 0)
        else:
            assert (
                row.core != "host"
                and not row.passed
                and "failed" in row.error
                or "load" in row.error
            )
    assert platform.passed == all(row.passed for row in platform.rows)


WAYS = {"ort-mobile": ("ort",), "openvino": ("ov-static", "ov-as-loaded")}


@pytest.mark.parametrize("target", ["ort-mobile", "openvino"])
def test_tiny_models_on_the_emulated_a76_are_reported_way_by_way(
    target: str, arm64_platform, compile_once, tiny_classifier: Path, glue_data_dir: Path
) -> None:
    """The whole `verify --platform arm64:a76` on the tiny seeded models. ORT's aarch64 build
    runs it within the gate. OpenVINO 2026.4.1's aarch64 CPU plugin cannot compile the tiny INT8
    IR (its ConvertFullyConnectedBias pass throws on the FakeQuantize after the query's bias
    Add, static and dynamic shapes alike), which the rows report as failures, not a crash."""
    quantization = "dynamic" if target == "ort-mobile" else "static"
    artifact = compile_once(tiny_classifier, target, quantization).artifact_dir
    platform = check(artifact, glue_data_dir, ("a76",), None)
    assert_reported(platform, WAYS[target], ("a76",), 40)
    assert platform.runtime_versions == arm64.wheel_versions()
    if target == "ort-mobile":
        row = rows_by_way(platform)[("a76", "ort")]
        assert row.passed and row.max_abs_x86 <= DEFAULT_MAX_ERROR and row.agreement_x86 >= 0.995


@pytest.fixture(scope="session")
def minilm_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """MiniLM-L6 SST-2 compiled for both targets as the issue's table was (recipe alone:
    --max-drop none)."""
    model, glue = ASSETS / "models" / "minilm-l6-sst2", ASSETS / "glue"
    if not model.is_dir() or not (glue / "SST-2").is_dir():
        pytest.skip(f"needs {model} and {glue}/SST-2 (BERTC_ASSETS)")
    from bertc.compiler.pipeline import CompileOptions, compile_model

    built = {}
    for target in WAYS:
        out = tmp_path_factory.mktemp(f"minilm-{target}") / "artifact"
        options = CompileOptions(target=target, task="sst2", data_dir=glue, max_drop=None)
        built[target] = compile_model(str(model), out, options).artifact_dir
    return built


@pytest.fixture(scope="session")
def minilm_checks(arm64_platform, minilm_artifacts: dict[str, Path]):
    """`checks(target, cores)`: the platform check of MiniLM-L6 SST-2 on 50 dev sentences,
    run once per target and cores."""
    done: dict = {}

    def run(target: str, cores: tuple[str, ...]):
        if (target, cores) not in done:
            done[target, cores] = check_sample(minilm_artifacts[target], ASSETS / "glue", cores, 50)
        return done[target, cores]

    return run


# The issue's bar: within 0.05 of x86's logits and >= 99.5% agreement on the sample, every way.
# (Before the recipes' ARM fixes ORT missed it at 0.096 and OpenVINO as loaded at ~0.5:
# bench/README.md, "ARM64 under emulation".)
CASES = [pytest.param(target, way) for target, ways in WAYS.items() for way in ways]


@pytest.mark.parametrize(("target", "way"), CASES)
def test_minilm_sst2_50_sentences_on_the_emulated_a76_within_the_issue_bar(
    target: str, way: str, minilm_checks
) -> None:
    platform = minilm_checks(target, ("a76",))
    assert_reported(platform, WAYS[target], ("a76",), 50)
    row = rows_by_way(platform)[("a76", way)]
    assert row.error is None and row.agreement_fp32 is not None
    assert row.max_abs_x86 <= DEFAULT_MAX_ERROR and row.agreement_x86 >= 0.995, row


@pytest.mark.slow
@pytest.mark.parametrize("core", ["a55", "a72", "v9"])
@pytest.mark.parametrize(("target", "way"), CASES)
def test_minilm_sst2_50_sentences_on_the_other_emulated_cores(
    target: str, way: str, core: str, minilm_checks
) -> None:
    platform = minilm_checks(target, ("a55", "a72", "v9"))
    assert_reported(platform, WAYS[target], ("a55", "a72", "v9"), 50)
    row = rows_by_way(platform)[(core, way)]
    assert row.error is None
    assert row.max_abs_x86 <= DEFAULT_MAX_ERROR and row.agreement_x86 >= 0.995, row


def test_the_installer_is_idempotent_on_a_real_installation(arm64_platform) -> None:
    lines: list[str] = []
    start = time.monotonic()
    arm64.install(arm64_platform, lines.append)
    assert all("already" in line or "done before" in line for line in lines[1:]), lines
    assert time.monotonic() - start < 30
