"""Label text with a bertc OpenVINO artifact; needs `pip install openvino openvino-tokenizers`.

python examples/openvino_app.py artifacts/minilm-l6-sst2-openvino "a gorgeous, witty movie."
"""

import json
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_tokenizers  # noqa: F401  (registers the tokenizer ops the fused IR uses)

artifact, text = sys.argv[1], sys.argv[2]
manifest = json.loads(Path(artifact, "manifest.json").read_text(encoding="utf-8"))
core = ov.Core()
model = core.compile_model(f"{artifact}/model.xml", "CPU", manifest["runtime"]["compile_config"])
logits = model({"text": np.array([text])})[model.output(0)][0]  # a batch of strings in
head = manifest["head"]  # multi-label: every label whose sigmoid passes; regression: logits[0]
sigmoid = head["scores"] == "sigmoid"
picked = (
    np.flatnonzero(1 / (1 + np.exp(-logits)) > head["threshold"]) if sigmoid else [logits.argmax()]
)
print(", ".join(manifest["model"]["labels"][str(i)] for i in picked))
