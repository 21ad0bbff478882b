"""A fresh virtual environment with only a runtime's packages labels text with a fused artifact.

Slow (it pip-installs openvino + openvino-tokenizers, and onnxruntime + onnxruntime-extensions,
into new environments from the configured registry) and needs that registry reachable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bertc.compiler.core.enums import TokenizerMode

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "transformers", "tokenizers", "bertc", "nncf", "onnx=", "onnx==")


@pytest.mark.slow
def test_runtime_only_environment_labels_a_sentence(compile_once, tiny_classifier) -> None:
    openvino = compile_once(tiny_classifier, "openvino", tokenizer=TokenizerMode.FUSED)
    ort = compile_once(
        tiny_classifier, "ort-mobile", tokenizer=TokenizerMode.FUSED, allow_tokenizer_mismatch=True
    )
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "runtime_footprint.py"),
            "openvino",
            str(openvino.artifact_dir),
            "ort-mobile",
            str(ort.artifact_dir),
            "--runs",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    labels = set(openvino.manifest["model"]["labels"].values())
    for row in rows:
        assert row["output"].split()[0] in labels
        names = [package.lower() for package in row["packages"]]
        assert not [name for name in names if name.startswith(FORBIDDEN)], names
