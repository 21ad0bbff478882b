"""The README's accuracy-budget table: every task model × {openvino, ort-mobile}, compiled with
the default budget and verified on the task's dev set.

For each task model in $BERTC_TASK_MODELS (built by bench/task_suite.sh) plus the shared
minilm-l6-sst2, it runs the README's commands

    bertc compile MODEL --target T --task TASK --data-dir GLUE --out ART
    bertc verify ART --task TASK --data-dir GLUE --threads 1 --json

and prints one markdown row per (model, target): fp32 and INT8 dev metric, Δ with its 95%
bootstrap CI, agreement with fp32 (regression: Pearson of INT8 with fp32 predictions), the
search's chosen latency against its all-INT8 candidate (both timed in the same search, on the
build machine), how many nodes the precision map moves off INT8, and the compile's wall time.
Artifacts go to $BERTC_BENCH_OUT (default ~/.cache/bertc/budget-artifacts) and are reused
unless --rebuild.

    python bench/budget_table.py [--rebuild] [--targets openvino,ort-mobile] [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("BERTC_ASSETS", ROOT.parent / "shared" / "assets"))
TASK_MODELS = Path(
    os.environ.get("BERTC_TASK_MODELS", Path.home() / ".cache" / "bertc" / "task-models")
)
OUT = Path(os.environ.get("BERTC_BENCH_OUT", Path.home() / ".cache" / "bertc" / "budget-artifacts"))
BERTC = [str(Path(sys.executable).with_name("bertc"))]


def task_models() -> list[tuple[str, Path, str]]:
    """(name, checkpoint, task) of every task model present, SST-2 first."""
    found = [("minilm-l6-sst2", ASSETS / "models" / "minilm-l6-sst2", "sst2")]
    for directory in sorted(TASK_MODELS.glob("*")):
        config = directory / "config.json"
        if not config.is_file() or not (directory / "model.safetensors").is_file():
            continue
        task = json.loads(config.read_text()).get("finetuning_task")
        if task:
            found.append((directory.name, directory, task))
    return found


def run(command: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    return result, time.perf_counter() - started


def compile_artifact(checkpoint: Path, task: str, target: str, out: Path, rebuild: bool):
    """The artifact (compiled now, or reused) and the compile's wall seconds (None: reused)."""
    if out.is_dir() and (out / "manifest.json").is_file() and not rebuild:
        return out, None
    if out.exists():
        shutil.rmtree(out)
    command = [*BERTC, "compile", str(checkpoint), "--target", target, "--task", task]
    command += ["--data-dir", str(ASSETS / "glue"), "--out", str(out)]
    result, seconds = run(command)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"compile exit {result.returncode}: {tail[0]}")
    return out, seconds


def verify(artifact: Path, task: str) -> dict:
    command = [*BERTC, "verify", str(artifact), "--task", task, "--data-dir", str(ASSETS / "glue")]
    result, _ = run([*command, "--threads", "1", "--json"])
    if result.returncode not in (0, 12):
        tail = result.stderr.strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"verify exit {result.returncode}: {tail[0]}")
    return json.loads(result.stdout)


def search_figures(manifest: dict) -> tuple[str, str]:
    """(latency of the chosen candidate ÷ the all-INT8 one, nodes off INT8), from the search."""
    search = manifest.get("search")
    if not search:
        return "no search", "0"
    candidates = {c["name"]: c for c in search["candidates"]}
    chosen = candidates[search["chosen"]]
    first = search["candidates"][0]
    ratio = chosen["latency_ms"] / first["latency_ms"] if first["latency_ms"] else float("nan")
    marked = "" if search["met"] else " (kept best: budget not met)"
    return f"{ratio:.2f}× ({chosen['latency_ms']:.2f} / {first['latency_ms']:.2f} ms)", (
        f"{len(chosen['precision'])}{marked}"
    )


def row(name: str, task: str, target: str, artifact: Path, seconds: float | None) -> str:
    report = verify(artifact, task)
    manifest = json.loads((artifact / "manifest.json").read_text())
    headline = next(m for m in report["metrics"] if m["name"] == report["headline_metric"])
    agreement = report["agreement"]
    if agreement.get("prediction_pearson") is not None:
        agree = f"Pearson {agreement['prediction_pearson']:.5f}"
    else:
        agree = f"{agreement['rate']:.2%} ({agreement['disagreements']} of {report['examples']})"
    latency, moved = search_figures(manifest)
    wall = "reused" if seconds is None else f"{seconds:.0f} s"
    return (
        f"| {name} | {target} | {headline['name']} {100 * headline['reference']:.2f} | "
        f"{100 * headline['artifact']:.2f} | {headline['delta_points']:+.2f} "
        f"[{headline['ci_low_points']:+.2f}, {headline['ci_high_points']:+.2f}] | {agree} | "
        f"{latency} | {moved} | {wall} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--targets", default="openvino,ort-mobile")
    parser.add_argument("--models", default="", help="comma-separated model names (default: all)")
    args = parser.parse_args()
    wanted = {name for name in args.models.split(",") if name}
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    isa = [f for f in ("avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni") if f" {f}" in flags]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, ISA {', '.join(isa)}")
    print(
        "| model | target | fp32 dev | INT8 dev | Δ points [95% CI] | agreement with fp32 | "
        "latency vs all-INT8 (search) | nodes off INT8 | compile |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, checkpoint, task in task_models():
        if wanted and name not in wanted:
            continue
        for target in args.targets.split(","):
            out = OUT / f"{name}-{target}"
            try:
                artifact, seconds = compile_artifact(checkpoint, task, target, out, args.rebuild)
                print(row(name, task, target, artifact, seconds), flush=True)
            except (RuntimeError, json.JSONDecodeError, KeyError) as error:
                print(f"| {name} | {target} | {error} |||||||", flush=True)


if __name__ == "__main__":
    main()
