"""Latency vs accuracy scatter from compare.py's results.json (run in the peers' environment).

bench/.venv-peers/bin/python bench/plot.py bench/results/results.json out.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {
    "pytorch": "black",
    "optimum": "tab:orange",
    "optimum-intel": "tab:blue",
    "bertc": "tab:green",
}


def main() -> None:
    results = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, variant in enumerate(results["variants"]):
        axis.scatter(
            variant["real_median_ms"],
            100 * variant["agreement"],
            color=COLOURS.get(variant["family"], "grey"),
            s=40,
        )
        axis.annotate(
            variant["name"],
            (variant["real_median_ms"], 100 * variant["agreement"]),
            textcoords="offset points",
            xytext=(5, 4 if index % 2 == 0 else -11),
            fontsize=8,
        )
    context = results["context"]
    axis.set_xlabel(f"batch-1 median latency at real lengths, ms ({context['threads']} threads)")
    axis.set_ylabel("agreement with fp32 PyTorch, %")
    axis.set_title(f"MiniLM-L6 {context['task'].upper()} dev: latency vs agreement")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(sys.argv[2], dpi=120)


if __name__ == "__main__":
    main()
