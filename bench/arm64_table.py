"""The README's ARM64 table: MiniLM-L6 SST-2, both targets, on four emulated ARM64 cores
(QEMU user mode) against the x86 run of the same artifact and against fp32 PyTorch.

For each target it runs the README's commands

    bertc compile MODEL --task sst2 --data-dir GLUE --target T --out ART --max-drop none
    bertc verify ART --data-dir GLUE --platform arm64 --limit 50 --json

(the compile only when ART is not there; `bertc verify` installs the emulated platform on first
use) and prints one Markdown row per core and way (ort; OpenVINO through bertc's loader on
static shapes, and as the README's app loads it on dynamic shapes), then each target's gate
line. Emulated wall times are a note, never a latency (30-700x slower than a real core).

    python bench/arm64_table.py [--limit 50] [--platform arm64] [--out DIR] [--targets ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("BERTC_ASSETS", ROOT.parent / "shared" / "assets"))
OUT = Path(os.environ.get("BERTC_BENCH_OUT", Path.home() / ".cache" / "bertc" / "arm64-artifacts"))
BERTC = [str(Path(sys.executable).with_name("bertc"))]
CORES = {
    "host": "x86-64 (this machine)",
    "a55": "Cortex-A55 (dot product)",
    "a72": "Cortex-A72 (NEON only)",
    "a76": "Cortex-A76 (dot product, fp16)",
    "v9": "ARMv9 (SVE2, i8mm)",
}
HEADER = (
    "| core | target | way | agreement vs x86 | max / mean \\|Δ logit\\| vs x86 "
    "| agreement vs fp32 | max \\|Δ\\| vs fp32 | wall s (emulated, not latency) |"
)


def compile_artifact(target: str, out: Path) -> None:
    model, glue = ASSETS / "models" / "minilm-l6-sst2", ASSETS / "glue"
    command = [*BERTC, "compile", str(model), "--task", "sst2", "--data-dir", str(glue)]
    command += ["--target", target, "--out", str(out), "--max-drop", "none"]
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def verify(artifact: Path, platform: str, limit: int) -> tuple[dict, int, float]:
    command = [*BERTC, "verify", str(artifact), "--data-dir", str(ASSETS / "glue")]
    command += ["--platform", platform, "--limit", str(limit), "--json"]
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 12):  # 12: a gate failed, the report is still printed
        sys.exit(f"verify {artifact} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout), done.returncode, seconds


def share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


def rows(report: dict, target: str) -> list[str]:
    lines = []
    for row in report["platform"]["rows"]:
        host = row["core"] == "host"
        errors = "—" if host else f"{row['max_abs_x86']:.4f} / {row['mean_abs_x86']:.4f}"
        verdict = "" if row["passed"] else " **(fail)**"
        wall = "—" if host else f"{row['seconds']:.0f}"
        lines.append(
            f"| {CORES.get(row['core'], row['core'])} | {target} | {row['way']}{verdict} | "
            f"{share(row['agreement_x86'])} | {errors} | {share(row['agreement_fp32'])} | "
            f"{row['max_abs_fp32']:.4f} | {wall} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--platform", default="arm64")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--targets", default="ort-mobile,openvino")
    args = parser.parse_args()
    table, gates = [HEADER, "|" + "---|" * 8], []
    for target in args.targets.split(","):
        artifact = args.out / f"sst2-{target}"
        if not (artifact / "manifest.json").is_file():
            compile_artifact(target, artifact)
        report, code, seconds = verify(artifact, args.platform, args.limit)
        table += rows(report, target)
        check = report["platform"]
        gates.append(
            f"- {target}: {check['message']} (exit {code}; {check['examples']} of "
            f"{check['split_examples']} dev sentences, seed {check['sample_seed']}; "
            f"verify took {seconds:.0f} s)"
        )
        print(f"{target}: done in {seconds:.0f} s (exit {code})", file=sys.stderr, flush=True)
    emulator = report["platform"]["emulator"].split(",")[0]
    versions = ", ".join(
        f"{k} {v}" for k, v in sorted(report["platform"]["runtime_versions"].items())
    )
    print("\n".join(table))
    print(f"\n{emulator}; aarch64 wheels: {versions}.\n")
    print("\n".join(gates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
