"""The model that ships inside the package (``crystalflow predict``'s default) and how a run becomes one.

A shipped model is a directory with ``checkpoint.pt`` (only the weights and the training config, loaded with
``weights_only=True``), ``config.json`` and ``model.json`` (where it came from, and the elements it was trained
on, which ``predict`` holds a molecule to). ``scripts/train_shipped_model.sh`` rebuilds the one in the package.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from .errors import CheckpointError
from .files import atomic_open
from .records import git_revision
from .train import CHECKPOINT, CONFIG, MODEL_KEYS, read_checkpoint

#: The shipped model's directory inside the package.
SHIPPED_MODEL = Path(__file__).parent / "models" / "rigid"
#: A shipped model's own record (a run's ``record.json`` is its evaluation).
MODEL_RECORD = "model.json"


def training_elements(data_dir: str | Path) -> list[int]:
    """Atomic numbers present in the clusters of a curated directory."""
    from .data.dataset import load_cluster_tensors

    tensors = load_cluster_tensors(data_dir, progress=False)
    return sorted({int(z) for item in tensors.values() for z in item["z"].unique()})


def ship_model(run_dir: str | Path, out_dir: str | Path = SHIPPED_MODEL) -> Path:
    """Write the model of a finished run to ``out_dir`` as a shipped model; returns ``out_dir``."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    state = read_checkpoint(run_dir / CHECKPOINT)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / CHECKPOINT, "wb") as handle:
        torch.save({key: state[key] for key in MODEL_KEYS}, handle)
    with atomic_open(out_dir / CONFIG) as handle:
        json.dump(state["config"], handle, indent=2)
    history = state.get("history") or [{}]
    record = {
        "objective": state["config"]["path"],
        "training_split": state["config"].get("training_split", "train"),
        "data": state["config"]["data"],
        "n_training_clusters": len(_ids(state["config"])),
        "elements": training_elements(state["config"]["data"]),
        "epochs": state["config"]["epochs"],
        "final_train_loss": history[-1].get("train_loss"),
        "git_revision": git_revision(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_open(out_dir / MODEL_RECORD) as handle:
        json.dump(record, handle, indent=2)
    return out_dir


def _ids(config: dict) -> list[str]:
    from .data.dataset import ClusterDataset

    split = None if config.get("training_split") == "all" else "train"
    return ClusterDataset(config["data"], split=split, seed=config["seed"], subset=config["subset"], progress=False).ids


def known_elements(run_dir: str | Path) -> list[int] | None:
    """The elements a model was trained on: from a shipped model's ``model.json``, else from the curated data
    its config names (``None`` when neither is there)."""
    path = Path(run_dir) / MODEL_RECORD
    if not path.is_file():
        config = Path(run_dir) / CONFIG
        data = json.loads(config.read_text()).get("data") if config.is_file() else None
        return training_elements(data) if data and Path(data).is_dir() else None
    try:
        elements = json.loads(path.read_text())["elements"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(path, f"not a shipped model's record ({error})") from error
    return [int(z) for z in elements]
