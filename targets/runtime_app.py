"""The old name of `bertc.targets.loader`, kept for one release: import that instead."""

from bertc.targets.loader import *  # noqa: F403
from bertc.targets.loader import (  # noqa: F401  (names scripts used before the rename)
    ArtifactLoadError,
    Prediction,
    StaticShapeBuckets,
    TextModel,
    load,
    main,
    read_manifest,
    split_fused_model,
)

if __name__ == "__main__":
    raise SystemExit(main())
