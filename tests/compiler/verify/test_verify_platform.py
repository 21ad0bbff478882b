"""`verify --platform arm64`: the pure parts (core parsing, sampling, the row and gate math, the
rendering, the installer's planning and steps with a fake runner). No QEMU needed; the real
emulation is tests/targets/test_platform_arm64.py's."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bertc.calibration import get_task
from bertc.calibration.metrics import predictions_from_logits
from bertc.compiler.cli import artifact as cli_artifact
from bertc.compiler.core.errors import GateFailedError, PlatformError, UsageError
from bertc.compiler.verify import gate, platform, render
from bertc.compiler.verify.model import PlatformCheck
from bertc.targets.platforms import arm64
from platform_helpers import fake_installation

SST2 = get_task("sst2")


def classes(logits: np.ndarray) -> np.ndarray:
    return predictions_from_logits(SST2, logits)


# ---- --platform ----


@pytest.mark.parametrize(
    ("spec", "cores"),
    [
        ("arm64", ("a55", "a72", "a76", "v9")),
        ("arm64:a76", ("a76",)),
        ("ARM64:V9", ("v9",)),
        ("arm64:v9,arm64:a55", ("a55", "v9")),
        ("arm64:a72,a76", ("a72", "a76")),
        ("arm64:a76,arm64", ("a55", "a72", "a76", "v9")),
    ],
)
def test_platform_names_its_cores_in_table_order(spec: str, cores: tuple[str, ...]) -> None:
    assert platform.parse_platform(spec) == cores


@pytest.mark.parametrize(
    "spec", ["", "arm", "arm64:", "arm64:a53", "x86", "arm64;a76", "arm64:a76:"]
)
def test_an_unknown_platform_or_core_is_refused_naming_the_cores(spec: str) -> None:
    with pytest.raises(UsageError, match="a55, a72, a76, v9"):
        platform.parse_platform(spec)


def test_the_cli_defaults_are_the_platform_modules() -> None:
    assert cli_artifact.DEFAULT_PLATFORM_LIMIT == platform.DEFAULT_LIMIT
    assert cli_artifact.DEFAULT_PLATFORM_MAX_ERROR == platform.DEFAULT_MAX_ERROR
    assert cli_artifact.DEFAULT_PLATFORM_MIN_AGREEMENT == platform.DEFAULT_MIN_AGREEMENT


# ---- the sample ----


def test_the_sample_is_seeded_distinct_sorted_and_within_the_split() -> None:
    first = platform.sample_indices(872, 50, seed=0)
    assert np.array_equal(first, platform.sample_indices(872, 50, seed=0))
    assert not np.array_equal(first, platform.sample_indices(872, 50, seed=1))
    assert len(set(first.tolist())) == 50
    assert np.all(np.diff(first) > 0) and first.min() >= 0 and first.max() < 872


@pytest.mark.parametrize("limit", [None, 40, 41, 1000])
def test_a_limit_at_or_over_the_split_takes_all_of_it(limit: int | None) -> None:
    assert platform.sample_indices(40, limit, seed=3).tolist() == list(range(40))


# ---- rows and the gate ----


def test_a_row_measures_agreement_and_logit_error_against_x86_and_fp32() -> None:
    x86 = np.array([[1.0, -1.0], [0.2, 0.1], [-2.0, 2.0], [0.0, 1.0]])
    arm = x86 + np.array([[0.01, 0.0], [-0.2, 0.0], [0.0, -0.03], [0.0, 0.0]])  # flips row 2
    fp32 = np.array([[1.0, -1.0], [0.0, 0.3], [-2.0, 2.1], [0.0, 1.0]])
    row = platform.platform_row("a76", "ort", arm, x86, fp32, classes, 12.5, (0.05, 0.995))
    assert row.examples == 4
    assert row.agreement_x86 == pytest.approx(0.75)
    assert row.max_abs_x86 == pytest.approx(0.2)
    assert row.mean_abs_x86 == pytest.approx((0.01 + 0.2 + 0.03) / 8)
    assert row.agreement_fp32 == pytest.approx(1.0)  # arm's flip matches fp32's class
    assert row.max_abs_fp32 == pytest.approx(np.abs(arm - fp32).max())
    assert row.seconds == 12.5 and not row.passed


@pytest.mark.parametrize(
    ("shift", "min_agreement", "passed"),
    [(0.05, 0.0, True), (0.0500001, 0.0, False), (0.0, 1.0, True), (np.nan, 0.0, False)],
)
def test_the_row_gate_is_max_error_inclusive_and_fails_on_nan(
    shift: float, min_agreement: float, passed: bool
) -> None:
    x86 = np.array([[3.0, -3.0], [-3.0, 3.0]])
    row = platform.platform_row(
        "v9", "ov-static", x86 + shift, x86, x86, classes, 1.0, (0.05, min_agreement)
    )
    assert row.passed is passed


def test_an_agreement_below_the_minimum_fails_even_with_small_logit_error() -> None:
    x86 = np.array([[0.01, 0.0]] * 9 + [[0.0, 0.01]])
    arm = np.array([[0.0, 0.01]] * 10)  # 9 of 10 flip, each logit moves 0.01
    row = platform.platform_row("a55", "ort", arm, x86, x86, classes, 1.0, (0.05, 0.995))
    assert row.max_abs_x86 == pytest.approx(0.01) and row.agreement_x86 == pytest.approx(0.1)
    assert not row.passed


def test_regression_and_embeddings_have_no_agreement_and_gate_on_error_alone() -> None:
    x86 = np.array([[0.5], [2.0]])
    row = platform.platform_row("a72", "ort", x86 + 0.01, x86, x86, None, 1.0, (0.05, 0.995))
    assert row.agreement_x86 is None and row.agreement_fp32 is None and row.passed


def test_the_host_row_has_no_x86_comparison_and_always_passes() -> None:
    logits = np.array([[1.0, 0.0]])
    row = platform.platform_row(
        "host", "ort", logits, None, logits + 1, classes, 0.1, (0.0, 1.0), "x86_64"
    )
    assert row.passed and row.max_abs_x86 is None and row.agreement_x86 is None
    assert row.max_abs_fp32 == pytest.approx(1.0)


def rows(errors: dict[tuple[str, str], float]) -> list:
    x86 = np.array([[2.0, -2.0], [-2.0, 2.0]])
    made = [platform.platform_row("host", "ort", x86, None, x86, classes, 0.1, (0.05, 0.995))]
    for (core, way), error in errors.items():
        made.append(
            platform.platform_row(core, way, x86 + error, x86, x86, classes, 1.0, (0.05, 0.995))
        )
    return made


def test_the_gate_passes_when_every_emulated_row_passes_and_names_the_largest_error() -> None:
    passed, message = platform.gate_message(
        rows({("a76", "ort"): 0.01, ("v9", "ort"): 0.03}), 0.05, 0.995
    )
    assert passed and "2 emulated runs" in message and "0.03" in message


def test_the_gate_fails_naming_each_failing_core_and_way_up_to_three() -> None:
    failing = {(core, "ov-as-loaded"): 0.485 for core in ("a55", "a72", "a76", "v9")}
    passed, message = platform.gate_message(rows(failing), 0.05, 0.995)
    assert not passed
    assert message.count("ov-as-loaded") == 3 and "(+1 more)" in message
    assert "arm64 a55 ov-as-loaded: max |Δ logit| 0.485" in message
    assert "--platform-max-error 0.05" in message and "\n" not in message


@pytest.fixture
def verify_report_factory():
    """A passing verify report built by hand (no model runs)."""
    from bertc.compiler.verify.model import (
        Agreement,
        GateResult,
        Latency,
        MetricDelta,
        OutputError,
        RunEnvironment,
        VerifyReport,
    )

    def make() -> VerifyReport:
        accuracy = MetricDelta("accuracy", 0.87, 0.871, 0.1, -0.4, 0.6)
        return VerifyReport(
            artifact_dir=Path("artifact"),
            task="sst2",
            split="dev",
            examples=40,
            reference="fp32 PyTorch: tiny",
            artifact_labels={"0": "negative", "1": "positive"},
            headline_metric="accuracy",
            metrics=(accuracy,),
            agreement=Agreement(rate=1.0, prediction_pearson=None, disagreements=0),
            output_error=OutputError(0.1, 0.01, 0.02, 0.0),
            latency=Latency(1.0, 2.0, 12.0, 32, 100.0),
            model_bytes=10,
            model_files=("model.ort",),
            environment=RunEnvironment(
                "ort-mobile", "onnxruntime", "1.32.0", None, None, None, {}, {}, "2.13.0"
            ),
            bootstrap_samples=10,
            seed=0,
            gate=GateResult("accuracy", 0.5, 0.1, True, "gate passed"),
            report_files=("reports/verify-sst2.md", "reports/verify-sst2.json"),
        )

    return make


def check_for(passed: bool) -> PlatformCheck:
    made = rows({("a76", "ov-static"): 0.01 if passed else 0.5})
    ok, message = platform.gate_message(made, 0.05, 0.995)
    return PlatformCheck(
        platform="arm64",
        cores=("a76",),
        examples=2,
        split_examples=40,
        sample_seed=0,
        max_error=0.05,
        min_agreement=0.995,
        rows=tuple(made),
        passed=ok,
        message=message,
        emulator="qemu",
        runtime_versions={"openvino": "2026.4.1"},
        notes=("a note",),
    )


def test_verify_raises_on_a_failed_platform_gate_even_when_the_metric_gate_passes(
    verify_report_factory,
) -> None:
    report = verify_report_factory()
    assert report.gate.passed
    gate.raise_if_gate_failed(dataclasses.replace(report, platform=check_for(True)))
    with pytest.raises(GateFailedError, match="platform gate failed") as raised:
        gate.raise_if_gate_failed(dataclasses.replace(report, platform=check_for(False)))
    assert raised.value.exit_code == 12


def test_the_report_renders_the_platform_rows_in_markdown_json_and_the_table(
    verify_report_factory,
) -> None:
    from rich.console import Console

    report = dataclasses.replace(verify_report_factory(), platform=check_for(False))
    markdown = render.render_markdown(report)
    assert "## --platform arm64" in markdown and "| arm64 a76 FAIL | ov-static | 2 |" in markdown
    assert "platform gate failed" in markdown and "not a latency" in markdown
    data = json.loads(json.dumps(render.report_to_json(report)))
    assert data["platform"]["passed"] is False
    assert [row["core"] for row in data["platform"]["rows"]] == ["host", "a76"]
    assert data["platform"]["rows"][1]["max_abs_x86"] == pytest.approx(0.5)
    console = Console(record=True, width=200)
    console.print(render.render_table(report))
    assert "arm64 a76 FAIL" in console.export_text()


# ---- the installer ----


class FakeRunner:
    """Records each command; fails the first whose text contains `fail_on`."""

    def __init__(self, fail_on: str | None = None, stdout: str = "") -> None:
        self.commands: list[list[str]] = []
        self.fail_on = fail_on
        self.stdout = stdout

    def __call__(self, command, **options) -> subprocess.CompletedProcess:
        self.commands.append(command)
        text = " ".join(command)
        if self.fail_on and self.fail_on in text:
            return subprocess.CompletedProcess(command, 100, "", "E: Unable to fetch\nE: 404\n")
        if "--version" in command:
            return subprocess.CompletedProcess(command, 0, "qemu-aarch64 version 7.2.22\n", "")
        if "pip" in command:  # what pip would leave: the target folder
            Path(command[command.index("--target") + 1]).mkdir(parents=True)
        if "dpkg-deb" in command:
            python = Path(command[-1]) / "usr" / "bin" / f"python{arm64.PYTHON_VERSION}"
            python.parent.mkdir(parents=True, exist_ok=True)
            python.write_text("")
        if command[:3] == ["apt-get", "install", "--download-only"]:
            conf = Path(options["env"]["APT_CONFIG"]).parent
            (conf / "cache" / "archives" / "python3.11-minimal_arm64.deb").write_text("")
        if "cpuid.py" in text:
            return subprocess.CompletedProcess(command, 0, '{"midr": "0x414fd0b1"}\n', "")
        if "-c" in command:
            return subprocess.CompletedProcess(
                command, 0, '{"machine": "aarch64", "onnxruntime": "1.32.0"}\n', ""
            )
        return subprocess.CompletedProcess(command, 0, self.stdout, "")


@pytest.fixture
def fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    qemu = tmp_path / "bin" / "qemu-aarch64-static"
    qemu.parent.mkdir()
    qemu.write_text("#!/bin/sh\n")
    qemu.chmod(0o755)
    monkeypatch.setenv("BERTC_QEMU_AARCH64", str(qemu))
    # the host's own sources are read for real only where a real install runs (any host OS)
    monkeypatch.setattr(arm64, "host_sources", lambda: ("debian.sources", DEB822))
    return qemu


def test_a_fresh_install_runs_every_step_in_order_one_line_each(
    tmp_path: Path, fake_qemu: Path
) -> None:
    layout = arm64.Layout(tmp_path / "platforms" / "arm64")
    runner, lines = FakeRunner(), []
    arm64.install(layout, lines.append, runner)
    names = [line.split(":")[0] for line in lines]
    cores = [f"arm64 core {name}" for name in arm64.CORES]
    assert names == ["arm64 qemu", "arm64 python", "arm64 wheels", *cores, "arm64 check"]
    firsts = [command[0] for command in runner.commands]
    assert firsts.index("apt-get") < firsts.index("dpkg-deb")
    pip = next(command for command in runner.commands if "pip" in command)
    assert "--only-binary=:all:" in pip and "manylinux_2_28_aarch64" in pip
    assert f"onnxruntime=={arm64.wheel_versions()['onnxruntime']}" in pip
    assert arm64.is_installed(layout)
    assert sorted(path.name for path in layout.root.iterdir()) == [
        "cores", "platform.json", "rootfs", "site"
    ]  # fmt: skip


def test_a_second_install_runs_nothing_but_the_version_probe(
    tmp_path: Path, fake_qemu: Path
) -> None:
    layout = arm64.Layout(tmp_path / "arm64")
    arm64.install(layout, lambda line: None, FakeRunner())
    runner, lines = FakeRunner(), []
    arm64.install(layout, lines.append, runner)
    assert [command[1] for command in runner.commands] == ["--version"]
    assert all("already" in line or "done before" in line for line in lines[1:])


def test_a_changed_wheel_version_redoes_only_the_wheels_and_the_check(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = arm64.Layout(tmp_path / "arm64")
    arm64.install(layout, lambda line: None, FakeRunner())
    versions = {**arm64.wheel_versions(), "onnxruntime": "9.9.9"}
    monkeypatch.setattr(arm64, "wheel_versions", lambda: versions)
    steps = {step.name: step.done for step in arm64.plan(layout, versions, arm64.cpu_count())}
    assert steps == {"qemu": False, "python": True, "wheels": False, "cores": True, "check": False}
    runner = FakeRunner()
    arm64.install(layout, lambda line: None, runner)
    assert any("onnxruntime==9.9.9" in command for command in runner.commands)
    assert not any(command[0] in ("apt-get", "dpkg-deb") for command in runner.commands)


@pytest.mark.parametrize("failing", ["apt-get update", "download-only", "dpkg-deb", "pip"])
def test_a_failed_step_leaves_no_half_installed_state(
    tmp_path: Path, fake_qemu: Path, failing: str
) -> None:
    layout = arm64.Layout(tmp_path / "arm64")
    with pytest.raises(PlatformError, match="failed: E: 404") as raised:
        arm64.install(layout, lambda line: None, FakeRunner(fail_on=failing))
    assert raised.value.exit_code == 19
    left = sorted(path.name for path in layout.root.iterdir())
    assert all(not name.startswith(".") for name in left), left  # no staging left behind
    assert not arm64.is_installed(layout)
    if failing == "pip":
        assert left == ["rootfs"]  # the step before stays done


def test_a_missing_emulator_is_one_line_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BERTC_QEMU_AARCH64", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PlatformError) as raised:
        arm64.install(arm64.Layout(tmp_path / "arm64"), lambda line: None, FakeRunner())
    assert "apt-get install qemu-user-static" in str(raised.value)
    assert raised.value.exit_code == 19 and not (tmp_path / "arm64").exists()


@pytest.mark.parametrize("top", ["usr", "var", "etc"])
def test_a_platform_dir_the_emulator_maps_into_its_root_is_refused(top: str) -> None:
    with pytest.raises(PlatformError, match="BERTC_PLATFORM_DIR"):
        arm64.install(arm64.Layout(Path(f"/{top}/bertc-platform")), lambda line: None)


def test_the_platform_dir_follows_bertc_platform_dir_then_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BERTC_PLATFORM_DIR", str(tmp_path))
    assert arm64.platform_dir() == tmp_path / "arm64"
    monkeypatch.delenv("BERTC_PLATFORM_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert arm64.platform_dir() == tmp_path / "cache" / "bertc" / "platforms" / "arm64"


def test_a_fake_installation_reads_as_installed(tmp_path: Path) -> None:
    assert arm64.is_installed(fake_installation(tmp_path))
    assert not arm64.is_installed(arm64.Layout(tmp_path / "empty"))


DEB822 = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
"""


def test_the_sources_are_read_from_the_hosts_apt_folder_or_refused(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(PlatformError, match="no Debian apt sources"):
        arm64.host_sources(tmp_path)
    (tmp_path / "sources.list").write_text("deb http://deb.debian.org/debian bookworm main\n")
    assert arm64.host_sources(tmp_path)[0] == "debian.list"
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    name, text = arm64.host_sources(tmp_path)
    assert name == "debian.sources" and "Architectures: arm64" in text


def test_the_private_sources_are_the_hosts_binary_ones_for_arm64_only() -> None:
    sources = arm64.debian_sources(DEB822)
    assert sources.count("Types: deb\n") == 1 and "deb-src" not in sources
    assert "Architectures: arm64" in sources and "Suites: bookworm bookworm-updates" in sources
    one_line = arm64.one_line_sources(
        "deb http://deb.debian.org/debian bookworm main\n# deb old\ndeb-src x y z\n"
        "deb [arch=amd64] http://security.debian.org bookworm-security main\n"
    )
    assert one_line.splitlines() == [
        "deb [arch=arm64] http://deb.debian.org/debian bookworm main",
        "deb [arch=arm64] http://security.debian.org bookworm-security main",
    ]


def test_the_private_apt_configuration_keeps_apt_off_the_hosts_state(tmp_path: Path) -> None:
    conf = arm64.apt_config(tmp_path)
    assert f'Dir::State::status "{tmp_path}/state/status";' in conf
    assert 'APT::Architecture "arm64";' in conf and "/var/lib/dpkg" not in conf


def test_the_emulated_environment_drops_the_hosts_python_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/x86/site-packages")
    layout = arm64.Layout(tmp_path)
    env = arm64.emulated_env(arm64.CORES["v9"], layout)
    assert env["PYTHONPATH"] == str(layout.site)
    assert env["QEMU_CPU"].startswith("max,sve-default-vector-length=16")
    command = arm64.command("qemu", layout, "a55", "worker.py")
    assert command == ["qemu", "-L", str(layout.core("a55")), str(layout.python), "worker.py"]


def test_a_way_that_failed_on_the_core_fails_the_gate_with_its_reason() -> None:
    made = rows({("a76", "ort"): 0.0})
    made.append(platform.failed_row("a76", "ov-static", 7, "ov-static: cannot load: threw", 2.0))
    passed, message = platform.gate_message(made, 0.05, 0.995)
    assert not passed
    assert "arm64 a76 ov-static: the runtime failed (ov-static: cannot load: threw)" in message
    row = made[-1]
    assert row.examples == 7 and row.max_abs_x86 is None and row.max_abs_fp32 is None
    cells = render.platform_rows(dataclasses.replace(check_for(True), rows=tuple(made)))[-1]
    assert cells[0] == "arm64 a76 FAIL" and cells[3:8] == ("—",) * 5 and cells[8] == "2.0"
