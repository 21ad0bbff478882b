"""Sparse vs dense: bytes, compressed bytes and latency of bert-base-shaped INT8 artifacts.

Builds two seeded bert-base encoders with the config of Intel/bert-base-uncased-sparse-1_2 (one
pruned 1:2 by magnitude, its dense twin not), compiles both for `openvino` and `ort-mobile`, and
prints a Markdown table: model bytes, zlib-6 bytes and `bertc pack` bytes of the model files, and
batch-1 latency (best of interleaved rounds) at SST-2 dev lengths and at 128 tokens. OpenVINO
runs with and without `CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE`, and the table says whether the CPU
plugin actually ran a layer sparse (its performance counters), so no speed-up is claimed that did
not happen.

    python bench/sparse_speed.py [--assets ../shared/assets] [--work /tmp/bertc-sparse-bench]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from bertc.compiler.core.enums import TokenizerMode
from bertc.compiler.packing import pack_bytes
from bertc.compiler.pipeline import CompileOptions, compile_model
from bertc.compiler.training.prune import apply_masks, compute_masks, parse_pattern
from bertc.targets import get_target

BERT_BASE = dict(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    type_vocab_size=2,
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
SPARSE_RATE = 0.5  # decompress layers with at least this fraction of zeros


def make_checkpoint(directory: Path, tokenizer_source: Path, prune: bool, seed: int = 0) -> Path:
    """A seeded bert-base encoder (as BertForMaskedLM, like Intel's), optionally pruned 1:2."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(**BERT_BASE)).eval()
    if prune:
        apply_masks(model, compute_masks(model, parse_pattern("1:2")))
    model.save_pretrained(str(directory), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_source / name).is_file():
            shutil.copyfile(tokenizer_source / name, directory / name)
    return directory


def zlib6_bytes(artifact: Path, files: list[str]) -> int:
    """Each model file compressed with zlib level 6, summed."""
    return sum(len(zlib.compress((artifact / name).read_bytes(), 6)) for name in files)


def packed_bytes(artifact: Path, files: list[str]) -> int:
    """Each model file in bertc's zero-bitmap pack (`bertc pack`), summed."""
    return sum(len(pack_bytes((artifact / name).read_bytes())) for name in files)


def model_files(manifest: dict) -> list[str]:
    runtime = manifest["runtime"]
    return [runtime["model"]] + ([runtime["weights"]] if "weights" in runtime else [])


def latency_ms(run, batches: list[dict[str, np.ndarray]], rounds: int = 2) -> float:
    """Median batch-1 latency over the batches, after one warm-up pass."""
    for batch in batches[:10]:
        run(batch)
    times = []
    for _ in range(rounds):
        for batch in batches:
            start = time.perf_counter()
            run(batch)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def openvino_runner(artifact: Path, manifest: dict, sparse_rate: float | None):
    """The IR compiled with 2 threads; returns (run, names of layers executed sparse)."""
    import openvino

    core = openvino.Core()
    config = dict(manifest["runtime"]["compile_config"], INFERENCE_NUM_THREADS=2, PERF_COUNT=True)
    if sparse_rate is not None:
        config["CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"] = sparse_rate
    compiled = core.compile_model(core.read_model(str(artifact / "model.xml")), "CPU", config)
    request = compiled.create_infer_request()

    def run(batch):
        return request.infer(batch)

    def sparse_layers() -> list[str]:
        return [
            info.node_name
            for info in request.get_profiling_info()
            if "sparse" in info.exec_type.lower()
        ]

    return run, sparse_layers


def ort_runner(artifact: Path, manifest: dict):
    runner = get_target("ort-mobile").load(artifact, manifest, threads=2)
    return runner.run


def inputs_for(tokenizer_dir: Path, sentences: list[str], length: int | None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    batches = []
    for sentence in sentences:
        encoded = tokenizer(
            sentence,
            truncation=True,
            max_length=length or 128,
            padding="max_length" if length else False,
            return_tensors="np",
        )
        batches.append({name: np.asarray(value, dtype=np.int64) for name, value in encoded.items()})
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=Path("../shared/assets"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bertc-sparse-bench"))
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    glue = args.assets / "glue"
    tokenizer_source = args.assets / "models" / "all-MiniLM-L6-v2"  # bert-base-uncased vocab
    with open(glue / "SST-2" / "dev.tsv", encoding="utf-8") as handle:
        sentences = [row[0] for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    sentences = sentences[1 : args.sentences + 1]
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    variants = []  # (model, target, rate, artifact, manifest)
    for model, prune in (("dense", False), ("1:2 sparse", True)):
        checkpoint = make_checkpoint(args.work / f"ckpt-{prune}", tokenizer_source, prune)
        for target in ("openvino", "ort-mobile"):
            artifact = args.work / f"{target}-{prune}"
            # Token ids in (the runners below feed ids), as before the tokenizer became default;
            # static INT8 on both, as logged (ort-mobile's default became dynamic since).
            options = CompileOptions(
                target=target,
                task="sst2",
                data_dir=glue,
                quantization="static",
                calibration_samples=32,
                tokenizer=TokenizerMode.NONE,
            )
            compile_model(str(checkpoint), artifact, options)
            manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
            for rate in [None, SPARSE_RATE] if target == "openvino" else [None]:
                variants.append((model, target, rate, artifact, manifest))
    real = inputs_for(variants[0][3] / "tokenizer", sentences, None)
    fixed = inputs_for(variants[0][3] / "tokenizer", sentences[:30], 128)
    runners = []
    for _, target, rate, artifact, manifest in variants:
        if target == "openvino":
            runners.append(openvino_runner(artifact, manifest, rate))
        else:
            runners.append((ort_runner(artifact, manifest), lambda: []))
    # Interleaved rounds: this VM's speed drifts, so only same-round comparisons are fair.
    timings: list[dict[str, list[float]]] = [{"real": [], "fixed": []} for _ in variants]
    for _ in range(args.rounds):
        for index, (run, _) in enumerate(runners):
            timings[index]["real"].append(latency_ms(run, real, rounds=1))
            timings[index]["fixed"].append(latency_ms(run, fixed, rounds=1))
    rows = []
    for (model, target, rate, artifact, manifest), (_run, sparse_layers), timing in zip(
        variants, runners, timings, strict=True
    ):
        files = model_files(manifest)
        rows.append(
            {
                "model": model,
                "target": target,
                "sparse decompression": "-" if rate is None else f"rate {rate}",
                "layers run sparse": len(sparse_layers()),
                "model bytes": manifest["size"]["model_bytes"],
                "zlib-6 bytes": zlib6_bytes(artifact, files),
                "packed bytes": packed_bytes(artifact, files),
                "b1 real-length ms": round(min(timing["real"]), 2),
                "b1 128-token ms": round(min(timing["fixed"]), 2),
            }
        )
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key in header) + " |")
    dense = {row["target"]: row for row in rows if row["model"] == "dense"}
    for row in rows:
        if row["model"] != "dense" and row["sparse decompression"] == "-":
            twin = dense[row["target"]]
            print(
                f"{row['target']}: sparse/dense twin: zlib-6 "
                f"{row['zlib-6 bytes'] / twin['zlib-6 bytes']:.1%}, packed vs twin zlib-6 "
                f"{row['packed bytes'] / twin['zlib-6 bytes']:.1%}, packed vs twin packed "
                f"{row['packed bytes'] / twin['packed bytes']:.1%}, packed vs twin raw "
                f"{row['packed bytes'] / twin['model bytes']:.1%}"
            )


if __name__ == "__main__":
    main()
