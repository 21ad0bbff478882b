"""Runtime targets behind one interface and one registry.

Names are resolved lazily (PEP 562) so that `bertc.targets.loader`, which an app imports
with only a runtime installed, does not pull in the compiler (torch, onnx, nncf) through here.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BuildRequest",
    "Runner",
    "Target",
    "TargetBuild",
    "TokenizerRequest",
    "get_target",
    "register_target",
    "target_names",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("bertc.targets.base"), name)
    raise AttributeError(f"module 'bertc.targets' has no attribute {name!r}")
