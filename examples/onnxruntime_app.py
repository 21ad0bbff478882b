"""Label text with a bertc ORT artifact: `pip install onnxruntime onnxruntime-extensions` only.

python examples/onnxruntime_app.py artifacts/minilm-l6-sst2-ort-mobile "a witty movie."
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime_extensions import get_library_path

artifact, text = sys.argv[1], sys.argv[2]
manifest = json.loads(Path(artifact, "manifest.json").read_text(encoding="utf-8"))
options = ort.SessionOptions()
options.register_custom_ops_library(get_library_path())  # the in-graph BertTokenizer op
session = ort.InferenceSession(f"{artifact}/{manifest['runtime']['model']}", options)
logits = session.run(None, {"text": np.array([text])})[0][0]  # [text] or [text, text_pair]
print(manifest["model"]["labels"][str(int(logits.argmax()))])
