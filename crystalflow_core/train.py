"""Training: one function, ``train(config)``, behind the ``crystalflow train`` command.

A run directory holds ``config.json``, ``checkpoint.pt`` (weights, optimiser, step, loss history; loadable with
``torch.load(..., weights_only=True)``) and ``history.csv``. Calling ``train`` again on the same directory resumes
from the last checkpoint; a finished run returns at once.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from .data.dataset import ClusterDataset
from .data.noise import NoiseConfig, centre_on_weak, rigid_noise
from .nn.painn import PaiNNVelocity
from .paths import PATHS, Objective, get_path

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
HISTORY = "history.csv"


@dataclass
class TrainConfig:
    """Everything a run needs. Defaults train on the bundled data in minutes on a laptop CPU; ``epochs`` and
    ``molecule_cutoff`` left ``None`` take the objective's own defaults (``Objective.training_defaults``)."""

    data: str
    out: str
    path: str = "lerp"
    seed: int = 0
    subset: int | None = None
    epochs: int | None = None
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    hidden: int = 32
    layers: int = 2
    n_rbf: int = 20
    cutoff: float = 4.0
    molecule_cutoff: float | None = None
    device: str = "auto"
    checkpoint_every: int = 200
    augment: bool = False
    noise: dict = field(default_factory=lambda: NoiseConfig().to_dict())
    path_kwargs: dict = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(PATHS)}, got {self.path!r}")
        for key, value in get_path(self.path, **self.path_kwargs).training_defaults.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


#: Settings that define the model and objective; a resumed run must agree on them.
ARCHITECTURE_KEYS = (
    "path",
    "hidden",
    "layers",
    "n_rbf",
    "cutoff",
    "molecule_cutoff",
    "path_kwargs",
    "data",
    "subset",
    "seed",
)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(config: TrainConfig) -> PaiNNVelocity:
    """The network of a run: PaiNN at the config's size, with the options its objective needs."""
    options = get_path(config.path, **config.path_kwargs).network_options
    return PaiNNVelocity(
        hidden=config.hidden,
        layers=config.layers,
        n_rbf=config.n_rbf,
        cutoff=config.cutoff,
        molecule_cutoff=config.molecule_cutoff,
        **options,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def redraw_weak(batch, noise: NoiseConfig, generator: torch.Generator) -> torch.Tensor:
    """Augmentation: fresh rigid noise for every molecule of a batch, centred per graph as curation does."""
    x_w = rigid_noise(batch.x_s.cpu(), batch.molecule.cpu(), noise, generator).to(batch.x_s)
    x_w, _ = centre_on_weak(x_w, batch.x_s, batch.batch)
    return x_w


def batch_loss(
    model, path: Objective, batch, dataset: ClusterDataset, x_w: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The objective's loss on one PyG batch of ``dataset``, with its molecules' automorphisms if it uses them."""
    automorphisms = [dataset.automorphisms(cid) for cid in batch.cluster_id] if path.uses_automorphisms else None
    return path.loss(
        model,
        batch.z,
        x_w,
        batch.x_s,
        batch.batch,
        generator=generator,
        molecule=batch.molecule,
        automorphisms=automorphisms,
    )


@torch.no_grad()
def validation_loss(model, path: Objective, loader, device: torch.device, seed: int) -> float:
    """Mean objective over a loader with fixed times and noise (seeded), so epochs are comparable."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        loss = batch_loss(model, path, batch, loader.dataset, batch.x_w, generator)
        total += float(loss) * batch.num_graphs
        count += batch.num_graphs
    model.train()
    return total / max(count, 1)


def save_checkpoint(
    run_dir: Path, model, optimizer, step: int, epoch: int, history: list[dict], config: TrainConfig
) -> Path:
    """Atomic save of everything needed to resume (plain tensors and containers: ``weights_only`` loadable)."""
    path = run_dir / CHECKPOINT
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "epoch": epoch,
            "history": history,
            "config": config.to_dict(),
            "torch_rng": torch.get_rng_state(),
        },
        tmp,
    )
    tmp.replace(path)
    pd.DataFrame(history).to_csv(run_dir / HISTORY, index=False)
    return path


def load_model(run_dir: str | Path, device: str | torch.device = "auto") -> tuple[PaiNNVelocity, TrainConfig]:
    """The trained model of a run directory (in eval mode) and its config."""
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / CHECKPOINT
    if not checkpoint_path.exists():
        raise FileNotFoundError(f"{checkpoint_path}: no checkpoint (train first with `crystalflow train`)")
    device = resolve_device(device) if isinstance(device, str) else device
    state = torch.load(checkpoint_path, map_location=device, weights_only=True)
    config = TrainConfig.from_dict(state["config"])
    model = build_model(config).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, config


def _check_resumable(run_dir: Path, config: TrainConfig) -> dict | None:
    checkpoint_path = run_dir / CHECKPOINT
    if not checkpoint_path.exists():
        return None
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    previous = state["config"]
    clash = [k for k in ARCHITECTURE_KEYS if previous.get(k) != config.to_dict()[k]]
    if clash:
        raise ValueError(f"{checkpoint_path}: cannot resume, settings differ in {clash}; use a new --out")
    return state


def train(config: TrainConfig) -> pd.DataFrame:
    """Train (or resume) one run; returns the loss history, one row per epoch."""
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    path = get_path(config.path, **config.path_kwargs)
    train_set = ClusterDataset(
        config.data, split="train", seed=config.seed, subset=config.subset, progress=config.progress
    )
    val_set = ClusterDataset(config.data, split="val", seed=config.seed, subset=config.subset, progress=False)
    if len(train_set) == 0:
        raise ValueError(f"{config.data}: the training split is empty")
    model = build_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler_fn = _cosine_schedule(total_steps)

    step, start_epoch, history = 0, 0, []
    state = _check_resumable(run_dir, config)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, start_epoch, history = state["step"], state["epoch"], state["history"]
        torch.set_rng_state(state["torch_rng"])
    (run_dir / CONFIG).write_text(json.dumps(config.to_dict(), indent=2))
    if start_epoch >= config.epochs:
        return pd.DataFrame(history)

    noise = NoiseConfig(**config.noise)
    loader_generator = torch.Generator().manual_seed(config.seed + start_epoch)
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, generator=loader_generator)
    val_loader = DataLoader(val_set, batch_size=config.batch_size)
    noise_generator = torch.Generator().manual_seed(config.seed + 10_000 + start_epoch)
    bar = tqdm(total=total_steps, initial=step, desc=f"train {config.path}", unit="step", disable=not config.progress)
    model.train()
    for epoch in range(start_epoch, config.epochs):
        running, seen = 0.0, 0
        for batch in loader:
            batch = batch.to(device)
            x_w = redraw_weak(batch, noise, noise_generator) if config.augment else batch.x_w
            for group in optimizer.param_groups:
                group["lr"] = config.lr * scheduler_fn(step)
            loss = batch_loss(model, path, batch, train_set, x_w)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            running += loss.item() * batch.num_graphs
            seen += batch.num_graphs
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
            if step % config.checkpoint_every == 0:
                save_checkpoint(run_dir, model, optimizer, step, epoch, history, config)
        record = {"epoch": epoch + 1, "step": step, "train_loss": running / max(seen, 1)}
        if len(val_set):
            record["val_loss"] = validation_loss(model, path, val_loader, device, seed=config.seed)
        history.append(record)
        save_checkpoint(run_dir, model, optimizer, step, epoch + 1, history, config)
    bar.close()
    return pd.DataFrame(history)


def _cosine_schedule(total_steps: int, warmup: int = 20):
    """Learning-rate factor: linear warm-up, then cosine decay to 5 % of the peak."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
