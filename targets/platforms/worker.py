"""Run an artifact on prepared inputs the ways an app runs it; the same code on x86 (in the
bertc process) and inside the emulated aarch64 Python (`python worker.py REQUEST.json`).

Runtime-only: numpy, the artifact's runtime and `targets/loader.py` (loaded from its file, as
an app vendors it; this folder's siblings `openvino.py` / `onnx.py` would shadow the runtimes
on sys.path), nothing else of bertc and no tokenizer package: the host encodes the token ids.

The ways (`WAYS`):
    ort           ONNX Runtime through bertc's loader (its session, CPU provider)
    ov-static     OpenVINO through bertc's loader: single inputs on static [1, bucket] shapes
    ov-as-loaded  `ov.Core().compile_model(model.xml, "CPU", manifest compile_config)` on the
                  IR's dynamic shapes: what the README's app snippet does

The request (JSON): {"artifact": DIR, "loader": PATH, "ways": [...], "threads": N | null,
"output": INDEX, "examples": [{"input_ids": [...], ...}] or [{"text": str, "pair": str|null}],
"out": PATH}. The result: an .npz at `out`, one float64 (examples, outputs) array per way, or
`error:WAY` (its one-line message) where the runtime could not load the artifact or failed on an
example, and `seconds:WAY`, the wall time of that way (load included; under emulation: never
a latency). Exit codes: 0 done; 11 the loader itself could not be loaded, or the runtime
does not import (a broken platform: one line on stderr); 2 a bad request.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ORT = "ort"
OV_STATIC = "ov-static"
OV_AS_LOADED = "ov-as-loaded"
WAYS = {"onnxruntime": (ORT,), "openvino": (OV_STATIC, OV_AS_LOADED)}
RUNTIME_FAILED_EXIT = 11
BAD_REQUEST_EXIT = 2


class WorkerError(RuntimeError):
    """The runtime could not load the artifact or failed on an example: one line."""


def load_loader(path: str | Path) -> Any:
    """`targets/loader.py` as its own module, from its file."""
    spec = importlib.util.spec_from_file_location("bertc_platform_loader", str(path))
    if spec is None or spec.loader is None:
        raise WorkerError(f"cannot load bertc's loader from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _one_line(error: BaseException) -> str:
    """The whole message on one line (OpenVINO's first line only says where), the middle
    elided past 300 characters: its end says what failed."""
    error = error.__cause__ or error  # the loader's RuntimeFailure keeps only the first line
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else f"{text[:120]} ... {text[-180:]}"


def _as_loaded(artifact: Path, manifest: dict[str, Any], threads: int | None) -> Any:
    """The IR compiled as the README's app compiles it: dynamic shapes, the manifest's config."""
    import openvino

    if (manifest.get("tokenizer") or {}).get("mode") in ("fused", "separate"):
        import openvino_tokenizers  # noqa: F401  (registers the tokenizer ops)
    config = dict(manifest["runtime"].get("compile_config", {}))
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return openvino.Core().compile_model(
        str(artifact / manifest["runtime"]["model"]), "CPU", config
    )


def _run_as_loaded(compiled: Any, example: dict[str, Any], output: int) -> np.ndarray:
    if "text" in example:
        strings = [np.array([example["text"]])]
        if example.get("pair") is not None:
            strings.append(np.array([example["pair"]]))
        results = compiled(strings)
    else:
        names = [port.get_any_name() for port in compiled.inputs]
        results = compiled({name: np.asarray([example[name]], dtype=np.int64) for name in names})
    return np.asarray(results[compiled.outputs[output]], dtype=np.float64)


class RuntimeImportError(RuntimeError):
    """The runtime itself (or a module it needs) does not import: a broken platform install,
    never a finding about the artifact, so every way stops here (exit RUNTIME_FAILED_EXIT)."""


def _missing_module(error: BaseException) -> bool:
    """Whether `error`, or what it was raised from, is an ImportError."""
    while error is not None:
        if isinstance(error, ImportError):
            return True
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return False


def run_way(
    loader: Any,
    artifact: Path,
    way: str,
    examples: list[dict[str, Any]],
    output: int,
    threads: int | None,
) -> np.ndarray:
    """One way's compared output for every example, float64 (examples, outputs).
    WorkerError (one line) when the runtime cannot load the artifact or fails on an example."""
    manifest = loader.read_manifest(artifact)
    text = bool(examples) and "text" in examples[0]
    try:
        if way == OV_AS_LOADED:
            compiled = _as_loaded(artifact, manifest, threads)
            model = None
        else:
            model = loader.load(artifact, threads) if text else loader.load_ids(artifact, threads)
    except Exception as error:  # noqa: BLE001  (each runtime raises its own types)
        if _missing_module(error):  # the platform is broken, not the artifact
            raise RuntimeImportError(
                f"{way}: the runtime does not import here ({_one_line(error)}); reinstall the "
                "platform (remove its folder, then `bertc platform install arm64`)"
            ) from error
        raise WorkerError(f"{way}: cannot load {artifact}: {_one_line(error)}") from error
    rows = []
    for index, example in enumerate(examples, start=1):
        try:
            if model is None:
                scores = _run_as_loaded(compiled, example, output)
            elif text:
                pairs = None if example.get("pair") is None else [example["pair"]]
                scores = model.outputs([example["text"]], pairs)[output]
            else:
                feeds = {
                    name: np.asarray([example[name]], dtype=np.int64) for name in model.input_names
                }
                scores = model.run(feeds)[output]
        except Exception as error:  # noqa: BLE001
            message = f"{way}: the runtime failed on example {index}: {_one_line(error)}"
            raise WorkerError(message) from error
        rows.append(np.asarray(scores, dtype=np.float64).reshape(1, -1))
    return np.concatenate(rows) if rows else np.zeros((0, 0))


def run_request(request: dict[str, Any], keep_going: bool = False) -> dict[str, np.ndarray]:
    """Every requested way on the request's examples: {way: logits, "seconds:WAY": [s]}.
    A way whose runtime fails raises WorkerError, or with `keep_going` is recorded as
    {"error:WAY": [message]} and the next way runs (one way failing on a platform is a finding
    about that way, not the end of the others)."""
    loader = load_loader(request["loader"])
    artifact = Path(request["artifact"])
    results: dict[str, np.ndarray] = {}
    for way in request["ways"]:
        start = time.perf_counter()
        try:
            results[way] = run_way(
                loader,
                artifact,
                way,
                request["examples"],
                int(request["output"]),
                request["threads"],
            )
        except WorkerError as error:
            if not keep_going:
                raise
            results[f"error:{way}"] = np.asarray([str(error)])
        results[f"seconds:{way}"] = np.asarray([time.perf_counter() - start])
    return results


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: worker.py REQUEST.json", file=sys.stderr)
        return BAD_REQUEST_EXIT
    try:
        request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"cannot read the request {argv[0]}: {_one_line(error)}", file=sys.stderr)
        return BAD_REQUEST_EXIT
    try:
        results = run_request(request, keep_going=True)
    except (WorkerError, RuntimeImportError) as error:
        print(str(error), file=sys.stderr)
        return RUNTIME_FAILED_EXIT
    partial = request["out"] + ".partial.npz"
    np.savez(partial, **results)
    Path(partial).replace(request["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
