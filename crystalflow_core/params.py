"""Checks of notebook and report parameters, so a bad value stops a run at once with a message naming it.

Every check raises :class:`ParameterError` (a ``ValueError``) whose message starts with ``name=value``, e.g.
``path='sde': must be one of lerp, ve, vp, gnn_md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .data import codcluster17

#: Where notebooks put the bundled default data when no ``data_dir`` is given (git-ignored).
DEFAULT_DATA_ROOT = Path("data_out")


class ParameterError(ValueError):
    """A parameter value that cannot work; the message names the parameter."""

    def __init__(self, name: str, value: object, problem: str) -> None:
        super().__init__(f"{name}={value!r}: {problem}")
        self.name = name


def check_choice(name: str, value: object, choices: Iterable[object]) -> object:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ParameterError(name, value, f"must be one of {', '.join(map(str, choices))}")
    return value


def check_choices(name: str, values: Iterable[object], choices: Iterable[object]) -> list:
    """``values`` as a non-empty list if every one is among ``choices``."""
    values, choices = list(values), tuple(choices)
    unknown = [v for v in values if v not in choices]
    if unknown or not values:
        problem = f"unknown {unknown}" if unknown else "empty"
        raise ParameterError(name, values, f"{problem}; choose from {', '.join(map(str, choices))}")
    return values


def check_subsets(name: str, values: Iterable[int | None]) -> list:
    """A non-empty list of subset sizes: positive integers or ``None`` (all clusters)."""
    values = list(values)
    if not values or any(v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1) for v in values):
        raise ParameterError(name, values, "must be a non-empty list of positive integers or None")
    return values


def check_seeds(name: str, values: Iterable[int]) -> list[int]:
    """A non-empty list of non-negative integer seeds."""
    values = list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise ParameterError(name, values, "must be a non-empty list of non-negative integers")
    return values


def check_positive(name: str, value: object, kind: type = int) -> int | float:
    """``value`` if it is a positive ``int`` (or ``float`` with ``kind=float``); bools are refused."""
    allowed = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, allowed) or value <= 0:
        raise ParameterError(name, value, f"must be a positive {kind.__name__}")
    return value


def check_data_dir(name: str, value: str | Path) -> Path:
    """An existing curated directory (COD-Cluster17 layout with at least one cluster)."""
    path = Path(value)
    if not path.is_dir():
        raise ParameterError(name, str(value), "directory does not exist (curate it first: crystalflow curate)")
    if not codcluster17.list_cluster_ids(path):
        raise ParameterError(name, str(value), f"no curated clusters ({codcluster17.FINAL_DIR}/*_cluster16.csv)")
    return path


def check_run_dir(name: str, value: str | Path) -> Path:
    """A training run directory holding ``checkpoint.pt``."""
    path = Path(value)
    if not (path / "checkpoint.pt").is_file():
        raise ParameterError(name, str(value), "no checkpoint.pt there (train first: notebook 03 or crystalflow train)")
    return path


def check_subset(name: str, value: int | None, data_dir: str | Path) -> int | None:
    """``None`` (all clusters) or a positive count no larger than the clusters in ``data_dir``."""
    if value is None:
        return None
    check_positive(name, value)
    available = len(codcluster17.list_cluster_ids(Path(data_dir)))
    if value > available:
        raise ParameterError(name, value, f"larger than the {available} curated clusters in {data_dir}")
    return value


def default_data_dir(inversion: bool, root: str | Path = DEFAULT_DATA_ROOT) -> Path:
    """Directory for the bundled default data, one per noise variant (with / without inversion)."""
    return Path(root) / ("default_inversion" if inversion else "default")


def check_source(name: str, value: str | Path, limit: int | None = None) -> list:
    """Structure references of a curation source (``default``, ``pyxtal`` or a CIF directory), first ``limit``."""
    from .data.sources import resolve_refs

    if limit is not None:
        check_positive("limit", limit)
    try:
        refs = resolve_refs(value)
    except FileNotFoundError as error:
        raise ParameterError(name, str(value), str(error)) from error
    if not refs:
        raise ParameterError(name, str(value), "no structures found")
    return refs[:limit] if limit is not None else refs


def ensure_data_dir(
    data_dir: str | Path, inversion: bool, source: str = "default", seed: int = 0, workers: int | None = None
) -> Path:
    """A curated directory for the ``inversion`` variant: ``data_dir`` ("" → :func:`default_data_dir`).

    A missing directory is curated from ``source`` with the default noise (``source=""`` refuses instead);
    an existing one must have been curated with the same inversion flag (its ``curation.json``).
    """
    from .data.curate import CurationSettings, curate
    from .data.noise import NoiseConfig
    from .records import data_inversion

    path = Path(data_dir) if str(data_dir) else default_data_dir(inversion)
    if not path.exists() and source:
        refs = check_source("data_source", source)
        settings = CurationSettings(seed=seed, noise=NoiseConfig(inversion=inversion))
        curate(refs, path, settings, workers=workers, progress=False)
    path = check_data_dir("data_dir", path)
    curated_with = data_inversion(path)
    if curated_with is not None and curated_with != inversion:
        raise ParameterError("inversion", inversion, f"{path} was curated with inversion={curated_with}")
    return path


def training_config(
    path: str,
    data_dir: str | Path = "",
    output_dir: str | Path = "",
    subset: int | None = None,
    inversion: bool = False,
    seed: int = 0,
    device: str = "auto",
    data_source: str = "default",
    **overrides: object,
):
    """A checked :class:`~crystalflow_core.train.TrainConfig` for notebook 03; ``None`` overrides keep defaults.

    Cheap checks come first (``path``, numbers, ``device``), then the data directory is found or curated
    (:func:`ensure_data_dir`) and ``subset`` is checked against it: at least 3 clusters, so that the train, val
    and test splits are all non-empty. ``output_dir`` "" → ``runs/<run name>``.
    """
    import torch

    from .paths import PATHS
    from .records import run_name
    from .train import TrainConfig

    check_choice("path", path, PATHS)
    check_choice("inversion", inversion, (False, True))
    for name in ("epochs", "batch_size", "hidden", "layers"):
        if overrides.get(name) is not None:
            check_positive(name, overrides[name])
    for name in ("cutoff", "lr"):
        if overrides.get(name) is not None:
            check_positive(name, overrides[name], float)
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 3):
        raise ParameterError("subset", subset, "must be None or an integer >= 3 (train, val and test splits)")
    if device != "auto":
        try:
            resolved = torch.device(device)
        except RuntimeError as error:
            raise ParameterError("device", device, str(error)) from error
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise ParameterError("device", device, "CUDA is not available here (use 'auto' or 'cpu')")
    data = ensure_data_dir(data_dir, inversion, data_source, seed)
    check_subset("subset", subset, data)
    out = Path(output_dir) if str(output_dir) else Path("runs") / run_name(path, subset, seed, inversion)
    chosen = {key: value for key, value in overrides.items() if value is not None}
    return TrainConfig(
        data=str(data), out=str(out), path=path, seed=seed, subset=subset, device=device, progress=False, **chosen
    )
