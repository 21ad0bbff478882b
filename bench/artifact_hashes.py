"""Hash what bertc writes for the determinism tests' tiny model, to compare two versions of bertc.

    python bench/artifact_hashes.py OUT_DIR     # builds OUT_DIR/tiny, OUT_DIR/glue, six artifacts

Prints (and writes OUT_DIR/hashes.json) the sha256 of every model and tokenizer file the manifest
lists, per variant (onnx, openvino, ort-mobile, each static; ort-mobile and onnx dynamic;
openvino ids-in). `model.ort` is hashed through its read-back contents, since onnxruntime writes
one table of the ORT format in hash-map order. Run it with two checkouts of bertc (e.g. a git
worktree of the old commit on PYTHONPATH) over copies of the same OUT_DIR/tiny and compare.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from artifact_readers import ort_model_contents  # noqa: E402
from model_factory import make_checkpoint, write_glue_data  # noqa: E402

VARIANTS = {
    "onnx": ["--target", "onnx"],
    "openvino": ["--target", "openvino"],
    "ort-mobile": ["--target", "ort-mobile", "--quantization", "static"],  # default: dynamic
    "ort-mobile-dyn": ["--target", "ort-mobile", "--quantization", "dynamic"],
    "onnx-dyn": ["--target", "onnx", "--quantization", "dynamic"],
    "openvino-ids": ["--target", "openvino", "--tokenizer", "none"],
}


def file_hash(path: Path) -> str:
    if path.suffix == ".ort":
        return hashlib.sha256(repr(ort_model_contents(path)).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    checkpoint, data = root / "tiny", root / "glue"
    if not checkpoint.exists():
        make_checkpoint(checkpoint, train_steps=60)
        write_glue_data(data)
    hashes = {}
    for name, arguments in VARIANTS.items():
        artifact = root / f"art-{name}"
        if not artifact.exists():
            command = [sys.executable, "-m", "bertc.compiler.cli", "compile", str(checkpoint)]
            command += [*arguments, "--task", "sst2", "--data-dir", str(data)]
            command += ["--calibration-samples", "16", "--out", str(artifact)]
            subprocess.run(command, check=True, capture_output=True)
        manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
        for file in sorted(manifest["files"]):
            hashes[f"{name}/{file}"] = file_hash(artifact / file)
    (root / "hashes.json").write_text(json.dumps(hashes, indent=1, sort_keys=True))
    print(json.dumps(hashes, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
