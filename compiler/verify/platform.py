"""`verify --platform arm64[:CORE,...]`: the artifact on its runtime's aarch64 build, under QEMU
user-mode emulation, against the x86 run of the same artifact and against fp32 PyTorch.

A seeded sample of the split (`--limit`, default DEFAULT_LIMIT; emulation is 30-700x slower
than native) is encoded here (token ids with the artifact's own tokenizer, as verify feeds it;
raw text for an artifact with its tokenizer inside), run on this machine and on each emulated
core the ways an app runs it (`bertc.targets.platforms.worker.WAYS`: ONNX Runtime; OpenVINO
through bertc's loader on static shapes and as the README's app loads it, on dynamic shapes),
and compared. The gate: on every emulated row, max |logit difference| vs x86 at most
`max_error` and agreement with x86 at least `min_agreement`.
"""

from __future__ import annotations

import json
import math
import os
import platform as host_platform
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from bertc.compiler.core.errors import ArtifactError, PlatformError, UsageError
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.verify.model import HOST_CORE, PlatformCheck, PlatformRow
from bertc.compiler.verify.reference import compared_output_index

if TYPE_CHECKING:
    from bertc.calibration import Example, GlueTask

DEFAULT_LIMIT = 50
DEFAULT_MAX_ERROR = 0.05
DEFAULT_MIN_AGREEMENT = 0.995
# Seconds an emulated core may take: a floor for start-up and loading, then per example and way.
TIMEOUT_ENV = "BERTC_PLATFORM_TIMEOUT_S"
TIMEOUT_BASE_S = 600.0
TIMEOUT_PER_RUN_S = 20.0
# How many failing rows the gate's one line names.
NAMED_FAILURES = 3


@dataclass(frozen=True)
class PlatformOptions:
    """What `--platform` asked for: the cores, the sample and the gate."""

    cores: tuple[str, ...]
    limit: int | None = DEFAULT_LIMIT
    seed: int = 0
    max_error: float = DEFAULT_MAX_ERROR
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    platform: str = "arm64"


def parse_platform(spec: str) -> tuple[str, ...]:
    """`arm64` (every core), `arm64:a76`, or several, comma-separated (`arm64:a55,a76` or
    `arm64:a55,arm64:v9`): the emulated cores in the table's order. UsageError otherwise."""
    from bertc.targets.platforms.arm64 import CORES, PLATFORM

    chosen: set[str] = set()
    items = [item.strip().lower() for item in spec.split(",")]
    for item in items:
        name, _, core = item.partition(":")
        if item == PLATFORM:
            chosen.update(CORES)
        elif name == PLATFORM and core in CORES:
            chosen.add(core)
        elif item in CORES:  # a bare core name after `arm64:...,`
            chosen.add(item)
        else:
            raise UsageError(
                f"--platform must be {PLATFORM} or {PLATFORM}:CORE (cores: "
                f"{', '.join(CORES)}; several comma-separated), got {spec!r}"
            )
    return tuple(core for core in CORES if core in chosen)


def sample_indices(count: int, limit: int | None, seed: int) -> np.ndarray:
    """`limit` of `count` example indices drawn without replacement with `seed`, in file order;
    all of them when `limit` is None or not smaller."""
    if limit is None or limit >= count:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=limit, replace=False))


def _agreement(first: np.ndarray | None, second: np.ndarray | None) -> float | None:
    if first is None or second is None:
        return None
    return float(np.mean(first == second))


def platform_row(
    core: str,
    way: str,
    logits: np.ndarray,
    x86_logits: np.ndarray | None,
    fp32_logits: np.ndarray,
    classes: Callable[[np.ndarray], np.ndarray] | None,
    seconds: float,
    gate: tuple[float, float],
    platform: str = "arm64",
) -> PlatformRow:
    """One row: `logits` (examples, outputs) against x86's (None: this is the x86 row) and
    fp32's. `classes` maps logits to class ids (None: scores or embeddings, no agreement).
    `gate` is (max error, min agreement) vs x86; an x86 row always passes."""
    predicted = classes(logits) if classes else None
    fp32_predicted = classes(fp32_logits) if classes else None
    agreement_x86 = max_x86 = mean_x86 = None
    passed = True
    if x86_logits is not None:
        difference = np.abs(logits - x86_logits)
        max_x86, mean_x86 = float(difference.max()), float(difference.mean())
        agreement_x86 = _agreement(predicted, classes(x86_logits) if classes else None)
        max_error, min_agreement = gate
        passed = not (max_x86 > max_error or math.isnan(max_x86)) and (
            agreement_x86 is None or agreement_x86 >= min_agreement
        )
    return PlatformRow(
        platform=platform,
        core=core,
        way=way,
        examples=int(logits.shape[0]),
        agreement_x86=agreement_x86,
        max_abs_x86=max_x86,
        mean_abs_x86=mean_x86,
        agreement_fp32=_agreement(predicted, fp32_predicted),
        max_abs_fp32=float(np.abs(logits - fp32_logits).max()),
        seconds=float(seconds),
        passed=passed,
    )


def failed_row(
    core: str, way: str, examples: int, error: str, seconds: float, platform: str = "arm64"
) -> PlatformRow:
    """The row of a way whose runtime failed on the emulated core: no figures, a fail."""
    return PlatformRow(
        platform=platform,
        core=core,
        way=way,
        examples=examples,
        agreement_x86=None,
        max_abs_x86=None,
        mean_abs_x86=None,
        agreement_fp32=None,
        max_abs_fp32=None,
        seconds=float(seconds),
        passed=False,
        error=error,
    )


def _failure(row: PlatformRow) -> str:
    if row.error is not None:
        return f"{row.platform} {row.core} {row.way}: the runtime failed ({row.error})"
    agreement = "" if row.agreement_x86 is None else f", agreement {row.agreement_x86:.2%}"
    return f"{row.platform} {row.core} {row.way}: max |Δ logit| {row.max_abs_x86:.3g}{agreement}"


def gate_message(
    rows: Sequence[PlatformRow], max_error: float, min_agreement: float
) -> tuple[bool, str]:
    """(passed, one line) over the emulated rows."""
    failed = [row for row in rows if row.core != HOST_CORE and not row.passed]
    limits = f"--platform-max-error {max_error:g}, --platform-min-agreement {min_agreement:g}"
    emulated = [row for row in rows if row.core != HOST_CORE]
    if not failed:
        worst = max((row.max_abs_x86 or 0.0 for row in emulated), default=0.0)
        return True, (
            f"platform gate passed: {len(emulated)} emulated run{'s' * (len(emulated) != 1)} "
            f"within {limits} of x86 "
            f"(largest logit difference {worst:.3g})"
        )
    named = "; ".join(_failure(row) for row in failed[:NAMED_FAILURES])
    more = f" (+{len(failed) - NAMED_FAILURES} more)" if len(failed) > NAMED_FAILURES else ""
    return False, f"platform gate failed vs x86 ({limits}): {named}{more}"


def worker_examples(
    artifact_dir: Path,
    manifest: Mapping[str, Any],
    examples: Sequence[Example],
) -> list[dict[str, Any]]:
    """The sampled examples as the worker takes them: token ids from the artifact's tokenizer
    (lists of ints per input name), or raw text where the tokenizer is in the artifact."""
    from bertc.compiler.verify.inputs import encode, load_tokenizer, takes_strings

    if takes_strings(manifest):
        return [{"text": example.text_a, "pair": example.text_b} for example in examples]
    tokenizer = load_tokenizer(artifact_dir, manifest)
    names = tuple(manifest["model"]["inputs"])
    length = int(manifest["model"]["max_sequence_length"])
    encoded = [encode(tokenizer, [example], length, names) for example in examples]
    return [{name: arrays[name][0].tolist() for name in names} for arrays in encoded]


def _timeout(runs: int) -> float:
    configured = os.environ.get(TIMEOUT_ENV)
    if configured:
        try:
            value = float(configured)
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {configured!r}")
        return value
    return TIMEOUT_BASE_S + TIMEOUT_PER_RUN_S * runs


def _emulated_artifact(artifact_dir: Path, folder: Path) -> Path:
    """The artifact as the emulator can reach it: a path under /usr, /etc, ... resolves inside
    the emulated root first, so such an artifact is copied into the run's folder."""
    from bertc.targets.platforms.arm64 import ROOT_DIRS

    resolved = artifact_dir.resolve()
    if resolved.parts[1:2] and resolved.parts[1] in ROOT_DIRS:
        return Path(shutil.copytree(resolved, folder / "artifact"))
    return resolved


def _crash(core: str, returncode: int, stderr: str) -> PlatformError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = f": {lines[-1]}" if lines else ""
    if returncode < 0:
        how = f"was killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exited with status {returncode}"
    return PlatformError(f"the emulated arm64 {core} run {how}{last}")


def _read_results(path: Path, ways: Sequence[str], core: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            results = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, KeyError) as error:
        raise PlatformError(f"the emulated arm64 {core} run wrote no readable results") from error
    missing = [way for way in ways if way not in results and f"error:{way}" not in results]
    if missing:
        raise PlatformError(f"the emulated arm64 {core} run has no results for {missing}")
    return results


def run_emulated(
    qemu: str, layout: Any, core: str, folder: Path, request: dict[str, Any], timeout_s: float
) -> dict[str, np.ndarray]:
    """The worker on one emulated core; PlatformError (one line) on a crash, timeout or a
    runtime failure inside."""
    from bertc.targets.platforms.arm64 import run_worker
    from bertc.targets.platforms.worker import RUNTIME_FAILED_EXIT

    out = folder / f"{core}.npz"
    path = folder / f"{core}.json"
    path.write_text(json.dumps({**request, "out": str(out)}), encoding="utf-8")
    done = run_worker(qemu, layout, core, path, timeout_s)
    if done.returncode == RUNTIME_FAILED_EXIT:  # the worker could not start its work at all
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else "no message"
        raise PlatformError(f"on the emulated arm64 {core}: {reason}")
    if done.returncode != 0:
        raise _crash(core, done.returncode, done.stderr)
    return _read_results(out, request["ways"], core)


def run_host(request: dict[str, Any]) -> dict[str, np.ndarray]:
    """The same ways on this machine, in this process; ArtifactError (11) on a runtime failure."""
    from bertc.targets.platforms.worker import RuntimeImportError, WorkerError, run_request

    try:
        return run_request(request)
    except (WorkerError, RuntimeImportError) as error:
        raise ArtifactError(f"on this machine: {error}") from error


@dataclass(frozen=True)
class _Comparison:
    """How a way's logits become a row: the artifact's columns in task order, the class ids
    (None: regression or embeddings), fp32 on the sample, and the gate."""

    columns: list[int] | None
    classes: Callable[[np.ndarray], np.ndarray] | None
    fp32: np.ndarray
    gate: tuple[float, float]

    def ordered(self, logits: np.ndarray) -> np.ndarray:
        return logits if self.columns is None else logits[:, self.columns]

    def rows(
        self,
        core: str,
        results: Mapping[str, np.ndarray],
        host: Mapping[str, np.ndarray] | None,
        ways: Sequence[str],
        platform: str,
    ) -> list[PlatformRow]:
        """One row per way of `results` (`host` None: these are the x86 rows)."""
        made = []
        for way in ways:
            seconds = float(results[f"seconds:{way}"][0])
            if f"error:{way}" in results:
                error = str(results[f"error:{way}"][0])
                made.append(failed_row(core, way, len(self.fp32), error, seconds, platform))
                continue
            x86 = None if host is None else self.ordered(host[way])
            logits = self.ordered(results[way])
            made.append(
                platform_row(
                    core, way, logits, x86, self.fp32, self.classes, seconds, self.gate, platform
                )
            )
        return made


def check_runtime(manifest: Mapping[str, Any]) -> list[str]:
    """The ways the artifact's runtime runs in; UsageError for a runtime without an aarch64
    build here (checked before verify's dev run)."""
    from bertc.targets.platforms.worker import WAYS

    runtime = manifest["runtime"]["name"]
    if runtime not in WAYS:
        raise UsageError(f"--platform runs {' and '.join(WAYS)} artifacts, not {runtime}")
    return list(WAYS[runtime])


def check_platform(
    artifact_dir: Path,
    manifest: Mapping[str, Any],
    task: GlueTask,
    examples: Sequence[Example],
    fp32_logits: np.ndarray,
    artifact_columns: Sequence[int] | None,
    options: PlatformOptions,
    threads: int | None = None,
    progress: Progress = silent,
) -> PlatformCheck:
    """Run and compare (see the module's docstring). `fp32_logits` are the reference's on all
    `examples`, in the task's label order; `artifact_columns` put the artifact's outputs in
    that order (None: as they are, and no classes: an encoder). Installs the platform first
    when it is not there.

    Raises UsageError for a runtime with no emulated build, PlatformError (19) when the
    platform cannot be installed or an emulated run crashes or times out, ArtifactError (11)
    when the runtime fails on this machine. A way whose runtime fails on an emulated core is
    a failed row (`PlatformRow.error`), not an exception."""
    from bertc.calibration.metrics import predictions_from_logits
    from bertc.targets.platforms import arm64

    ways = check_runtime(manifest)
    indices = sample_indices(len(examples), options.limit, options.seed)
    sampled = [examples[int(index)] for index in indices]
    qemu, layout = prepare(progress)
    scores_only = task.is_regression or artifact_columns is None  # regression, an encoder
    comparison = _Comparison(
        columns=None if artifact_columns is None else list(artifact_columns),
        classes=None if scores_only else (lambda logits: predictions_from_logits(task, logits)),
        fp32=np.asarray(fp32_logits)[indices],
        gate=(options.max_error, options.min_agreement),
    )
    request = {
        "ways": ways,
        "threads": threads,
        "output": compared_output_index(manifest["model"]["outputs"]),
        "examples": worker_examples(artifact_dir, manifest, sampled),
    }
    folder = arm64.stage_run(layout)
    try:
        request["artifact"] = str(_emulated_artifact(artifact_dir, folder))
        machine = host_platform.machine()
        progress(f"{machine}: the same {len(sampled)} examples, {', '.join(ways)}")
        host = run_host({**request, "loader": str(arm64.LOADER)})
        rows = comparison.rows(HOST_CORE, host, None, ways, machine)
        emulated = {**request, "loader": str(folder / arm64.LOADER.name)}
        timeout = _timeout(len(sampled) * len(ways))
        for core in options.cores:
            progress(f"arm64 {core}: {len(sampled)} examples, {', '.join(ways)} (emulated)")
            results = run_emulated(qemu, layout, core, folder, emulated, timeout)
            rows += comparison.rows(core, results, host, ways, options.platform)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    passed, message = gate_message(rows, options.max_error, options.min_agreement)
    versions = emulated_versions(layout)
    return PlatformCheck(
        platform=options.platform,
        cores=tuple(options.cores),
        examples=len(sampled),
        split_examples=len(examples),
        sample_seed=options.seed,
        max_error=options.max_error,
        min_agreement=options.min_agreement,
        rows=tuple(rows),
        passed=passed,
        message=message,
        emulator=emulator_description(qemu, layout),
        runtime_versions=versions,
        notes=platform_notes(manifest, versions, len(sampled), len(examples))
        + tuple(_failure(row) for row in rows if row.error is not None),
    )


def prepare(progress: Progress = silent) -> tuple[str, Any]:
    """(emulator, layout) of the installed platform, installing it first (its step lines go to
    `progress`); PlatformError (19) when it cannot be. Verify calls this before anything heavy,
    so a missing emulator costs no dev-set run."""
    from bertc.targets.platforms import arm64

    return arm64.ensure_installed(lambda line: progress(line))


def emulator_description(qemu: str, layout: Any) -> str:
    from bertc.targets.platforms.arm64 import qemu_version

    try:
        version = qemu_version(subprocess.run, qemu)
    except PlatformError:
        version = "unknown"
    return f"qemu-aarch64-static {version} (user mode), aarch64 Python at {layout.root}"


def emulated_versions(layout: Any) -> dict[str, str]:
    """The aarch64 wheels' versions, from the installation's stamp."""
    try:
        stamp = json.loads(layout.stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return dict(stamp.get("wheels", {}))


def platform_notes(
    manifest: Mapping[str, Any], versions: Mapping[str, str], sampled: int, total: int
) -> tuple[str, ...]:
    """How to read the platform rows: the sample, the timings, a runtime version that differs."""
    notes = [
        f"emulated with QEMU user mode: {sampled} of {total} examples; wall times include "
        "loading and emulation (30-700x slower than a real core): never a latency",
    ]
    runtime = manifest["runtime"]
    built = str(runtime.get("version", ""))
    emulated = versions.get(runtime["name"])
    if emulated and built and built.split("-")[0] != emulated.split("-")[0]:
        notes.append(
            f"the artifact was built with {runtime['name']} {built}; the emulated build is "
            f"{emulated}"
        )
    return tuple(notes)
