"""Label agreement of bertc artifacts with fp32 PyTorch, each run by its stock runtime alone.

No bertc import: the artifact is read the way an app reads it (the `tokenizers` library on the
artifact's tokenizer.json, then `openvino` or `onnxruntime`), so a pass here means the artifact
works without bertc; a fused artifact gets the sentence itself. Prints one line per artifact.

    python bench/stock_runtime_agreement.py artifacts/minilm-l6-sst2-openvino \
        artifacts/minilm-l6-sst2-ort-mobile [--glue ../shared/assets/glue]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForSequenceClassification


def load_runner(artifact: Path, manifest: dict):
    """`run(sentence, ids)` -> logits, made with the target's runtime only: a fused artifact
    (the quick start's OpenVINO one) takes the sentence, an ids-in one the token ids."""
    runtime = manifest["runtime"]
    fused = (manifest.get("tokenizer") or {}).get("mode") == "fused"
    if manifest["target"] == "openvino":
        import openvino

        if fused:
            import openvino_tokenizers  # noqa: F401  (registers the tokenizer ops)
        core = openvino.Core()
        model = core.read_model(str(artifact / runtime["model"]))
        compiled = core.compile_model(model, "CPU", runtime.get("compile_config", {}))
        if fused:
            return lambda sentence, ids: compiled({"text": np.array([sentence])})[0]
        return lambda sentence, ids: compiled(ids)[0]
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if fused:
        from onnxruntime_extensions import get_library_path

        options.register_custom_ops_library(get_library_path())
    session = onnxruntime.InferenceSession(
        str(artifact / runtime["model"]), options, providers=["CPUExecutionProvider"]
    )
    if fused:
        text_input = manifest["tokenizer"]["inputs"][0]
        return lambda sentence, ids: session.run(None, {text_input: np.array([sentence])})[0]
    return lambda sentence, ids: session.run(None, ids)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path)
    parser.add_argument("--glue", type=Path, default=Path("../shared/assets/glue"))
    args = parser.parse_args()
    with open(args.glue / "SST-2" / "dev.tsv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    references: dict[str, torch.nn.Module] = {}
    for artifact in args.artifacts:
        manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
        source = manifest["source"]["path"]
        if source not in references:
            references[source] = AutoModelForSequenceClassification.from_pretrained(
                source, dtype=torch.float32
            ).eval()
        tokenizer = Tokenizer.from_file(str(artifact / "tokenizer" / "tokenizer.json"))
        tokenizer.enable_truncation(manifest["model"]["max_sequence_length"])
        run = load_runner(artifact, manifest)
        agree = correct = 0
        for sentence, label in rows:
            encoding = tokenizer.encode(sentence)
            inputs = {
                "input_ids": np.array([encoding.ids], dtype=np.int64),
                "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
                "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
            }
            with torch.no_grad():
                tensors = {name: torch.from_numpy(value) for name, value in inputs.items()}
                reference = references[source](**tensors).logits.numpy()
            prediction = int(run(sentence, inputs).argmax())
            agree += int(prediction == int(reference.argmax()))
            correct += int(prediction == int(label))
        print(
            f"{artifact}: agreement {agree}/{len(rows)} = {agree / len(rows):.4f}, "
            f"accuracy {correct / len(rows):.4f} ({manifest['target']})"
        )


if __name__ == "__main__":
    main()
