"""Checks of notebook and report parameters, so a bad value stops a run at once with a message naming it.

Every check raises :class:`~crystalflow_core.errors.ParameterError` (a ``ValueError``) whose message starts with
``name=value``, e.g. ``path='sde': must be one of lerp, ve, vp, gnn_md``. The command line uses the same checks
with the option as the name (``--data=...``).

The training settings are TrainConfig's fields (:func:`train_settings`), each with its check here; a notebook
that needs data curates it in a step of its own (:func:`ensure_curated`), never as a side effect of a check.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .data import codcluster17
from .errors import ParameterError  # also reached as ``params.ParameterError`` by notebooks

if TYPE_CHECKING:  # train imports this module
    from .train import TrainConfig

#: Where notebooks put the bundled default data when no ``data_dir`` is given (git-ignored).
DEFAULT_DATA_ROOT = Path("data_out")


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


def check_sampler(name: str, method: str, path) -> str:
    """A sampling method (``sampling.METHODS``) that fits the objective ``path``: ``rigid`` for the rigid path
    and only there, and no noise-carrying sampler (``ddim``, ``sde``) for a deterministic one (gnn_md)."""
    from .sampling import METHODS

    check_choice(name, method, METHODS)
    if method != "auto" and (method == "rigid") != (path.default_sampler == "rigid"):
        raise ParameterError(name, method, f"does not fit path {path.name!r} (the rigid path samples with 'rigid')")
    if method in ("ddim", "sde") and path.deterministic:
        raise ParameterError(name, method, f"path {path.name!r} is deterministic; use 'auto' or an ODE method")
    return method


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


def default_data_dir(inversion: bool, root: str | Path = DEFAULT_DATA_ROOT) -> Path:
    """Directory for the bundled default data, one per noise variant (with / without inversion)."""
    return Path(root) / ("default_inversion" if inversion else "default")


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


def _check_data_source(name: str, value: object) -> object:
    if not isinstance(value, (str, os.PathLike)):
        raise ParameterError(name, value, "must be 'default', 'pyxtal', a directory of CIF files or '' (none)")
    return value


def ensure_curated(
    data_dir: str | Path, inversion: bool, source: str = "default", seed: int = 0, workers: int | None = None
) -> Path:
    """``data_dir`` ("" → :func:`default_data_dir` of the ``inversion`` variant) as a curated directory.

    A directory that does not exist yet is curated from ``source`` with the default noise (``inversion`` and
    ``seed`` its own), and a printed line says so: curation takes a while and writes a whole dataset, so it is
    one visible step of a notebook, never a side effect of another call. ``source=""`` refuses a missing
    directory instead.
    """
    from .data.curate import CurationSettings, curate
    from .data.noise import NoiseConfig

    _check_data_source("data_source", source)
    check_bool("inversion", inversion)
    check_seed("seed", seed)
    path = check_path("data_dir", data_dir) if str(data_dir) else default_data_dir(inversion)
    if not path.exists() and source:
        refs = list(check_source("data_source", source))
        print(
            f"{path} does not exist: curating {len(refs)} structures of {str(source)!r} into it (inversion={inversion})"
        )
        settings = CurationSettings(seed=seed, noise=NoiseConfig(inversion=inversion))
        manifest = curate(refs, path, settings, workers=workers, progress=False)
        print(f"{int((manifest['status'] == 'curated').sum())} of {len(manifest)} structures curated")
    return check_data_dir("data_dir", path)


#: TrainConfig fields that notebook 03 and ``crystalflow train`` do not set under their own name: the data and run
#: directories (``data_dir`` and ``output_dir``; ``--data`` and ``--out``), the noise (the data's own, see
#: ``train.with_data_noise``), the objective's options (Python API only) and the progress bar.
NOT_TRAIN_SETTINGS = ("data", "out", "noise", "path_kwargs", "progress")


def train_settings() -> dict[str, object]:
    """Every other field of :class:`~crystalflow_core.train.TrainConfig` with its default, in its order.

    These are the settings of a training run: notebook 03's parameters, ``crystalflow train``'s options and the
    report presets use these names and defaults, and tests hold them to it, so a setting is declared once, in
    TrainConfig.
    """
    from .train import TrainConfig

    return {f.name: f.default for f in fields(TrainConfig) if f.name not in NOT_TRAIN_SETTINGS}


def _check_objective(name: str, value: object) -> object:
    from .paths import PATHS

    return check_choice(name, value, PATHS)


def check_split_subset(name: str, value: object) -> int | None:
    """``None`` (all clusters) or a subset of at least 3 clusters, so that train, val and test are all non-empty."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 3):
        raise ParameterError(name, value, "must be None or an integer >= 3 (train, val and test splits)")
    return value


#: The check of every training setting (:func:`train_settings`), by name.
TRAIN_SETTING_CHECKS: dict[str, Callable[[str, object], object]] = {
    "path": _check_objective,
    "seed": check_seed,
    "subset": check_split_subset,
    "training_split": lambda name, value: check_choice(name, value, ("train", "all")),  # train.TRAINING_SPLITS
    "epochs": check_optional_positive,
    "batch_size": check_positive,
    "lr": partial(check_positive, kind=float),
    "weight_decay": check_non_negative,
    "grad_clip": partial(check_positive, kind=float),
    "hidden": check_positive,
    "layers": check_positive,
    "n_rbf": check_positive,
    "cutoff": partial(check_positive, kind=float),
    "molecule_cutoff": lambda name, value: None if value is None else check_non_negative(name, value),
    "device": check_device,
    "precision": lambda name, value: check_choice(name, value, ("auto", "fp32", "tf32", "bf16")),  # PRECISIONS
    "compile": check_bool,
    "checkpoint_every": check_positive,
    "augment": check_bool,
}


def check_train_settings(settings: Mapping[str, object]) -> dict:
    """``settings`` as a dict if each is a training setting whose value passes its check (no files are read)."""
    for key, value in settings.items():
        if key not in TRAIN_SETTING_CHECKS:
            raise ParameterError(key, value, f"not a training setting; choose from {', '.join(TRAIN_SETTING_CHECKS)}")
        TRAIN_SETTING_CHECKS[key](key, value)
    return dict(settings)


def training_config(
    data_dir: str | Path, output_dir: str | Path = "", inversion: bool = False, **settings: object
) -> TrainConfig:
    """A checked :class:`~crystalflow_core.train.TrainConfig` for notebook 03.

    ``settings`` are training settings by name (:func:`train_settings`; one left out keeps TrainConfig's
    default), each checked first. ``data_dir`` must be curated already (:func:`ensure_curated`), with
    ``inversion`` as its ``curation.json`` says, and hold at least ``subset`` clusters. ``output_dir`` "" →
    ``runs/<run name>``; the noise is the data's own; no progress bar.
    """
    from .records import data_inversion, run_name
    from .train import TrainConfig, with_data_noise

    settings = check_train_settings(settings)
    check_bool("inversion", inversion)
    data = check_data_dir("data_dir", data_dir)
    curated_with = data_inversion(data)
    if curated_with is not None and curated_with != inversion:
        raise ParameterError("inversion", inversion, f"{data} was curated with inversion={curated_with}")
    chosen = {**train_settings(), **settings}
    check_subset("subset", chosen["subset"], data)
    name = run_name(chosen["path"], chosen["subset"], chosen["seed"], inversion)
    out = check_path("output_dir", output_dir) if str(output_dir) else Path("runs") / name
    return with_data_noise(TrainConfig(data=str(data), out=str(out), progress=False, **settings))


def _check_variant_dirs(data_root: str | Path, seed: int) -> None:
    """``data_root`` and its two variant directories can take a curation with ``seed`` (the notebook's defaults):
    no file in their place, and no ``curation.json`` of other settings (a resumed curation must not mix them)."""
    from .data.curate import SETTINGS, CurationSettings
    from .data.noise import NoiseConfig

    check_out_dir("data_root", data_root)
    for inversion in (False, True):
        path = default_data_dir(inversion, data_root)
        check_out_dir("data_root", path)
        try:
            previous = json.loads((path / SETTINGS).read_text())
        except (OSError, ValueError):
            continue  # nothing curated yet, or curation itself reports the unreadable file
        expected = CurationSettings(seed=seed, noise=NoiseConfig(inversion=inversion)).to_dict()
        if isinstance(previous, dict) and previous.get("seed") != seed:
            raise ParameterError(
                "seed",
                seed,
                f"{path} was curated with seed={previous.get('seed')!r}; use that seed or another data_root",
            )
        if previous != expected:
            raise ParameterError("data_root", str(data_root), f"{path} was curated with other settings {previous}")


def check_curation_parameters(
    source: str, data_root: str, limit: int | None, seed: int, workers: int | None, subsets: Iterable[int | None]
) -> tuple[list, list]:
    """Notebook 01's parameters: the structure references of ``source`` (first ``limit``, as a list: the notebook
    curates them twice) and ``subsets`` as a list.

    Cheap checks come first (numbers, ``data_root`` and what is already curated there), then ``source`` is
    resolved (:func:`check_source`).
    """
    check_seed("seed", seed)
    check_optional_positive("limit", limit)
    check_optional_positive("workers", workers)
    subsets = check_subsets("subsets", subsets)
    check_path("data_root", data_root)
    _check_variant_dirs(data_root, seed)
    return list(check_source("source", source, limit)), subsets


def check_statistics_parameters(data_dir: str, max_clusters: int | None, bins: int, seed: int) -> Path:
    """Notebook 02's parameters; returns the curated directory."""
    check_optional_positive("max_clusters", max_clusters)
    check_positive("bins", bins)
    check_seed("seed", seed)
    return check_data_dir("data_dir", data_dir)


#: Parameters of notebook 03 that the benchmark (notebook 04) sets for every run it launches.
LAUNCH_SET_PARAMETERS = ("path", "subset", "seed", "inversion", "data_dir", "output_dir")

#: The other parameters of notebook 03, which ``train_parameters`` may give, each with its check: the training
#: settings and how the test split is sampled.
TRAIN_PARAMETER_CHECKS = {
    **{key: check for key, check in TRAIN_SETTING_CHECKS.items() if key not in LAUNCH_SET_PARAMETERS},
    "data_source": _check_data_source,
    "samples": check_positive,
    "steps": check_optional_positive,
}


def check_train_parameters(name: str, value: object) -> dict:
    """Extra notebook 03 parameters for launched runs: a mapping of :data:`TRAIN_PARAMETER_CHECKS` keys, each value
    checked as notebook 03 would (message names ``name['key']``)."""
    if not isinstance(value, Mapping):
        raise ParameterError(name, value, f"must be a dict (with papermill: -y '{name}: {{epochs: 5}}')")
    value = dict(value)
    set_per_run = [key for key in value if key in LAUNCH_SET_PARAMETERS]
    if set_per_run:
        raise ParameterError(
            name, value, f"{set_per_run} are set per run (from methods, subsets, seeds, data_root and runs_dir)"
        )
    unknown = [key for key in value if key not in TRAIN_PARAMETER_CHECKS]
    if unknown:
        raise ParameterError(name, value, f"unknown {unknown}; choose from {', '.join(TRAIN_PARAMETER_CHECKS)}")
    for key, item in value.items():
        TRAIN_PARAMETER_CHECKS[key](f"{name}[{key!r}]", item)
    return value


def check_benchmark_parameters(
    runs_dir: str,
    methods: Iterable[str] | None,
    subsets: Iterable[int | None],
    seeds: Iterable[int],
    launch_missing: bool,
    data_root: str,
    train_parameters: Mapping[str, object],
) -> tuple[list, list, list]:
    """Notebook 04's parameters: ``methods`` (``None``: every objective, in the tables' order), ``subsets`` and
    ``seeds`` as lists. ``runs_dir`` must exist unless the missing runs are launched (then it is created)."""
    from .paths import PATHS
    from .records import model_order

    methods = model_order(PATHS) if methods is None else check_choices("methods", methods, PATHS)
    subsets = check_subsets("subsets", subsets)
    seeds = check_seeds("seeds", seeds)
    check_bool("launch_missing", launch_missing)
    check_train_parameters("train_parameters", train_parameters)
    check_path("data_root", data_root)
    for path in (data_root, default_data_dir(False, data_root), default_data_dir(True, data_root)):
        check_out_dir("data_root", path)
    runs = check_out_dir("runs_dir", runs_dir)
    if not launch_missing and not runs.is_dir():
        raise ParameterError(
            "runs_dir",
            str(runs_dir),
            "directory does not exist (train runs first with notebook 03, or set launch_missing=True)",
        )
    return methods, subsets, seeds


def check_trajectory_parameters(
    run_dir: str,
    n_clusters: int,
    samples: int,
    steps: int | None,
    frames: int,
    split: str,
    device: str,
    seed: int,
) -> Path:
    """Notebook 05's parameters; returns the run directory."""
    for name, value in {"n_clusters": n_clusters, "samples": samples, "frames": frames}.items():
        check_positive(name, value)
    check_optional_positive("steps", steps)
    check_choice("split", split, ("train", "val", "test"))
    check_device("device", device)
    check_seed("seed", seed)
    return check_run_dir("run_dir", run_dir)
