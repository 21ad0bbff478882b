"""Logits of a text-in OpenVINO artifact on the first N SST-2 dev sentences, three ways, to
compare an emulated ARM core with x86 (`tools/arm64/`; runs under either Python, no bertc):

- static: bertc's loader (`targets/loader.py`, imported by path), [1, bucket] shapes;
- as_loaded: `compile_model(model.xml, "CPU", manifest["runtime"]["compile_config"])`, one text
  per call on dynamic shapes, as the README's app does;
- no_hint: the same without the compile config (the runtime's default precision: bf16 on x86
  CPUs with BF16, f16 on ARM cores with fp16).

    python bench/ov_arm_logits.py ART 50 x86.npz
    ARM_CPU=a76 ~/.cache/bertc-arm64/armpy bench/ov_arm_logits.py ART 50 a76.npz
    python bench/ov_arm_logits.py --compare x86.npz a76.npz   # max |Δ|, agreement per way
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

WAYS = ("static", "as_loaded", "no_hint")
REPO = Path(__file__).resolve().parents[1]
SST2_DEV = REPO.parent / "shared" / "assets" / "glue" / "SST-2" / "dev.tsv"


def _loader():
    spec = importlib.util.spec_from_file_location("bertc_loader", REPO / "targets" / "loader.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bertc_loader"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def logits(artifact: str, texts: list[str], way: str) -> np.ndarray:
    import openvino
    import openvino_tokenizers  # noqa: F401  (registers the tokenizer ops)

    if way == "static":
        model = _loader().load(artifact)
        return np.concatenate([model.logits([text]) for text in texts])
    manifest = json.loads(Path(artifact, "manifest.json").read_text(encoding="utf-8"))
    config = manifest["runtime"]["compile_config"] if way == "as_loaded" else {}
    compiled = openvino.Core().compile_model(f"{artifact}/model.xml", "CPU", config)
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    print(f"{way}: inference precision {precision}", file=sys.stderr)
    return np.stack([compiled({"text": np.array([t])})[compiled.output(0)][0] for t in texts])


def compare(reference: str, other: str) -> None:
    """Per way: max |logit Δ| and argmax agreement of `other` against `reference` (no_hint
    against the reference's as_loaded, which had the config)."""
    ref, got = np.load(reference), np.load(other)
    for way in got.files:
        base = ref["as_loaded" if way == "no_hint" else way][: len(got[way])]
        error = float(np.abs(got[way] - base).max())
        agreement = float(np.mean(got[way].argmax(1) == base.argmax(1)))
        print(f"{way}: {len(base)} sentences, max |Δ| {error:.4f}, agreement {agreement:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("args", nargs="+")
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--dev", default=str(SST2_DEV))
    options = parser.parse_args()
    if options.compare:
        compare(*options.args)
        return
    artifact, count, out = options.args
    lines = Path(options.dev).read_text(encoding="utf-8").splitlines()[1:]
    texts = [line.split("\t")[0] for line in lines[: int(count)]]
    np.savez(out, **{way: logits(artifact, texts, way) for way in options.ways.split(",")})


if __name__ == "__main__":
    main()
