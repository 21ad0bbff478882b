"""`bertc run` needs the runtime alone: with torch, transformers and the quantizers made
unimportable, it still labels text on every target and tokenizer mode (issue: an ORT artifact
pulled torch in through onnxruntime-extensions' import, 4.5 s and 366 MB)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from bertc.compiler.core.enums import TokenizerMode

RUN_WITHOUT_TORCH = r"""
import importlib.abc, json, sys
class Absent(importlib.abc.MetaPathFinder):
    BLOCKED = ("torch", "transformers", "nncf", "onnxscript", "sklearn", "scipy", "safetensors")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
if sys.argv[2] == "blocked":  # else: installed, and must merely not be imported
    sys.meta_path.insert(0, Absent())
from bertc.compiler.cli import main
sys.argv = ["bertc", "run", sys.argv[1], "a gorgeous, witty movie", "--json"]
try:
    main()
except SystemExit as done:
    if done.code:
        raise
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("target", "tokenizer"),
    [
        ("ort-mobile", TokenizerMode.NONE),
        ("onnx", TokenizerMode.NONE),
        ("openvino", TokenizerMode.NONE),
        ("openvino", TokenizerMode.FUSED),
        ("ort-mobile", TokenizerMode.FUSED),
    ],
    ids=lambda value: getattr(value, "value", value),
)
@pytest.mark.parametrize("torch_installed", ["blocked", "installed"])
def test_bertc_run_labels_text_without_torch_or_transformers(
    compile_once, tiny_classifier, target: str, tokenizer: TokenizerMode, torch_installed: str
) -> None:
    options = {"allow_tokenizer_mismatch": True} if tokenizer is TokenizerMode.FUSED else {}
    artifact = compile_once(tiny_classifier, target, tokenizer=tokenizer, **options).artifact_dir
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_TORCH, str(artifact), torch_installed],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout)
    assert row["label"] in {"positive", "negative"}
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert not loaded & {"torch", "transformers", "nncf"}, sorted(loaded)
