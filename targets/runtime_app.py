"""The old name of `bertc.targets.loader`, kept for one release: import that instead."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as `python targets/runtime_app.py` inside the repo, this folder comes first on sys.path
    # and its openvino.py / onnx.py would shadow the runtimes (the loader does the same).
    _here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _here]

from bertc.targets.loader import *  # noqa: E402, F403
from bertc.targets.loader import (  # noqa: E402, F401  (names scripts used before the rename)
    ArtifactLoadError,
    CheckReport,
    Golden,
    GoldenExample,
    GoldenMissingError,
    Prediction,
    StaticShapeBuckets,
    TextModel,
    check,
    load,
    main,
    read_golden,
    read_manifest,
    split_fused_model,
)

if __name__ == "__main__":
    raise SystemExit(main())
