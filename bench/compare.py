"""bertc next to PyTorch, Optimum (ONNX Runtime) and optimum-intel (OpenVINO + NNCF), in one run.

    .venv/bin/python bench/compare.py            # MiniLM-L6 SST-2, 2 threads, writes bench/results/

Builds the peers' artifacts in their own virtual environment (bench/.venv-peers, made on first
use: they pin transformers<5), compiles bertc's artifacts with the `bertc` CLI, then measures
every variant in this one process with the variants interleaved: task metric, delta and
prediction agreement with fp32 PyTorch on the whole dev set, model bytes, batch-1 latency at
real lengths (median, p90) and at 128 tokens, batch-32 throughput; then cold load and peak RSS
in a fresh process per variant, and the runtime's own GEMM peak (bench/roofline.py). Writes
results.md, results.json and latency_vs_accuracy.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS_VENV = BENCH / ".venv-peers"
PEERS_REQUIREMENTS = BENCH / "peers-requirements.txt"
# bertc's artifacts: a name for the table, and the `bertc compile` flags that make it (each
# target's default mode, and ort-mobile's other one: static QDQ, for mobile providers).
BERTC_BUILDS: Mapping[str, tuple[str, ...]] = {
    "openvino": ("--target", "openvino"),
    "ort-mobile": ("--target", "ort-mobile"),
    "ort-mobile static": ("--target", "ort-mobile", "--quantization", "static"),
    "onnx": ("--target", "onnx"),
}
FIXED_LENGTH = 128
THROUGHPUT_BATCH = 32
ROUNDS_PAUSE_S = 0.3  # ORT's worker threads spin after a call; let them stop between blocks

Runner = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass
class Variant:
    """One model as its users would run it, and what was measured on it."""

    name: str
    family: str  # pytorch / optimum / optimum-intel / bertc
    runtime: str
    path: str
    recipe: str
    model_bytes: int = 0
    precision: str = ""
    note: str = ""
    metric: float = float("nan")
    delta_points: float = float("nan")
    agreement: float = float("nan")
    real_median_ms: float = float("nan")
    real_p90_ms: float = float("nan")
    fixed_median_ms: float = float("nan")
    throughput_per_s: float = float("nan")
    cold_load_s: float = float("nan")
    first_inference_ms: float = float("nan")
    peak_rss_mb: float = float("nan")
    achieved_gops: float = float("nan")
    rounds: dict[str, list[float]] = field(default_factory=dict)


# ---------------------------------------------------------------- environments and artifacts


def run(command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(str(part) for part in command), file=sys.stderr, flush=True)
    return subprocess.run([str(part) for part in command], check=True, **kwargs)


def ensure_peers_venv() -> Path:
    """The peers' environment: torch 2.13.0 first (any other torch pulls CUDA wheels)."""
    python = PEERS_VENV / "bin" / "python"
    marker = PEERS_VENV / ".installed"
    wanted = PEERS_REQUIREMENTS.read_text(encoding="utf-8")
    if marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        return python
    run([sys.executable, "-m", "venv", PEERS_VENV])
    run([python, "-m", "pip", "install", "-q", "torch==2.13.0"])
    run([python, "-m", "pip", "install", "-q", "-r", PEERS_REQUIREMENTS])
    # optimum-intel can pull a CUDA torchvision that cannot load beside CPU torch; unused here.
    run([python, "-m", "pip", "uninstall", "-q", "-y", "torchvision"])
    marker.write_text(wanted, encoding="utf-8")
    return python


def calibration_inputs_json(model: Path, glue: Path, task: str, path: Path) -> None:
    """bertc's own calibration inputs (same sentences, seed and count), for the peers too."""
    from bertc.calibration import get_task
    from bertc.compiler.loading import load_model
    from bertc.compiler.pipeline import CompileOptions, calibration_examples, calibration_inputs
    from bertc.targets import get_target

    loaded = load_model(str(model))
    options = CompileOptions(target="onnx", task=task, data_dir=glue)
    examples = calibration_examples(get_task(task), options, get_target("onnx"))
    inputs = calibration_inputs(loaded, examples)
    path.write_text(json.dumps([{k: v.tolist() for k, v in item.items()} for item in inputs]))


def build_peers(model: Path, glue: Path, task: str, work: Path) -> dict:
    python = ensure_peers_venv()
    calibration = work / "calibration-inputs.json"
    calibration_inputs_json(model, glue, task, calibration)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run([python, BENCH / "peers.py", model, calibration, work / "peers"], env=env)
    return json.loads((work / "peers" / "peers.json").read_text(encoding="utf-8"))


def build_bertc(
    model: Path, glue: Path, task: str, work: Path, wanted: Sequence[str] | None = None
) -> dict[str, Path]:
    """Each artifact compiled by the CLI as the README tells a user, token ids in like the peers'
    models (`--tokenizer none`; bench/tokenizer_latency.py measures the text-in artifacts).
    `wanted`: the table names to build (`bertc NAME`); None builds them all."""
    bertc = Path(sys.executable).parent / "bertc"
    artifacts = {}
    for name, flags in BERTC_BUILDS.items():
        if wanted is not None and f"bertc {name}" not in wanted:
            continue
        out = work / f"bertc-{name.replace(' ', '-')}"
        run(
            [
                bertc,
                "compile",
                model,
                "--task",
                task,
                "--data-dir",
                glue,
                *flags,
                "--out",
                out,
                "--tokenizer",
                "none",
                "--overwrite",
            ],
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        artifacts[name] = out
    return artifacts


def file_bytes(paths: Sequence[Path]) -> int:
    return sum(path.stat().st_size for path in paths)


def variants_for(peers: dict, work: Path, bertc: Mapping[str, Path], model: Path) -> list[Variant]:
    variants = [
        Variant(
            "PyTorch fp32",
            "pytorch",
            "torch",
            str(model),
            "reference",
            model_bytes=file_bytes(list(model.glob("*.safetensors"))),
            note="checkpoint stored as fp16, runs in fp32",
        )
    ]
    wanted = ("optimum-fp32", "optimum-int8", "optimum-intel-fp32", "optimum-intel-int8")
    for record in peers["variants"]:
        if record["variant"] not in wanted:
            continue
        path = work / "peers" / record["path"]
        files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
        variants.append(
            Variant(
                record["variant"],
                record["variant"].rsplit("-", 1)[0],
                record["runtime"],
                str(path),
                record["recipe"],
                model_bytes=file_bytes([f for f in files if f.exists()]),
                note=record.get("note", ""),
            )
        )
    for name, artifact in bertc.items():
        manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
        runtime = manifest["runtime"]["name"]
        variants.append(
            Variant(
                f"bertc {name}",
                "bertc",
                runtime,
                str(artifact),
                f"bertc {manifest['quantization']['recipe']} ({manifest['quantization']['mode']})",
                model_bytes=manifest["size"]["model_bytes"],
            )
        )
    return variants


# ---------------------------------------------------------------- runners (one per kind)


def load_runner(variant: Variant, threads: int) -> tuple[Runner, str]:
    """A function from int64 inputs to logits, and the precision the runtime computes in."""
    if variant.family == "pytorch":
        import torch
        from transformers import AutoModelForSequenceClassification

        torch.set_num_threads(threads)
        model = AutoModelForSequenceClassification.from_pretrained(
            variant.path, dtype=torch.float32
        ).eval()

        def run_torch(inputs):
            with torch.inference_mode():
                tensors = {name: torch.from_numpy(value) for name, value in inputs.items()}
                return model(**tensors).logits.numpy()

        return run_torch, "fp32"
    if variant.family == "bertc":
        from bertc.targets.loader import load_ids  # the loader apps use

        artifact = Path(variant.path)
        manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
        runner = load_ids(artifact, threads)
        precision = (
            manifest["runtime"].get("compile_config", {}).get("INFERENCE_PRECISION_HINT", "fp32")
        )
        return (lambda inputs: runner.run(inputs)[0]), precision
    if variant.runtime == "openvino":
        import openvino

        # optimum-intel compiles with the LATENCY hint and no precision hint: bf16 on this CPU.
        compiled = openvino.Core().compile_model(
            variant.path, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        )
        request = compiled.create_infer_request()
        names = {port.get_any_name() for port in compiled.inputs}
        precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

        def run_openvino(inputs):
            feed = {name: value for name, value in inputs.items() if name in names}
            return np.asarray(request.infer(feed)[compiled.outputs[0]])

        return run_openvino, precision
    return ort_runner(variant.path, threads), "fp32"


def stock_runner(variant: Variant, threads: int) -> Runner:
    """A bertc artifact loaded as an app loads it: the runtime and the vendorable runtime-only
    loader's bucket helper (no torch, no compiler in the process), single inputs on the
    manifest's static buckets."""
    artifact = Path(variant.path)
    runtime = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))["runtime"]
    if runtime["name"] != "openvino":
        return ort_runner(str(artifact / runtime["model"]), threads)
    import openvino
    from bertc.targets.loader import StaticShapeBuckets  # numpy + openvino only

    core = openvino.Core()
    config = {**runtime.get("compile_config", {}), "INFERENCE_NUM_THREADS": threads}
    model = core.read_model(str(artifact / runtime["model"]))
    buckets = StaticShapeBuckets(core, model, config, runtime["static_shapes"]["sequence_buckets"])
    return lambda inputs: buckets.run(dict(inputs))[0]


def ort_runner(path: str, threads: int) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    return lambda inputs: session.run(None, {name: inputs[name] for name in names})[0]


# ---------------------------------------------------------------- data


@dataclass
class DevSet:
    singles: list[dict[str, np.ndarray]]  # one sentence each, real length
    fixed: list[dict[str, np.ndarray]]  # the same sentences padded to FIXED_LENGTH
    batches: list[dict[str, np.ndarray]]  # THROUGHPUT_BATCH sentences, padded to the longest
    labels: np.ndarray
    median_tokens: float


def dev_set(model: Path, glue: Path, task_name: str) -> DevSet:
    from bertc.calibration.readers import load_examples
    from bertc.calibration.tasks import get_task
    from transformers import AutoTokenizer

    task = get_task(task_name)
    examples = load_examples(task, "dev", glue)
    tokenizer = AutoTokenizer.from_pretrained(str(model))

    def encode(items, **padding):
        firsts = [item.text_a for item in items]
        seconds = [item.text_b for item in items] if task.is_pair else None
        encoded = tokenizer(
            firsts,
            seconds,
            truncation=True,
            max_length=FIXED_LENGTH,
            return_tensors="np",
            **padding,
        )
        return {name: np.asarray(value, dtype=np.int64) for name, value in encoded.items()}

    singles = [encode([item]) for item in examples]
    fixed = [encode([item], padding="max_length") for item in examples]
    batches = [
        encode(examples[start : start + THROUGHPUT_BATCH], padding="longest")
        for start in range(0, len(examples), THROUGHPUT_BATCH)
    ]
    labels = np.array([item.label for item in examples])
    tokens = statistics.median(single["input_ids"].shape[1] for single in singles)
    return DevSet(singles, fixed, batches, labels, tokens)


# ---------------------------------------------------------------- measurements


def predictions(runner: Runner, dev: DevSet) -> np.ndarray:
    return np.concatenate([runner(single) for single in dev.singles]).argmax(axis=1)


def timed(runner: Runner, inputs: Sequence[Mapping[str, np.ndarray]]) -> list[float]:
    seconds = []
    for item in inputs:
        started = time.perf_counter()
        runner(item)
        seconds.append(time.perf_counter() - started)
    return seconds


def latency_rounds(runners: Mapping[str, Runner], dev: DevSet, rounds: int) -> dict:
    """Each round runs every variant on every block once, in turn (interleaved)."""
    real = dev.singles[::2]
    fixed = dev.fixed[::8]
    results: dict[str, dict[str, list]] = {
        name: {
            "real_median_ms": [],
            "real_p90_ms": [],
            "fixed_median_ms": [],
            "throughput_per_s": [],
        }
        for name in runners
    }
    for round_index in range(rounds):
        for name, runner in runners.items():
            timed(runner, real[:16])  # warm-up, also compiles every shape bucket once
            seconds = timed(runner, real)
            results[name]["real_median_ms"].append(1e3 * statistics.median(seconds))
            results[name]["real_p90_ms"].append(1e3 * float(np.percentile(seconds, 90)))
            time.sleep(ROUNDS_PAUSE_S)
            timed(runner, fixed[:4])
            results[name]["fixed_median_ms"].append(1e3 * statistics.median(timed(runner, fixed)))
            time.sleep(ROUNDS_PAUSE_S)
            started = time.perf_counter()
            timed(runner, dev.batches)
            sentences = sum(batch["input_ids"].shape[0] for batch in dev.batches)
            results[name]["throughput_per_s"].append(sentences / (time.perf_counter() - started))
            time.sleep(ROUNDS_PAUSE_S)
        print(f"latency round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    return results


def best_round(values: Mapping[str, list[float]]) -> dict[str, float]:
    """The round with the lowest real-length median (this VM's speed drifts between rounds);
    its p90 goes with it. Throughput: the best round."""
    best = int(np.argmin(values["real_median_ms"]))
    return {
        "real_median_ms": values["real_median_ms"][best],
        "real_p90_ms": values["real_p90_ms"][best],
        "fixed_median_ms": min(values["fixed_median_ms"]),
        "throughput_per_s": max(values["throughput_per_s"]),
    }


def cold_start(variant: Variant, threads: int, sample: Mapping[str, np.ndarray]) -> dict:
    """Load + first inference + peak RSS, in a fresh interpreter, each as an app loads it."""
    spec = json.dumps(
        {
            "variant": asdict(variant),
            "threads": threads,
            "sample": {k: v.tolist() for k, v in sample.items()},
        }
    )
    completed = subprocess.run(
        [sys.executable, __file__, "--cold-start"],
        input=spec,
        text=True,
        capture_output=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """VmHWM of this process: unlike ru_maxrss it starts afresh at exec, not at the parent's."""
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cold_start_child() -> None:
    spec = json.loads(sys.stdin.read())
    variant = Variant(**{k: v for k, v in spec["variant"].items() if k != "rounds"})
    sample = {k: np.asarray(v, dtype=np.int64) for k, v in spec["sample"].items()}
    started = time.perf_counter()
    if variant.family == "bertc":
        runner = stock_runner(variant, spec["threads"])
    else:
        runner, _ = load_runner(variant, spec["threads"])
    loaded = time.perf_counter()
    runner(sample)
    first = time.perf_counter()
    for _ in range(50):
        runner(sample)
    print(
        json.dumps(
            {
                "cold_load_s": loaded - started,
                "first_inference_ms": 1e3 * (first - loaded),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def model_gops(config: Mapping, tokens: float) -> float:
    """Multiply-adds ×2 of one encoder pass plus pooler and classifier, at `tokens` tokens."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    per_layer = 4 * tokens * hidden * hidden + 2 * tokens * hidden * inner
    per_layer += 2 * tokens * tokens * hidden  # attention scores and context
    macs = config["num_hidden_layers"] * per_layer + hidden * hidden + hidden * 2
    return 2 * macs / 1e9


# ---------------------------------------------------------------- report


def markdown(variants: Sequence[Variant], context: Mapping) -> str:
    lines = [
        f"MiniLM-L6 {context['task'].upper()} dev ({context['examples']} sentences, median "
        f"{context['median_tokens']:g} tokens), {context['threads']} threads, {context['cpu']}; "
        f"best of {context['rounds']} interleaved rounds. Agreement: same label as fp32 PyTorch.",
        "",
        "| variant | recipe | precision | bytes | metric | Δ pt | agreement | b1 real median / p90 "
        "ms | b1 128-tok ms | b32 sent/s | cold load s | peak RSS MB | GOP/s (% of peak) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        peak = context["roofline"].get(v.runtime, {})
        peak_gops = peak.get(
            "int8_gops" if "int8" in v.name or v.family == "bertc" else "fp32_gops"
        )
        share = f" ({100 * v.achieved_gops / peak_gops:.0f}%)" if peak_gops else ""
        lines.append(
            f"| {v.name} | {v.recipe} | {v.precision} | {v.model_bytes / 1e6:.1f} M | "
            f"{100 * v.metric:.2f} | {v.delta_points:+.2f} | {100 * v.agreement:.2f}% | "
            f"{v.real_median_ms:.2f} / {v.real_p90_ms:.2f} | {v.fixed_median_ms:.2f} | "
            f"{v.throughput_per_s:.0f} | {v.cold_load_s:.2f} | {v.peak_rss_mb:.0f} | "
            f"{v.achieved_gops:.1f}{share} |"
        )
    lines += [
        "",
        "Runtime GEMM peak (bench/roofline.py, same threads): "
        + "; ".join(
            f"{name}: fp32 {peak['fp32_gops']:.0f} GOP/s, int8 {peak['int8_gops']:.0f} GOP/s"
            for name, peak in context["roofline"].items()
        ),
    ]
    notes = [f"- {v.name}: {v.note}" for v in variants if v.note]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def plot(results_json: Path, png: Path) -> None:
    """Drawn in the peers' environment, which has matplotlib; bertc's does not need it."""
    python = PEERS_VENV / "bin" / "python"
    run([python, BENCH / "plot.py", results_json, png])


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=REPO.parent / "shared/assets/models/minilm-l6-sst2"
    )
    parser.add_argument("--glue", type=Path, default=REPO.parent / "shared/assets/glue")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the peers' artifacts of the last run again (bertc's are always rebuilt)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        metavar="NAME",
        help="measure only these rows, named as results.md names them (e.g. optimum-int8 "
        "'bertc ort-mobile static'); PyTorch fp32, the reference, always runs",
    )
    parser.add_argument("--cold-start", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_start:
        cold_start_child()
        return
    from roofline import runtime_peaks

    model, glue = args.model.resolve(), args.glue.resolve()
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    if args.reuse and (work / "peers" / "peers.json").exists():
        peers = json.loads((work / "peers" / "peers.json").read_text(encoding="utf-8"))
    else:
        peers = build_peers(model, glue, args.task, work)
    bertc = build_bertc(model, glue, args.task, work, args.variants)
    variants = variants_for(peers, work, bertc, model)
    if args.variants:
        unknown = set(args.variants) - {variant.name for variant in variants}
        if unknown:
            parser.error(f"no such variant: {', '.join(sorted(unknown))}")
        keep = {"PyTorch fp32", *args.variants}
        variants = [variant for variant in variants if variant.name in keep]
    dev = dev_set(model, glue, args.task)

    runners = {}
    for variant in variants:
        runners[variant.name], variant.precision = load_runner(variant, args.threads)
    from bertc.calibration import compute_metrics, get_task

    task = get_task(args.task)

    def headline(predicted: np.ndarray) -> float:  # the task's own metric, as verify scores it
        return compute_metrics(task, predicted, dev.labels)[task.headline_metric]

    reference = predictions(runners["PyTorch fp32"], dev)
    reference_metric = headline(reference)
    for variant in variants:
        print(f"scoring {variant.name}", file=sys.stderr, flush=True)
        predicted = predictions(runners[variant.name], dev)
        variant.metric = headline(predicted)
        variant.delta_points = 100 * (variant.metric - reference_metric)
        variant.agreement = float(np.mean(predicted == reference))
    rounds = latency_rounds(runners, dev, args.rounds)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    for variant in variants:
        variant.rounds = rounds[variant.name]
        for key, value in best_round(rounds[variant.name]).items():
            setattr(variant, key, value)
        variant.achieved_gops = model_gops(config, dev.median_tokens) / (
            variant.real_median_ms / 1e3
        )
    del runners
    for variant in variants:
        for key, value in cold_start(variant, args.threads, dev.singles[0]).items():
            setattr(variant, key, value)
    context = {
        "task": args.task,
        "examples": len(dev.labels),
        "median_tokens": dev.median_tokens,
        "threads": args.threads,
        "rounds": args.rounds,
        "cpu": cpu_name(),
        "roofline": runtime_peaks(args.threads),
        "peers": peers,
        "python": sys.version.split()[0],
    }
    results = {"context": context, "variants": [asdict(v) for v in variants]}
    (args.out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    table = markdown(variants, context)
    (args.out / "results.md").write_text(table, encoding="utf-8")
    plot(args.out / "results.json", args.out / "latency_vs_accuracy.png")
    print(table)


if __name__ == "__main__":
    main()
