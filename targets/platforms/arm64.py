"""ARM64 (aarch64) under QEMU user-mode emulation: the installer and the launcher.

`install()` builds, under `platform_dir()` (`$BERTC_PLATFORM_DIR/arm64`, default
`~/.cache/bertc/platforms/arm64`), with one line per step and each step skipped when its result
is there:

    qemu     `qemu-aarch64-static` on PATH: checked, never installed (that needs root and changes
             the host's packages: the error says `apt-get install qemu-user-static`)
    python   an aarch64 CPython 3.11 from Debian's own arm64 packages: downloaded by the host's
             apt-get under a private configuration (nothing of the host's dpkg or apt state
             changes) and unpacked with `dpkg-deb -x`
    wheels   the aarch64 wheels of numpy and the runtimes, at the host's versions, installed by
             the host's pip (`--platform manylinux_2_28_aarch64 --only-binary=:all: --target`)
    cores    a prefix per emulated core (`cpuid.py`): its /proc/cpuinfo and MIDR_EL1
    check    every runtime imports on the A76; `platform.json` records the versions (the stamp)

Each step builds in a staging sibling and renames it into place, so a failed or interrupted
step leaves nothing half-installed. No binfmt_misc is needed: the emulator is called
explicitly, `qemu-aarch64-static -L CORE_PREFIX python3.11 ...` (`command()`).
Emulation is 30-700x slower than native: its timings are never a latency.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertc.compiler.core.errors import PlatformError
from bertc.compiler.core.files import make_staging_dir

PLATFORM = "arm64"
QEMU = "qemu-aarch64-static"
QEMU_HINT = (
    f"{QEMU} is not installed: install it with `sudo apt-get install qemu-user-static` "
    "(Debian/Ubuntu), then run `bertc platform install arm64`"
)
PYTHON_VERSION = "3.11"
DEBIAN_PACKAGES = (
    f"python{PYTHON_VERSION}-minimal",
    f"libpython{PYTHON_VERSION}-stdlib",
    "libstdc++6",
    "libgcc-s1",
    "libgomp1",
)
# The runtimes' aarch64 wheels, at the host's installed versions (the x86 run's), else these.
WHEELS = {
    "numpy": "2.4.6",
    "onnxruntime": "1.32.0",
    "openvino": "2026.4.1",
    "openvino-tokenizers": "2026.4.1.0",
    "onnxruntime-extensions": "0.15.2",
}
# pip's --platform tags an aarch64 wheel of these packages may carry.
WHEEL_PLATFORMS = ("manylinux2014_aarch64",) + tuple(
    f"manylinux_2_{minor}_aarch64" for minor in (17, 27, 28, 31, 34, 35, 36)
)
# What `-L PREFIX` looks up in the emulated root before the host's: links in each core prefix.
ROOT_DIRS = ("bin", "etc", "lib", "sbin", "usr", "var")
STAMP = "platform.json"
STAMP_SCHEMA = "bertc.platform/1"
STEP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Core:
    """An emulated core: QEMU's CPU model, and the MIDR_EL1 it poses with (None: QEMU's own)."""

    name: str
    qemu_cpu: str
    midr: str | None
    stands_for: str


CORES = {
    core.name: core
    for core in (
        Core(
            "a55",
            "cortex-a76",
            "0x412fd050",
            "Cortex-A55: ARMv8.2 + dot product, posed on QEMU's A76 (phone little cores; "
            "ONNX Runtime picks its A55 kernels by MIDR)",
        ),
        Core("a72", "cortex-a72", None, "Cortex-A72: ARMv8.0, NEON only (Raspberry Pi 4)"),
        Core(
            "a76",
            "cortex-a76",
            None,
            "Cortex-A76: ARMv8.2 + dot product, fp16 (Raspberry Pi 5, 2019-22 phones)",
        ),
        Core(
            "v9",
            "max,sve-default-vector-length=16,sme=off",
            "0x410fd470",
            "ARMv9 (Cortex-A710): SVE2 128-bit, i8mm, bf16 (2022+ phones)",
        ),
    )
}
CHECK_CORE = "a76"

Runner = Callable[..., subprocess.CompletedProcess]
Log = Callable[[str], None]


def platform_dir() -> Path:
    """`$BERTC_PLATFORM_DIR/arm64`, else `$XDG_CACHE_HOME/bertc/platforms/arm64` (default
    `~/.cache/...`)."""
    root = os.environ.get("BERTC_PLATFORM_DIR")
    if root:
        # absolute: apt, pip and `qemu -L` run with other working directories
        return Path(root).expanduser().absolute() / PLATFORM
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "bertc" / "platforms" / PLATFORM


@dataclass(frozen=True)
class Layout:
    """Where each step's result lives under the platform directory."""

    root: Path

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def python(self) -> Path:
        return self.rootfs / "usr" / "bin" / f"python{PYTHON_VERSION}"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def cores(self) -> Path:
        return self.root / "cores"

    def core(self, name: str) -> Path:
        return self.cores / name

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def stamp(self) -> Path:
        return self.root / STAMP


def wheel_versions() -> dict[str, str]:
    """Each wheel at the version installed here (what the x86 run uses), else WHEELS'."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name, default in WHEELS.items():
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = default
    return versions


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def expected_stamp(versions: Mapping[str, str], cpus: int) -> dict[str, Any]:
    """What `platform.json` holds once every step is done: the stamp the steps are checked by."""
    return {
        "schema": STAMP_SCHEMA,
        "python": PYTHON_VERSION,
        "debian_packages": list(DEBIAN_PACKAGES),
        "wheels": dict(sorted(versions.items())),
        "cores": {name: [core.qemu_cpu, core.midr] for name, core in CORES.items()},
        "cpus": cpus,
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _wheels_stamp(versions: Mapping[str, str]) -> str:
    return " ".join(f"{name}=={version}" for name, version in sorted(versions.items()))


def _core_stamp(core: Core, cpus: int) -> dict[str, Any]:
    return {"qemu_cpu": core.qemu_cpu, "midr": core.midr, "cpus": cpus}


@dataclass(frozen=True)
class Step:
    """One install step: its name, whether its result is already there, what it does."""

    name: str
    done: bool
    what: str


def plan(layout: Layout, versions: Mapping[str, str], cpus: int) -> list[Step]:
    """The install steps in order, each marked done when its result is there (idempotence)."""
    stamp = _read_json(layout.stamp)
    cores_done = all(
        _read_json(layout.core(name) / "core.json") == _core_stamp(core, cpus)
        for name, core in CORES.items()
    )
    wheels = (layout.site / ".bertc-wheels").is_file() and (
        layout.site / ".bertc-wheels"
    ).read_text(encoding="utf-8").strip() == _wheels_stamp(versions)
    return [
        Step("qemu", False, f"{QEMU} on PATH"),
        Step(
            "python",
            layout.python.is_file() and (layout.rootfs / ".bertc-rootfs").is_file(),
            f"aarch64 Python {PYTHON_VERSION} from Debian's arm64 packages",
        ),
        Step("wheels", wheels, f"aarch64 wheels {_wheels_stamp(versions)}"),
        Step("cores", cores_done, f"emulated cores {', '.join(CORES)}"),
        Step("check", stamp == expected_stamp(versions, cpus), "the runtimes import on the A76"),
    ]


def is_installed(layout: Layout | None = None) -> bool:
    """Whether every step's result is there, at the versions this bertc would install."""
    layout = layout or Layout(platform_dir())
    return all(step.done for step in plan(layout, wheel_versions(), cpu_count())[1:])


def find_qemu() -> str | None:
    """`qemu-aarch64-static`'s path (`$BERTC_QEMU_AARCH64` overrides PATH), or None."""
    override = os.environ.get("BERTC_QEMU_AARCH64")
    if override:
        return override if Path(override).is_file() and os.access(override, os.X_OK) else None
    return shutil.which(QEMU)


def _run(runner: Runner, command: Sequence[str], what: str, **options: Any) -> str:
    """`command` through `runner`; PlatformError with its last stderr line when it fails."""
    try:
        done = runner(
            list(command), capture_output=True, text=True, timeout=STEP_TIMEOUT_S, **options
        )
    except FileNotFoundError as error:
        raise PlatformError(f"{what}: {command[0]} not found ({error.strerror})") from error
    except subprocess.TimeoutExpired as error:
        raise PlatformError(f"{what}: no result after {STEP_TIMEOUT_S} s") from error
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise PlatformError(f"{what} failed: {last}")
    return done.stdout or ""


def qemu_version(runner: Runner, qemu: str) -> str:
    first = _run(runner, [qemu, "--version"], f"{QEMU} --version").splitlines()
    match = re.search(r"version (\S+)", first[0] if first else "")
    return match.group(1) if match else "unknown"


def _check_root(root: Path) -> None:
    """`-L PREFIX` resolves /usr, /etc, ... inside the emulated root first: the platform
    directory (where runs put their files) must not lie under one of those."""
    top = root.resolve().parts[1:2]
    if top and top[0] in ROOT_DIRS:
        raise PlatformError(
            f"the platform directory {root} lies under /{top[0]}, which the emulator maps to the "
            "emulated root: set BERTC_PLATFORM_DIR to a directory elsewhere (e.g. under $HOME)"
        )


# ---- the steps ----


def debian_sources(text: str) -> str:
    """The host's deb822 Debian sources (`debian.sources`) restricted to arm64 packages."""
    stanzas = [stanza for stanza in re.split(r"\n\s*\n", text.strip()) if stanza.strip()]
    kept = []
    for stanza in stanzas:
        lines = [line for line in stanza.splitlines() if not line.startswith("Architectures:")]
        if any(line.strip() == "Types: deb" for line in lines):
            kept.append("\n".join([*lines, "Architectures: arm64"]))
    return "\n\n".join(kept) + "\n"


def one_line_sources(text: str) -> str:
    """The host's one-line Debian sources (`sources.list`) as arm64-only deb lines."""
    kept = []
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["deb"] and len(parts) >= 3:
            rest = [part for part in parts[1:] if not part.startswith("[")]
            kept.append(" ".join(["deb", "[arch=arm64]", *rest]))
    return "\n".join(kept) + "\n"


def host_sources(etc: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(file name, contents) of the Debian sources for the private apt configuration."""
    deb822 = etc / "sources.list.d" / "debian.sources"
    if deb822.is_file():
        return "debian.sources", debian_sources(deb822.read_text(encoding="utf-8"))
    classic = etc / "sources.list"
    if classic.is_file() and one_line_sources(classic.read_text(encoding="utf-8")).strip():
        return "debian.list", one_line_sources(classic.read_text(encoding="utf-8"))
    raise PlatformError(
        "no Debian apt sources on this host (/etc/apt/sources.list.d/debian.sources or "
        "/etc/apt/sources.list): the emulated Python comes from Debian's arm64 packages"
    )


def apt_config(apt: Path) -> str:
    """A private apt configuration under `apt`: arm64 only, its own state, lists and cache."""
    return "\n".join(
        [
            'APT::Architecture "arm64";',
            'APT::Architectures { "arm64"; };',
            f'Dir::State "{apt}/state";',
            f'Dir::State::status "{apt}/state/status";',
            f'Dir::Cache "{apt}/cache";',
            'Dir::Etc::SourceList "/dev/null";',
            f'Dir::Etc::SourceParts "{apt}/sources.list.d";',
            'Dir::Etc::Preferences "/dev/null";',
            f'Dir::Etc::PreferencesParts "{apt}/prefs.d";',
            f'Dir::Etc::Parts "{apt}/conf.d";',
            'APT::Install-Recommends "false";',
            "",
        ]
    )


def install_python(layout: Layout, runner: Runner) -> None:
    """Download the Debian arm64 packages into a private apt state, unpack them, rename in."""
    staging = make_staging_dir(layout.rootfs)
    try:
        apt = staging / "apt"
        for folder in ("state/lists/partial", "cache/archives/partial", "sources.list.d"):
            (apt / folder).mkdir(parents=True)
        for folder in ("prefs.d", "conf.d"):
            (apt / folder).mkdir()
        (apt / "state" / "status").touch()
        name, sources = host_sources()
        (apt / "sources.list.d" / name).write_text(sources, encoding="utf-8")
        (apt / "apt.conf").write_text(apt_config(apt), encoding="utf-8")
        env = {**os.environ, "APT_CONFIG": str(apt / "apt.conf")}
        _run(runner, ["apt-get", "update", "-q"], "apt-get update (arm64 lists)", env=env)
        download = ["apt-get", "install", "--download-only", "-y", "-q", *DEBIAN_PACKAGES]
        _run(runner, download, "apt-get download of the arm64 packages", env=env)
        root = staging / "rootfs"
        root.mkdir()
        for package in sorted((apt / "cache" / "archives").glob("*.deb")):
            _run(runner, ["dpkg-deb", "-x", str(package), str(root)], f"dpkg-deb -x {package.name}")
        python = root / layout.python.relative_to(layout.rootfs)
        if not python.is_file():
            raise PlatformError(f"the Debian packages held no {python.name}")
        (root / ".bertc-rootfs").write_text(" ".join(DEBIAN_PACKAGES) + "\n", encoding="utf-8")
        _replace(root, layout.rootfs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pip_command(target: Path, versions: Mapping[str, str]) -> list[str]:
    """The host's pip installing the aarch64 wheels into `target` (nothing runs: wheels only)."""
    platforms = [argument for tag in WHEEL_PLATFORMS for argument in ("--platform", tag)]
    abi = "cp" + PYTHON_VERSION.replace(".", "")
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--only-binary=:all:",
        *platforms,
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        abi,
        "--target",
        str(target),
        *(f"{name}=={version}" for name, version in sorted(versions.items())),
    ]


def install_wheels(layout: Layout, versions: Mapping[str, str], runner: Runner) -> None:
    staging = make_staging_dir(layout.site)
    try:
        site = staging / "site"
        _run(runner, pip_command(site, versions), "pip install of the aarch64 wheels")
        (site / ".bertc-wheels").write_text(_wheels_stamp(versions) + "\n", encoding="utf-8")
        _replace(site, layout.site)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def emulated_env(core: Core, layout: Layout) -> dict[str, str]:
    """The emulated Python's environment: the core's CPU model, the aarch64 wheels, and none
    of the host's Python settings (its PYTHONPATH holds x86 packages)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(
        QEMU_CPU=core.qemu_cpu,
        PYTHONPATH=str(layout.site),
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def command(qemu: str, layout: Layout, core: str, *arguments: str) -> list[str]:
    """The command line running the emulated Python on `core` with `arguments`."""
    return [qemu, "-L", str(layout.core(core)), str(layout.python), *arguments]


def install_core(qemu: str, layout: Layout, core: Core, cpus: int, runner: Runner) -> str:
    """The core's prefix: links to the Debian root, its cpuinfo and MIDR_EL1; returns what
    the emulated CPU reported (one JSON line)."""
    staging = make_staging_dir(layout.core(core.name))
    try:
        prefix = staging / core.name
        prefix.mkdir()
        for name in ROOT_DIRS:
            (prefix / name).symlink_to(layout.rootfs / name)
        script = prefix / "cpuid.py"  # inside the prefix: a host path under /usr is shadowed
        shutil.copyfile(Path(__file__).with_name("cpuid.py"), script)
        arguments = [str(script), str(prefix), str(cpus), *([core.midr] if core.midr else [])]
        reported = _run(
            runner,
            [qemu, "-L", str(prefix), str(layout.python), *arguments],
            f"the {core.name} core's cpuinfo",
            env=emulated_env(core, layout),
        )
        script.unlink()
        (prefix / "core.json").write_text(
            json.dumps(_core_stamp(core, cpus)) + "\n", encoding="utf-8"
        )
        _replace(prefix, layout.core(core.name))
        return reported.strip()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


CHECK_SCRIPT = (
    "import json, numpy, onnxruntime, openvino, openvino_tokenizers, onnxruntime_extensions, "
    "platform; print(json.dumps({'machine': platform.machine(), 'numpy': numpy.__version__, "
    "'onnxruntime': onnxruntime.__version__, 'openvino': openvino.__version__, "
    "'cpu': openvino.Core().get_property('CPU', 'FULL_DEVICE_NAME')}))"
)


def check(qemu: str, layout: Layout, runner: Runner) -> dict[str, Any]:
    """Import every runtime on the A76; what they report."""
    core = CORES[CHECK_CORE]
    out = _run(
        runner,
        command(qemu, layout, core.name, "-c", CHECK_SCRIPT),
        "importing the runtimes in the emulated Python",
        env=emulated_env(core, layout),
    )
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise PlatformError("the emulated Python printed no runtime versions")
    return json.loads(lines[-1])


def _replace(built: Path, destination: Path) -> None:
    """Rename `built` to `destination`, replacing an older result (set aside, then removed)."""
    if destination.exists() or destination.is_symlink():
        aside = make_staging_dir(destination, "old")
        os.replace(destination, aside / "previous")
        os.rename(built, destination)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.rename(built, destination)


def _make_root(root: Path) -> None:
    """`root` as a directory, or PlatformError (one line) when the file system refuses it (a
    file in its place or above it, a read-only parent)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PlatformError(
            f"cannot create the platform directory {root}: {error.strerror} "
            "(set BERTC_PLATFORM_DIR to a writable directory)"
        ) from error


def install(
    layout: Layout | None = None, log: Log | None = None, runner: Runner = subprocess.run
) -> Layout:
    """Every step not yet done, one line each on `log`; PlatformError (one line) when one fails
    (its staging removed: what was there before stays)."""
    layout = layout or Layout(platform_dir())
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    _check_root(layout.root)
    qemu = find_qemu()
    if qemu is None:
        raise PlatformError(QEMU_HINT)
    versions, cpus = wheel_versions(), cpu_count()
    steps = {step.name: step for step in plan(layout, versions, cpus)}
    say(f"arm64 qemu: {QEMU} {qemu_version(runner, qemu)} ({qemu})")
    _make_root(layout.root)
    if steps["python"].done:
        say(f"arm64 python: already installed ({layout.python})")
    else:
        say(f"arm64 python: {steps['python'].what} (private apt state, dpkg-deb -x) ...")
        install_python(layout, runner)
    if steps["wheels"].done:
        say(f"arm64 wheels: already installed ({layout.site})")
    else:
        say(f"arm64 wheels: {steps['wheels'].what} (pip --platform ..._aarch64) ...")
        install_wheels(layout, versions, runner)
    for name, core in CORES.items():
        if _read_json(layout.core(name) / "core.json") == _core_stamp(core, cpus):
            say(f"arm64 core {name}: already set up")
            continue
        reported = json.loads(install_core(qemu, layout, core, cpus, runner) or "{}")
        say(
            f"arm64 core {name}: QEMU_CPU={core.qemu_cpu}, MIDR {reported.get('midr', '?')}, "
            f"{' '.join(reported.get('features', []))}"
        )
    stamp = expected_stamp(versions, cpus)
    if _read_json(layout.stamp) == stamp:
        say(f"arm64 check: done before ({layout.stamp})")
        return layout
    reported = check(qemu, layout, runner)
    say(
        f"arm64 check: {reported.get('machine')} onnxruntime {reported.get('onnxruntime')}, "
        f"openvino {str(reported.get('openvino', '')).split('-')[0]} ({reported.get('cpu')})"
    )
    staged = layout.root / f".{STAMP}.{os.getpid()}.tmp"
    staged.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(staged, layout.stamp)
    return layout


def ensure_installed(log: Log | None = None) -> tuple[str, Layout]:
    """(qemu path, layout) of a complete installation, installing what is missing first."""
    layout = Layout(platform_dir())
    qemu = find_qemu()
    if qemu is None:
        raise PlatformError(QEMU_HINT)
    if not is_installed(layout):
        install(layout, log)
    return qemu, layout


# ---- running ----

WORKER = Path(__file__).with_name("worker.py")
LOADER = Path(__file__).resolve().parents[1] / "loader.py"


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, what makes the emulator get SIGKILL when bertc dies, even by a SIGKILL that no
    handler sees (its own session keeps it from the terminal's Ctrl-C); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_worker(
    qemu: str, layout: Layout, core: str, request: Path, timeout_s: float
) -> subprocess.CompletedProcess:
    """`worker.py REQUEST` in the emulated Python on `core`. The emulator runs in its own
    session and is killed (and waited for) whenever this returns early: a timeout, Ctrl-C or
    SIGTERM (raised in this thread by the CLI's handler) never leaves it running.
    PlatformError when it cannot start or exceeds `timeout_s`."""
    argv = command(qemu, layout, core, str(request.parent / WORKER.name), str(request))
    try:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=emulated_env(CORES[core], layout),
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    except OSError as error:
        raise PlatformError(f"cannot start the emulator {qemu}: {error.strerror}") from error
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise PlatformError(
            f"the emulated {core} run gave no result within {timeout_s:g} s "
            "(BERTC_PLATFORM_TIMEOUT_S sets the limit; --limit samples fewer examples)"
        ) from error
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def stage_run(layout: Layout) -> Path:
    """A fresh folder for one run's request, results and the worker's files (copied there: a
    folder the emulator does not map into its root), removed by the caller."""
    layout.runs.mkdir(parents=True, exist_ok=True)
    folder = make_staging_dir(layout.runs / "run")
    for source in (WORKER, LOADER):
        shutil.copyfile(source, folder / source.name)
    return folder
