"""Run an OpenVINO text-in artifact on texts two ways and save the logits (a script; it runs
under the x86 Python and under the emulated aarch64 one of `tools/arm64/`, which has numpy,
openvino and openvino-tokenizers but no bertc, so it imports the loader by file path):

- static: bertc's loader (`targets/loader.py`), single inputs on [1, bucket] shapes;
- as-loaded: `compile_model(model.xml, "CPU", manifest["runtime"]["compile_config"])` on
  dynamic shapes, one text per call, as the README's app does.

usage: python arm64_ov_probe.py LOADER_PY ARTIFACT TEXTS_JSON OUT_NPZ
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np


def main(loader_py: str, artifact: str, texts_json: str, out: str) -> None:
    import openvino
    import openvino_tokenizers  # noqa: F401  (registers the tokenizer ops)

    spec = importlib.util.spec_from_file_location("bertc_loader", loader_py)
    loader = importlib.util.module_from_spec(spec)
    sys.modules["bertc_loader"] = loader  # dataclasses look their module up
    spec.loader.exec_module(loader)
    with open(texts_json, encoding="utf-8") as handle:
        texts = json.load(handle)
    with open(f"{artifact}/manifest.json", encoding="utf-8") as handle:
        config = json.load(handle)["runtime"]["compile_config"]
    model = loader.load(artifact)
    static = np.concatenate([model.logits([text]) for text in texts])
    compiled = openvino.Core().compile_model(f"{artifact}/model.xml", "CPU", config)
    loaded = np.stack([compiled({"text": np.array([t])})[compiled.output(0)][0] for t in texts])
    np.savez(out, static=static, as_loaded=loaded)


if __name__ == "__main__":
    main(*sys.argv[1:5])
