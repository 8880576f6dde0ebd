"""Checks of single values: choices, numbers, seeds, devices, paths and the directories that commands read.

Every check raises :class:`~crystalflow_core.errors.ParameterError` (a ``ValueError``) whose message starts with
``name=value``, e.g. ``epochs=0: must be a positive int``, so a bad value stops a run at once in one line naming
it. The command line passes the option as the name (``--data``), a notebook its parameter's name. These checks
know nothing of training, sampling or run records, so any module may use them; the parameter sets of the
notebooks are checked in :mod:`~crystalflow_core.params`.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .data import codcluster17
from .errors import ParameterError


def check_choice(name: str, value: object, choices: Iterable[object]) -> object:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ParameterError(name, value, f"must be one of {', '.join(map(str, choices))}")
    return value


def check_list(name: str, values: object) -> list:
    """``values`` as a list: a list, tuple or other iterable, but no text or mapping (papermill's ``-p`` passes
    text; a list is given with ``-y``)."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise ParameterError(name, values, f"must be a list (with papermill: -y '{name}: [...]')")
    return list(values)


def check_choices(name: str, values: Iterable[object], choices: Iterable[object]) -> list:
    """``values`` as a non-empty list if every one is among ``choices``."""
    values, choices = check_list(name, values), tuple(choices)
    unknown = [v for v in values if v not in choices]
    if unknown or not values:
        problem = f"unknown {unknown}" if unknown else "empty"
        raise ParameterError(name, values, f"{problem}; choose from {', '.join(map(str, choices))}")
    return values


def check_subsets(name: str, values: Iterable[int | None]) -> list:
    """A non-empty list of subset sizes: positive integers or ``None`` (all clusters)."""
    values = check_list(name, values)
    if not values or any(v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1) for v in values):
        raise ParameterError(name, values, "must be a non-empty list of positive integers or None")
    return values


def check_seeds(name: str, values: Iterable[int]) -> list[int]:
    """A non-empty list of non-negative integer seeds."""
    values = check_list(name, values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise ParameterError(name, values, "must be a non-empty list of non-negative integers")
    return values


def _is_number(value: object, kind: type) -> bool:
    """An ``int`` (also a finite ``float`` with ``kind=float``), never a bool."""
    allowed = (int, float) if kind is float else (int,)
    return not isinstance(value, bool) and isinstance(value, allowed) and math.isfinite(value)


def check_positive(name: str, value: object, kind: type = int) -> int | float:
    """``value`` if it is a positive ``int`` (or finite ``float`` with ``kind=float``); bools are refused."""
    if not _is_number(value, kind) or value <= 0:
        raise ParameterError(name, value, f"must be a positive {kind.__name__}")
    return value


def check_non_negative(name: str, value: object, kind: type = float) -> int | float:
    """``value`` if it is a finite ``float`` (or ``int``) ``>= 0`` (an ``int`` only, with ``kind=int``)."""
    if not _is_number(value, kind) or value < 0:
        raise ParameterError(name, value, f"must be a {kind.__name__} >= 0")
    return value


def check_optional_positive(name: str, value: object, kind: type = int) -> int | float | None:
    """``None`` or a positive ``int`` (``float``): :func:`check_positive`."""
    return None if value is None else check_positive(name, value, kind)


def check_bool(name: str, value: object) -> bool:
    """``True`` or ``False``, nothing else (not 0, 1 or the text ``'yes'``)."""
    if not isinstance(value, bool):
        raise ParameterError(name, value, "must be True or False")
    return value


def check_path(name: str, value: object) -> Path:
    """``value`` as a :class:`~pathlib.Path` if it is text or a path (not a number, list, ``None``, ...)."""
    if not isinstance(value, (str, os.PathLike)):
        raise ParameterError(name, value, "must be a path (a string)")
    return Path(value)


def check_seed(name: str, value: object) -> int:
    """A non-negative integer seed."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(name, value, "must be a non-negative integer")
    return value


def check_device(name: str, value: str) -> str:
    """``"auto"`` or a torch device name that exists here (CUDA only where it is available)."""
    import torch

    if not isinstance(value, str):
        raise ParameterError(name, value, "must be a device name: 'auto', 'cpu', 'cuda', ...")
    if value == "auto":
        return value
    try:
        resolved = torch.device(value)
    except (RuntimeError, TypeError) as error:
        raise ParameterError(name, value, f"not a device ({error}); use 'auto', 'cpu' or 'cuda'") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(name, value, "CUDA is not available here (use 'auto' or 'cpu')")
    return value


def check_data_dir(name: str, value: str | Path) -> Path:
    """An existing curated directory (COD-Cluster17 layout with at least one cluster)."""
    path = check_path(name, value)
    if not path.is_dir():
        raise ParameterError(name, str(value), "directory does not exist (curate it first: crystalflow curate)")
    if not codcluster17.list_cluster_ids(path):
        raise ParameterError(name, str(value), f"no curated clusters ({codcluster17.FINAL_DIR}/*_cluster16.csv)")
    return path


def check_run_dir(name: str, value: str | Path) -> Path:
    """A training run directory holding ``checkpoint.pt``."""
    path = check_path(name, value)
    if not (path / "checkpoint.pt").is_file():
        raise ParameterError(name, str(value), "no checkpoint.pt there (train first: notebook 03 or crystalflow train)")
    return path


def check_predictions_dir(name: str, value: str | Path) -> Path:
    """A directory holding predictions in the COD-Cluster17 layout (``PredictedPositions/*_pred{k}.csv``)."""
    path = check_path(name, value)
    if not codcluster17.list_predictions(path):
        raise ParameterError(name, str(value), f"no {codcluster17.PREDICTED_DIR}/*_cluster16_pred*.csv files")
    return path


def check_out_dir(name: str, value: str | Path) -> Path:
    """An output directory: one that exists, or none yet (it is created); not a file."""
    path = check_path(name, value)
    if path.exists() and not path.is_dir():
        raise ParameterError(name, str(value), "exists and is not a directory")
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


def check_source(name: str, value: str | Path, limit: int | None = None) -> Iterator:
    """Structure references of a curation source (``default``, ``pyxtal`` or a CIF directory), first ``limit``.

    Streamed, read once (a COD mirror is walked as it is curated): only the first reference is looked for here.
    """
    from .data.sources import resolve_refs

    if limit is not None:
        check_positive("limit", limit)
    if not isinstance(value, (str, os.PathLike)):
        raise ParameterError(name, value, "must be 'default', 'pyxtal' or a directory of CIF files")
    try:
        refs = resolve_refs(value)
        first = next(refs, None)
    except FileNotFoundError as error:
        raise ParameterError(name, str(value), str(error)) from error
    if first is None:
        raise ParameterError(name, str(value), "no structures found")
    return itertools.islice(itertools.chain([first], refs), limit)
