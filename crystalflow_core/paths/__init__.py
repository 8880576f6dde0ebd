"""Training objectives from x_w to x_s and their registry: lerp, ve, vp, gnn_md (probability paths), rigid."""

from crystalflow_core.paths.base import (
    Objective,
    PathCoefficients,
    PathSample,
    ProbabilityPath,
    VelocityModel,
    flow_matching_loss,
)
from crystalflow_core.paths.direct import DirectPath
from crystalflow_core.paths.lerp import LerpPath
from crystalflow_core.paths.rigid import RigidPath
from crystalflow_core.paths.ve import VEPath
from crystalflow_core.paths.vp import VPPath
from crystalflow_core.settings import PATHS

#: The objective of each name of :data:`PATHS` (declared in :mod:`crystalflow_core.settings`, so that the command
#: line offers them without importing this package), by its own ``name``.
_REGISTRY: dict[str, type[Objective]] = {
    objective.name: objective for objective in (LerpPath, VEPath, VPPath, DirectPath, RigidPath)
}
if tuple(_REGISTRY) != PATHS:
    raise ImportError(f"the objectives {tuple(_REGISTRY)} are not settings.PATHS {PATHS}, in that order")


def get_path(name: str, **kwargs: float | str) -> Objective:
    """Build the path registered as `name` (one of `PATHS`) with keyword parameters, e.g. `sigma_min=1e-4` or
    `prediction="velocity"`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown path {name!r}; choose one of {', '.join(PATHS)}")
    return _REGISTRY[name](**kwargs)


__all__ = [
    "PATHS",
    "DirectPath",
    "LerpPath",
    "Objective",
    "PathCoefficients",
    "PathSample",
    "ProbabilityPath",
    "RigidPath",
    "VEPath",
    "VPPath",
    "VelocityModel",
    "flow_matching_loss",
    "get_path",
]
