"""Any bertc artifact, through the vendorable loader (an ids-in artifact tokenizes with its
shipped `tokenizer/tokenizer.json` through the small `tokenizers` package).

Copy `targets/loader.py` into your app as `bertc_runtime.py` (it needs numpy and one
runtime's two packages), or use it from an installed bertc as `bertc.targets.loader`.

    python examples/classify.py ARTIFACT "first text" ["second text, for a pair task"]
"""

import sys

try:
    import bertc_runtime
except ImportError:
    from bertc.targets import loader as bertc_runtime

model = bertc_runtime.load(sys.argv[1], threads=2)
pairs = [sys.argv[3]] if len(sys.argv) > 3 else None
for prediction in model.predict([sys.argv[2]], pairs):
    print(prediction.label, f"{max(prediction.scores):.3f}")
