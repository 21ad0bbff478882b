"""Label text with a bertc ONNX Runtime artifact (`--target ort-mobile` or `onnx`).

An ids-in artifact (the quick start's ORT artifact) needs `pip install onnxruntime tokenizers`
and tokenizes with the artifact's own `tokenizer/tokenizer.json`; a fused one (`--tokenizer
fused`) takes strings and needs `pip install onnxruntime onnxruntime-extensions`.

python examples/onnxruntime_app.py artifacts/minilm-l6-sst2-ort-mobile "a witty movie."
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

artifact, text = Path(sys.argv[1]), sys.argv[2]
manifest = json.loads((artifact / "manifest.json").read_text(encoding="utf-8"))
options = ort.SessionOptions()
if manifest["tokenizer"]["mode"] == "none":  # token ids in: tokenize as the checkpoint did
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(artifact / "tokenizer" / "tokenizer.json"))
    tokenizer.enable_truncation(manifest["model"]["max_sequence_length"])
    encoding = tokenizer.encode(text)
    columns = {
        "input_ids": encoding.ids,
        "attention_mask": encoding.attention_mask,
        "token_type_ids": encoding.type_ids,
    }
    inputs = {
        name: np.array([columns[name]], dtype=np.int64) for name in manifest["model"]["inputs"]
    }
else:  # the in-graph BertTokenizer op takes [text] or [text, text_pair]
    from onnxruntime_extensions import get_library_path

    options.register_custom_ops_library(get_library_path())
    inputs = {manifest["tokenizer"]["inputs"][0]: np.array([text])}
session = ort.InferenceSession(str(artifact / manifest["runtime"]["model"]), options)
logits = session.run(None, inputs)[0][0]
head = manifest["head"]  # multi-label: every label whose sigmoid passes; regression: logits[0]
sigmoid = head["scores"] == "sigmoid"
picked = (
    np.flatnonzero(1 / (1 + np.exp(-logits)) > head["threshold"]) if sigmoid else [logits.argmax()]
)
print(", ".join(manifest["model"]["labels"][str(i)] for i in picked))
