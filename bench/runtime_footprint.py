"""What an app pays to run a bertc artifact: install size, cold start and peak RSS, runtime only.

    python bench/runtime_footprint.py openvino artifacts/minilm-l6-sst2-openvino \
        ort-mobile artifacts/minilm-l6-sst2-ort-mobile [--runs 3] [--json]

For each runtime it builds a fresh virtual environment holding only that runtime's packages and
numpy (pip, from the configured registry), vendors `targets/loader.py` as `bertc_runtime.py`
beside `examples/classify.py`, and runs the example as a new process: wall time from process start
to the printed label (cold start: interpreter, imports, model load and compile, one inference)
and the process's peak RSS (`os.wait4`'s ru_maxrss). Install size is the environment's
site-packages on disk, pip and setuptools excluded. The same artifact through `bertc run`
(bertc's own environment, the interpreter running this script) is timed the same way, and the
ratio to the runtime-only app is the last column (issue: `bertc run` <= 1.5x the app's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    # tokenizers: an ids-in artifact tokenizes with its shipped tokenizer.json.
    "openvino": ["openvino==2026.4.1.*", "openvino-tokenizers==2026.4.1.*", "numpy", "tokenizers"],
    "onnxruntime": ["onnxruntime==1.32.*", "onnxruntime-extensions==0.15.2", "numpy", "tokenizers"],
}
TARGET_RUNTIME = {"openvino": "openvino", "ort-mobile": "onnxruntime", "onnx": "onnxruntime"}
SENTENCE = "a gorgeous, witty, seductive movie."


def build_env(runtime: str, root: Path) -> Path:
    env = root / f"venv-{runtime}"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run(
        [str(env / "bin" / "pip"), "install", "-q", *PACKAGES[runtime]],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env


def site_packages_bytes(env: Path) -> int:
    (site,) = env.glob("lib/python*/site-packages")
    skip = ("pip", "setuptools", "_distutils_hack", "distutils-precedence.pth")
    total = 0
    for entry in site.iterdir():
        if entry.name.startswith(skip):
            continue
        paths = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        total += sum(path.stat().st_size for path in paths)
    return total


def installed(env: Path) -> list[str]:
    done = subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if not line.startswith(("pip=", "setup"))]


def cold_start(env: Path, app: Path, artifact: Path) -> tuple[float, int, str]:
    """The runtime-only app: seconds from spawn to exit, peak RSS in bytes, what it printed."""
    return timed(
        [str(env / "bin" / "python"), str(app / "classify.py"), str(artifact), SENTENCE], app
    )


def bertc_run_cold_start(artifact: Path) -> tuple[float, int, str]:
    """`bertc run ARTIFACT SENTENCE` in bertc's environment, timed like the app."""
    bertc = Path(sys.executable).with_name("bertc")
    return timed([str(bertc), "run", str(artifact), SENTENCE], REPO)


def timed(command: list[str], cwd: Path) -> tuple[float, int, str]:
    """Seconds from spawn to exit, peak RSS in bytes, and what the process printed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    output = process.stdout.read().decode().strip()
    error = process.stderr.read().decode().strip()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:2]} failed: {error[-500:]}")
    return seconds, usage.ru_maxrss * 1024, output


def measure(target: str, artifact: Path, root: Path, runs: int) -> dict:
    runtime = TARGET_RUNTIME[target]
    env = build_env(runtime, root)
    app = root / f"app-{runtime}"
    app.mkdir()
    shutil.copyfile(REPO / "targets" / "loader.py", app / "bertc_runtime.py")
    shutil.copyfile(REPO / "examples" / "classify.py", app / "classify.py")
    cold_start(env, app, artifact.resolve())  # first runs also fill the OS page cache
    bertc_run_cold_start(artifact.resolve())
    results, bertc_results = [], []
    for _ in range(runs):  # interleaved, so a slow spell of the machine hits both
        results.append(cold_start(env, app, artifact.resolve()))
        bertc_results.append(bertc_run_cold_start(artifact.resolve()))
    bertc_median = statistics.median(s for s, _, _ in bertc_results)
    return {
        "target": target,
        "artifact": str(artifact),
        "packages": installed(env),
        "install_bytes": site_packages_bytes(env),
        "cold_start_s": [round(seconds, 3) for seconds, _, _ in results],
        "cold_start_median_s": round(statistics.median(s for s, _, _ in results), 3),
        "peak_rss_bytes": max(rss for _, rss, _ in results),
        "output": results[-1][2],
        "bertc_run_s": [round(seconds, 3) for seconds, _, _ in bertc_results],
        "bertc_run_median_s": round(bertc_median, 3),
        "bertc_run_peak_rss_bytes": max(rss for _, rss, _ in bertc_results),
        "bertc_run_output": bertc_results[-1][2],
        "bertc_run_to_app": round(bertc_median / statistics.median(s for s, _, _ in results), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="TARGET ARTIFACT [TARGET ARTIFACT ...]")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give TARGET ARTIFACT pairs")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bertc-runtime-env-") as temporary:
        for target, artifact in zip(args.pairs[::2], args.pairs[1::2], strict=True):
            rows.append(measure(target, Path(artifact), Path(temporary), args.runs))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"sentence: {SENTENCE!r}\n")
    print(
        "| target | packages | install (site-packages) | app cold start (median) | app peak RSS "
        "| printed | `bertc run` cold start | `bertc run` peak RSS | printed | bertc run / app |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['target']} | {', '.join(row['packages'])} | "
            f"{row['install_bytes'] / 2**20:.0f} MiB | {row['cold_start_median_s']:.2f} s "
            f"({', '.join(map(str, row['cold_start_s']))}) | "
            f"{row['peak_rss_bytes'] / 2**20:.0f} MiB | {row['output']} | "
            f"{row['bertc_run_median_s']:.2f} s ({', '.join(map(str, row['bertc_run_s']))}) | "
            f"{row['bertc_run_peak_rss_bytes'] / 2**20:.0f} MiB | "
            f"{row['bertc_run_output'].replace(chr(9), ' ')} | {row['bertc_run_to_app']:.2f}x |"
        )


if __name__ == "__main__":
    main()
