"""The parameters of the notebooks, checked as a set, so a bad value stops a notebook at once with a message
naming it; and the training settings, one per field of TrainConfig, with their checks.

Every check raises :class:`~crystalflow_core.errors.ParameterError` (a ``ValueError``) whose message starts with
``name=value``, e.g. ``path='sde': must be one of lerp, ve, vp, gnn_md``; the single-value checks are those of
:mod:`~crystalflow_core.checks`. This module configures the commands below it (training, run records), so it
imports them and none of them imports it.

The training settings are TrainConfig's fields (:func:`~crystalflow_core.settings.train_settings`, declared in
:mod:`~crystalflow_core.settings` so that the command line reads them without torch), each with its check here; a
notebook that needs data curates it in a step of its own (:func:`ensure_curated`), never as a side effect of a
check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path

from .checks import (
    check_bool,
    check_choice,
    check_choices,
    check_data_dir,
    check_device,
    check_list,
    check_non_negative,
    check_optional_positive,
    check_out_dir,
    check_path,
    check_positive,
    check_run_dir,
    check_seed,
    check_seeds,
    check_source,
    check_subset,
    check_subsets,
)
from .csp.candidates import DEFAULT_SPACE_GROUPS, SpaceGroupError, space_group_number
from .csp.search import SearchSettings
from .data.curate import SETTINGS, CurationSettings, curate, data_inversion
from .data.noise import NoiseConfig
from .data.sources import bundled_cod_directory
from .errors import ParameterError
from .nn.precision import PRECISIONS
from .paths import PATHS
from .records import model_order, run_name
from .settings import PAIR_LAYOUTS, train_settings
from .shipped import SHIPPED_MODEL
from .train import CONFIG, TRAINING_SPLITS, TrainConfig, with_data_noise

#: Where notebooks put the bundled default data when no ``data_dir`` is given (git-ignored).
DEFAULT_DATA_ROOT = Path("data_out")
#: Where notebook 06 writes a molecule's crystals when no ``out_dir`` is given: one directory per molecule.
DEFAULT_PREDICT_ROOT = DEFAULT_DATA_ROOT / "predict"


def default_data_dir(inversion: bool, root: str | Path = DEFAULT_DATA_ROOT) -> Path:
    """Directory for the bundled default data, one per noise variant (with / without inversion)."""
    return Path(root) / ("default_inversion" if inversion else "default")


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


def _check_objective(name: str, value: object) -> object:
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
    "training_split": lambda name, value: check_choice(name, value, TRAINING_SPLITS),
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
    "precision": lambda name, value: check_choice(name, value, PRECISIONS),
    "compile": check_bool,
    "pair_layout": lambda name, value: check_choice(name, value, PAIR_LAYOUTS),
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
    data_dir: str,
    n_clusters: int,
    samples: int,
    steps: int | None,
    frames: int,
    split: str,
    device: str,
    seed: int,
) -> Path:
    """Notebook 05's parameters; returns the run directory (``run_dir`` "" → the shipped model)."""
    for name, value in {"n_clusters": n_clusters, "samples": samples, "frames": frames}.items():
        check_positive(name, value)
    check_optional_positive("steps", steps)
    check_choice("split", split, ("train", "val", "test"))
    check_device("device", device)
    check_seed("seed", seed)
    check_path("data_dir", data_dir)
    return check_run_dir("run_dir", run_dir) if str(run_dir) else SHIPPED_MODEL


def run_data(run_dir: str | Path, data_dir: str | Path = "") -> Path:
    """The curated data to sample a run on: ``data_dir``, else the data it was trained on (its ``config.json``).

    Where that is the default location of the bundled data (``data_out/default``, the shipped model's), a
    missing directory is curated from the bundled CIFs first and a printed line says so, as notebook 03 does
    (:func:`ensure_curated`); any other must exist.
    """
    if str(data_dir):
        return check_data_dir("data_dir", data_dir)
    config = TrainConfig.from_dict(json.loads((Path(run_dir) / CONFIG).read_text()))
    inversion = bool((config.noise or {}).get("inversion", False))
    bundled = Path(config.data) == default_data_dir(inversion)
    return ensure_curated(config.data, inversion, source="default" if bundled else "")


def check_space_groups(name: str, value: object) -> tuple[int, ...]:
    """Space groups given by number or Hermann-Mauguin name (``[14, "P-1"]``) as numbers, repeats dropped;
    ``None``: the search's default groups."""
    if value is None:
        return DEFAULT_SPACE_GROUPS
    values = check_list(name, value)
    try:
        groups = tuple(dict.fromkeys(space_group_number(item) for item in values))
    except SpaceGroupError as error:
        raise ParameterError(name, values, str(error)) from None
    if not groups:
        raise ParameterError(name, values, "names no space group")
    return groups


def check_reference_cif(name: str, value: object) -> Path | None:
    """``None``, a CIF file, or the COD id of a crystal bundled with crystalflow (``"2100348"``: benzene),
    which lets the report's presets name a known crystal without a path of one machine."""
    if value is None:
        return None
    path = check_path(name, value)
    if path.is_file():
        return path
    bundled = bundled_cod_directory() / f"{path.name}.cif.gz"
    if path.name == str(value) and bundled.is_file():
        return bundled
    raise ParameterError(name, str(value), "no such file, nor the COD id of a crystal bundled with crystalflow")


def _check_optional_file(name: str, value: object) -> Path | None:
    if value is None:
        return None
    path = check_path(name, value)
    if not path.is_file():
        raise ParameterError(name, str(value), "no such file")
    return path


def check_prediction_parameters(
    smiles: str,
    candidates: int,
    space_groups: Iterable[int | str] | None,
    seed: int,
    reference_cif: str | None,
    pxrd_file: str | None,
    out_dir: str,
    keep: int,
) -> tuple[SearchSettings, Path | None, Path | None]:
    """Notebook 06's parameters: the search settings, the reference CIF and the measured powder pattern (each
    ``None`` when not given). What the files hold is read, and refused, by the steps that use them."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise ParameterError("smiles", smiles, "must be a SMILES string")
    check_positive("candidates", candidates)
    check_positive("keep", keep)
    check_seed("seed", seed)
    groups = check_space_groups("space_groups", space_groups)
    check_out_dir("out_dir", out_dir)
    reference = check_reference_cif("reference_cif", reference_cif)
    pattern = _check_optional_file("pxrd_file", pxrd_file)
    return SearchSettings(candidates, groups, seed), reference, pattern


def prediction_dir(out_dir: str | Path, name: str) -> Path:
    """``out_dir``, or where it is "" the directory of molecule ``name`` under :data:`DEFAULT_PREDICT_ROOT`, so
    that a run for another molecule never meets this one's results."""
    return Path(out_dir) if str(out_dir) else DEFAULT_PREDICT_ROOT / name
