"""What keeping layers fp32 buys on dev, and what it costs: every candidate of the ONNX Runtime
accuracy-budget search on the task's whole dev split.

The search (targets/ort/search.py) stops at the first candidate that meets the budget on the
held-out train slice. Here no candidate is let meet it (`Candidate.meets` answers False), so the
climb runs to its end (all INT8, then the 1, 2, 3, 4, 6, 8, 12 most sensitive weight nodes
fp32), and each candidate graph is kept and then run on every dev example at batch 1 (one
thread) against fp32 PyTorch on the same token ids. One markdown row per candidate: dev
agreement with fp32 and flips, max / 99th-percentile |logit error|, the candidate's slice
figures as the search measured them, and its dev batch-1 median latency (ms; compare rows of
one run only, as ratios).

    python bench/budget_climb.py MODEL TASK [--target ort-mobile] [--quantization dynamic]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("BERTC_ASSETS", ROOT.parent / "shared" / "assets"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("task")
    parser.add_argument("--target", default="ort-mobile", choices=["ort-mobile", "onnx"])
    parser.add_argument("--quantization", default=None, choices=["static", "dynamic"])
    args = parser.parse_args()

    import bertc.targets.ort.search as ort_search
    import onnxruntime as ort
    from bertc.calibration.readers import read_glue_tsv
    from bertc.calibration.tasks import get_task
    from bertc.compiler.core import budget
    from bertc.compiler.options import CompileOptions
    from bertc.compiler.pipeline import compile_model
    from bertc.compiler.verify.inputs import encode, load_tokenizer
    from bertc.compiler.verify.reference import load_reference, run_reference

    glue = ASSETS / "glue"
    work = Path(tempfile.mkdtemp(prefix="bertc-climb-"))
    kept = work / "candidates"
    kept.mkdir()
    budget.Candidate.meets = lambda self, wanted: False  # the climb runs to its end
    write = ort_search._write

    def keep_candidate(plan, path, fp32, only):  # type: ignore[no-untyped-def]
        write(plan, path, fp32, only)
        if only is None:  # a candidate, not a one-node sensitivity trial
            shutil.copyfile(path, kept / f"k{len(fp32):02d}.onnx")

    ort_search._write = keep_candidate
    options = CompileOptions(
        target=args.target,
        task=args.task,
        data_dir=glue,
        quantization=args.quantization,
        keep_best=True,
    )
    started = time.perf_counter()
    compile_model(args.model, work / "artifact", options)
    compile_s = time.perf_counter() - started
    manifest = json.loads((work / "artifact" / "manifest.json").read_text())
    slice_figures = {c["name"]: c["figures"] for c in manifest["search"]["candidates"]}

    examples = read_glue_tsv(get_task(args.task), glue, "dev")
    tokenizer = load_tokenizer(work / "artifact", manifest)
    names = tuple(manifest["model"]["inputs"])
    length = int(manifest["model"]["max_sequence_length"])
    singles = [encode(tokenizer, [example], length, names) for example in examples]
    loaded, _ = load_reference(manifest, None, False)
    reference = run_reference(loaded, singles)

    flags = sorted(
        f
        for f in ("avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni")
        if f in Path("/proc/cpuinfo").read_text()
    )
    print(
        f"{args.model} {args.task} {args.target} ({manifest['quantization_choice']}); "
        f"{platform.machine()}, {os.cpu_count()} cores, {', '.join(flags)}; "
        f"compile with the full climb {compile_s:.0f} s; {len(examples)} dev examples"
    )
    print(
        "| fp32 nodes | dev agreement | flips | max err | p99 err | slice agreement | "
        "slice max err | dev b1 median ms | ÷ all INT8 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = 1
    base_ms = None
    for path in sorted(kept.glob("k*.onnx")):
        session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
        inputs = [item.name for item in session.get_inputs()]
        logits, seconds = [], []
        for single in singles:
            feed = {name: single[name] for name in inputs}
            start = time.perf_counter()
            output = session.run(None, feed)[0]
            seconds.append(time.perf_counter() - start)
            logits.append(np.asarray(output, dtype=np.float64).reshape(1, -1))
        got = np.concatenate(logits)
        error = np.abs(got - reference).max(axis=1)
        flips = int((got.argmax(1) != reference.argmax(1)).sum())
        count = int(path.stem[1:])
        figures = slice_figures["all INT8" if count == 0 else f"{count} most sensitive fp32"]
        median_ms = float(np.median(seconds) * 1e3)
        base_ms = base_ms or median_ms
        print(
            f"| {count} | {1 - flips / len(examples):.2%} | {flips} | {error.max():.3f} | "
            f"{np.percentile(error, 99):.3f} | {figures['agreement']:.2%} | "
            f"{figures['max_abs_error']:.3f} | {median_ms:.2f} | {median_ms / base_ms:.2f}× |",
            flush=True,
        )
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
