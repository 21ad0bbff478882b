"""Runtime targets behind one interface and one registry."""

from bertc.targets.base import (
    BuildRequest,
    Runner,
    Target,
    TargetBuild,
    get_target,
    register_target,
    target_names,
)

__all__ = [
    "BuildRequest",
    "Runner",
    "Target",
    "TargetBuild",
    "get_target",
    "register_target",
    "target_names",
]
