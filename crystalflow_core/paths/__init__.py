"""Probability paths (training objectives) from x_w to x_s and their registry: lerp, ve, vp, gnn_md."""

from crystalflow_core.paths.base import (
    PathCoefficients,
    PathSample,
    ProbabilityPath,
    VelocityModel,
    flow_matching_loss,
)
from crystalflow_core.paths.direct import DirectPath
from crystalflow_core.paths.lerp import LerpPath
from crystalflow_core.paths.ve import VEPath
from crystalflow_core.paths.vp import VPPath

_REGISTRY: dict[str, type[ProbabilityPath]] = {
    "lerp": LerpPath,
    "ve": VEPath,
    "vp": VPPath,
    "gnn_md": DirectPath,
}
PATHS = tuple(_REGISTRY)


def get_path(name: str, **kwargs: float | str) -> ProbabilityPath:
    """Build the path registered as `name` (one of `PATHS`) with keyword parameters, e.g. `sigma_min=1e-4` or
    `prediction="velocity"`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown path {name!r}; choose one of {', '.join(PATHS)}")
    return _REGISTRY[name](**kwargs)


__all__ = [
    "PATHS",
    "DirectPath",
    "LerpPath",
    "PathCoefficients",
    "PathSample",
    "ProbabilityPath",
    "VEPath",
    "VPPath",
    "VelocityModel",
    "flow_matching_loss",
    "get_path",
]
