"""Build the peers' artifacts the way their users would, inside the peers' own environment.

Run by `bench/compare.py` with the interpreter of the peers' virtual environment (they pin
transformers<5, so they cannot share bertc's). No bertc import. Writes one folder per peer
variant under OUT and `OUT/peers.json` saying what was built, what failed and what ran instead.

    python bench/peers.py MODEL_DIR CALIBRATION_JSON OUT
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = (
    "optimum",
    "optimum-onnx",
    "optimum-intel",
    "transformers",
    "onnxruntime",
    "openvino",
    "nncf",
    "torch",
)


def _installed(package: str) -> str:
    """Its version, or "not installed" (that peer's build then fails and is recorded as such)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _record(name: str, started: float, **fields) -> dict:
    return {"variant": name, "build_seconds": round(time.perf_counter() - started, 2), **fields}


def export_with(
    model_class, model_dir: Path, out: Path, name: str, file_name: str, runtime: str, recipe: str
):
    """The peer's own `from_pretrained(export=True)`, saved under OUT/name, and its record."""
    started = time.perf_counter()
    model = model_class.from_pretrained(model_dir, export=True)
    model.save_pretrained(out / name)
    return model, _record(name, started, path=f"{name}/{file_name}", runtime=runtime, recipe=recipe)


def _session_runs(model_path: Path) -> None:
    """Optimum's quantized O2 graph can fail only when ORT loads it: prove it loads."""
    import onnxruntime

    onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def build_optimum(model_dir: Path, out: Path) -> list[dict]:
    """optimum-onnx export, O2 fusions, ORT dynamic INT8 (Optimum's CLI path, avx512_vnni).

    Falls back to quantizing the unfused export when the fused graph cannot be quantized or
    loaded, and records the failure.
    """
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    exported, record = export_with(
        ORTModelForSequenceClassification,
        model_dir,
        out,
        "optimum-fp32",
        "model.onnx",
        "onnxruntime",
        "optimum-onnx export",
    )
    records = [record]
    started = time.perf_counter()
    ORTOptimizer.from_pretrained(exported).optimize(
        save_dir=out / "optimum-o2", optimization_config=AutoOptimizationConfig.O2()
    )
    records.append(
        _record(
            "optimum-o2-fp32",
            started,
            path="optimum-o2/model_optimized.onnx",
            runtime="onnxruntime",
            recipe="O2 fusions",
        )
    )
    qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)

    def quantized(source: str, file_name: str, save: str, recipe: str, **fields) -> dict:
        started = time.perf_counter()
        quantizer = ORTQuantizer.from_pretrained(out / source, file_name=file_name)
        quantizer.quantize(save_dir=out / save, quantization_config=qconfig)
        path = next((out / save).glob("*quantized.onnx"))
        _session_runs(path)
        return _record(
            "optimum-int8",
            started,
            path=str(path.relative_to(out)),
            runtime="onnxruntime",
            recipe=recipe,
            **fields,
        )

    try:
        records.append(
            quantized(
                "optimum-o2",
                "model_optimized.onnx",
                "optimum-o2-int8",
                "O2 + dynamic INT8 (avx512_vnni)",
            )
        )
        return records
    except Exception as error:  # record the peer's failure exactly, then take its fallback
        failure = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    records.append(
        quantized(
            "optimum-fp32",
            "model.onnx",
            "optimum-int8",
            "dynamic INT8 (avx512_vnni) on the unfused export",
            note=f"O2-fused graph failed: {failure}; fell back to the unfused export",
        )
    )
    return records


def build_optimum_intel(model_dir: Path, calibration: list[dict], out: Path) -> list[dict]:
    """optimum-intel: OpenVINO fp32 IR, then NNCF static INT8 on the same calibration inputs."""
    import nncf
    import numpy as np
    from optimum.intel import (
        OVConfig,
        OVModelForSequenceClassification,
        OVQuantizationConfig,
        OVQuantizer,
    )

    model, record = export_with(
        OVModelForSequenceClassification,
        model_dir,
        out,
        "optimum-intel-fp32",
        "openvino_model.xml",
        "openvino",
        "OpenVINO IR export",
    )
    records = [record]
    started = time.perf_counter()
    samples = [
        {name: np.asarray(value, dtype=np.int64) for name, value in item.items()}
        for item in calibration
    ]
    quantizer = OVQuantizer.from_pretrained(model)
    quantizer.quantize(
        calibration_dataset=nncf.Dataset(samples),
        ov_config=OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(samples))),
        save_directory=out / "optimum-intel-int8",
    )
    records.append(
        _record(
            "optimum-intel-int8",
            started,
            path="optimum-intel-int8/openvino_model.xml",
            runtime="openvino",
            recipe=f"NNCF static INT8, {len(samples)} calibration samples",
        )
    )
    return records


def main() -> None:
    model_dir, calibration_json, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    calibration = json.loads(calibration_json.read_text(encoding="utf-8"))
    report = {
        "versions": {name: _installed(name) for name in PACKAGES},
        "variants": [],
        "failures": [],
    }
    for name, build in (
        ("optimum", lambda: build_optimum(model_dir, out)),
        ("optimum-intel", lambda: build_optimum_intel(model_dir, calibration, out)),
    ):
        try:
            report["variants"].extend(build())
        except Exception as error:  # a peer that cannot build is a result, not a crash
            report["failures"].append(
                {
                    "peer": name,
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()[-2000:],
                }
            )
    (out / "peers.json").write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
