"""Batch-1 latency: the fused (text-in) artifact vs the ids-in artifact plus a HF fast tokenizer.

    python bench/tokenizer_latency.py --pair openvino artifacts/A-fused artifacts/A-ids \
        --pair ort-mobile artifacts/B-fused artifacts/B-ids [--data-dir ../shared/assets/glue]

Every SST-2 dev sentence at batch 1, in one process, with the variants interleaved block by block
(each round runs every variant over the whole dev set, in a rotated order, with a pause between
blocks so ORT's spinning worker threads do not slow the next block). Prints one Markdown table:
median and p90 ms per sentence for each variant, and the fused/ids-in+tokenizer ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PAUSE_S = 0.5


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def fused_variant(artifact: Path, threads: int) -> Callable[[str], object]:
    from bertc.targets.loader import load

    model = load(artifact, threads=threads)
    return lambda text: model.logits([text])


def ids_variants(artifact: Path, threads: int) -> dict[str, Callable[[str], object]]:
    """The ids-in artifact behind transformers' fast tokenizer and behind `tokenizers` itself."""
    from bertc.compiler.core.manifest import read_manifest
    from bertc.targets import get_target
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    manifest = read_manifest(artifact)
    runner = get_target(manifest["target"]).load(artifact, manifest, threads)
    names = runner.input_names
    max_length = int(manifest["model"]["max_sequence_length"])
    hf = AutoTokenizer.from_pretrained(str(artifact / "tokenizer"))
    raw = Tokenizer.from_file(str(artifact / "tokenizer" / "tokenizer.json"))
    raw.enable_truncation(max_length)

    def with_transformers(text: str):
        encoded = hf(text, truncation=True, max_length=max_length, return_tensors="np")
        return runner.run({name: encoded[name] for name in names})

    def with_tokenizers(text: str):
        encoding = raw.encode(text)
        arrays = {
            "input_ids": np.array([encoding.ids], dtype=np.int64),
            "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
        }
        return runner.run({name: arrays[name] for name in names})

    def tokenizer_only(text: str):
        return hf(text, truncation=True, max_length=max_length, return_tensors="np")

    return {
        "ids-in + transformers fast tokenizer": with_transformers,
        "ids-in + tokenizers.Tokenizer": with_tokenizers,
        "(transformers fast tokenizer alone)": tokenizer_only,
    }


def time_block(run: Callable[[str], object], texts: list[str]) -> list[float]:
    for text in texts[:5]:
        run(text)
    times = []
    for text in texts:
        start = time.perf_counter()
        run(text)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", nargs=3, action="append", metavar=("NAME", "FUSED", "IDS"))
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/assets/glue"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    from bertc.calibration import get_task, load_examples

    texts = [e.text_a for e in load_examples(get_task("sst2"), "dev", args.data_dir)]
    texts = texts[: args.limit] if args.limit else texts
    variants: dict[str, Callable[[str], object]] = {}
    for name, fused, ids in args.pair:
        mode = json.loads((Path(fused) / "manifest.json").read_text(encoding="utf-8"))
        label = f"text in ({mode['tokenizer']['mode']})"
        variants[f"{name}: {label}"] = fused_variant(Path(fused), args.threads)
        for label, run in ids_variants(Path(ids), args.threads).items():
            variants[f"{name}: {label}"] = run
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for round_index in range(args.rounds):
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:
            times[name].extend(time_block(variants[name], texts))
            time.sleep(PAUSE_S)
    cpu = os.cpu_count()
    print(
        f"{len(texts)} SST-2 dev sentences x {args.rounds} interleaved rounds, batch 1, "
        f"{args.threads} runtime threads, {cpu} visible CPUs (shared machine: indicative only)\n"
    )
    print("| variant | median ms | p90 ms | text in / (ids-in + transformers tokenizer) |")
    print("|---|---|---|---|")
    for name in variants:
        target = name.split(":")[0]
        baseline = statistics.median(times[f"{target}: ids-in + transformers fast tokenizer"])
        median = statistics.median(times[name])
        ratio = f"{median / baseline:.2f}" if "text in" in name else ""
        print(f"| {name} | {median:.3f} | {_percentile(times[name], 90):.3f} | {ratio} |")


if __name__ == "__main__":
    main()
