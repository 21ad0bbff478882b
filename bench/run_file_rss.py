"""Peak RSS of `bertc run ARTIFACT --file F` as the file grows: it must not grow with the file.

Each run is a fresh `bertc` process; its peak resident set comes from the kernel's accounting of
that one child (`os.wait4`, ru_maxrss in KiB on Linux). The input lines are short seeded
sentences (3 to 8 words of an SST-2-like vocabulary), the same for every artifact.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/run_file_rss.py ART [ART ...] \\
        [--lines 100,10000,100000] [--threads 2] [--work-dir /tmp]

prints a Markdown table: lines, peak RSS MB and seconds per artifact, and the ratio of the
largest file's peak to the smallest's (the target: at most 1.25).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

_VOCABULARY = (
    "a the movie film story cast plot director acting script scene music ending characters "
    "is was feels looks seems remains never always rarely too very quite so not "
    "gorgeous witty dull tedious funny moving clumsy sharp warm cold brilliant flat charming "
    "bland smart silly honest lazy tender bold and but with without of for about"
)
WORDS = tuple(_VOCABULARY.split())


def write_lines(path: Path, count: int, seed: int = 0) -> Path:
    """`count` short sentences, one a line."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(count):
            handle.write(" ".join(rng.choices(WORDS, k=rng.randint(3, 8))) + " .\n")
    return path


def bertc_command() -> list[str]:
    script = Path(sys.executable).with_name("bertc")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bertc.compiler.cli"]


def peak_rss(artifact: Path, inputs: Path, threads: int) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, output lines) of one `bertc run --file` process."""
    command = [*bertc_command(), "run", str(artifact), "--file", str(inputs)]
    command += ["--threads", str(threads)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    lines = sum(1 for _ in process.stdout)  # read as it is printed: the pipe never fills
    error = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not all children's
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {error.strip()}")
    return usage.ru_maxrss / 1024, seconds, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--lines", default="100,10000,100000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args(argv)
    counts = [int(value) for value in args.lines.split(",")]
    files = {
        count: write_lines(args.work_dir / f"run-file-rss-{count}.txt", count) for count in counts
    }
    print("| artifact | lines | peak RSS MB | seconds | lines/s |")
    print("|---|---|---|---|---|")
    summary = []
    for artifact in args.artifacts:
        peaks = {}
        for count in counts:
            rss, seconds, printed = peak_rss(artifact, files[count], args.threads)
            if printed != count:
                raise SystemExit(f"{artifact}: {printed} output lines for {count} input lines")
            peaks[count] = rss
            print(
                f"| {artifact.name} | {count:,} | {rss:.0f} | {seconds:.1f} | "
                f"{count / seconds:.0f} |",
                flush=True,
            )
        ratio = peaks[counts[-1]] / peaks[counts[0]]
        summary.append(
            f"{artifact.name}: peak RSS {counts[-1]:,} / {counts[0]:,} lines = {ratio:.3f}"
        )
    print()
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
