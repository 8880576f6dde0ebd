"""Training: one function, ``train(config)``, behind the ``crystalflow train`` command.

A run directory holds ``config.json``, ``checkpoint.pt`` and ``history.csv``. The checkpoint has everything a resume
needs: weights, optimiser, the loss history, where training stands (step, finished epochs, the current epoch's
order of clusters and the position in it, the loss summed so far in that epoch) and the states of the random
generators that shuffle, augment and draw the objective's times and noise. Calling ``train`` again on the same
directory resumes from it exactly: a run killed at any moment and restarted ends with the loss history and weights
of an uninterrupted run. A finished run returns at once.

Under ``torchrun`` (see :mod:`crystalflow_core.distributed`) the processes train one model with
DistributedDataParallel. ``batch_size`` is per process: every step takes the next ``size × batch_size`` clusters of
the one epoch order all processes share, each process its contiguous part of them, and its loss is weighted so
that the averaged gradient is the gradient of that whole batch's loss (see ``_Run.share``). Every process draws its
own augmentation and objective noise (:func:`make_generators`), so the run equals a single process with batch
``size × batch_size`` step for step where nothing is drawn (``gnn_md`` without ``augment``), and in distribution
otherwise. Rank 0 alone prints and writes; its checkpoint holds every process's random streams, and a resume
needs as many processes as wrote it.

Every file is written to a temporary name and renamed, so a killed run never leaves a half-written file under the
final name; checkpoints load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import random
import sys
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from .checks import check_choice, check_device, check_positive
from .data.curate import curated_noise
from .data.dataset import ClusterDataset, to_device
from .data.noise import NoiseConfig, centre_on_weak, rigid_noise
from .distributed import World, process_group
from .errors import CheckpointError, ParameterError
from .files import atomic_open
from .nn.painn import PaiNNVelocity
from .nn.precision import PRECISIONS, resolve_precision, set_matmul_precision, training_network
from .paths import PATHS, Objective, get_path
from .settings import PAIR_LAYOUTS, TRAINING_SPLITS, TrainConfigFields

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
HISTORY = "history.csv"
#: What a checkpoint must hold to be loaded as a model, and in addition to be resumed.
MODEL_KEYS = ("model", "config")
RESUME_KEYS = ("optimizer", "history", "progress", "rank_generators", "device")
#: What ``torch.load`` and the zip reader raise on a truncated, corrupted or foreign file.
UNREADABLE = (
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    KeyError,
    NotImplementedError,
    zipfile.BadZipFile,
    pickle.UnpicklingError,
)


@dataclass
class TrainConfig(TrainConfigFields):
    """Everything a run needs: the fields of :class:`~crystalflow_core.settings.TrainConfigFields` (declared there
    with their defaults and what they mean, so that the command line reads them without torch), checked when it is
    made; ``epochs`` and ``molecule_cutoff`` left ``None`` take the objective's own defaults
    (``Objective.training_defaults``)."""

    def __post_init__(self) -> None:
        check_choice("path", self.path, PATHS)
        check_choice("training_split", self.training_split, TRAINING_SPLITS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("pair_layout", self.pair_layout, PAIR_LAYOUTS)
        for key, value in get_path(self.path, **self.path_kwargs).training_defaults.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        for name in ("epochs", "batch_size", "checkpoint_every"):
            check_positive(name, getattr(self, name))

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
    "training_split",
    "seed",
)


@dataclass
class Progress:
    """Where a run stands: optimiser steps and finished epochs, and within the current epoch the order of the
    training clusters (drawn when it starts), how many of them are done and their summed loss."""

    step: int = 0
    epoch: int = 0
    order: list[int] | None = None
    position: int = 0
    loss_sum: float = 0.0


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else must name a device that exists here."""
    if check_device("device", name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(config: TrainConfig) -> PaiNNVelocity:
    """The network of a run: PaiNN at the config's size, with the options its objective needs."""
    options = get_path(config.path, **config.path_kwargs).network_options
    model = PaiNNVelocity(
        hidden=config.hidden,
        layers=config.layers,
        n_rbf=config.n_rbf,
        cutoff=config.cutoff,
        molecule_cutoff=config.molecule_cutoff,
        **options,
    )
    if config.pair_layout != "timed":
        model.dense_pairs = config.pair_layout == "dense"
        model.compile_edges = config.pair_layout == "compiled_edges"
    return model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: How far apart the seeds of consecutive ranks' per-process random streams are (:func:`make_generators`).
RANK_SEED_STRIDE = 2**32


def make_generators(seed: int, device: torch.device, rank: int = 0) -> dict[str, torch.Generator]:
    """The run's random streams, one per use, so that e.g. turning ``augment`` on leaves the shuffle order alone:
    ``shuffle`` (epoch orders), ``augment`` (redrawn ``x_w``, drawn on the CPU) and ``loss`` (the objective's
    times and noise, on the training device).

    ``shuffle`` is the same in every process of a ``torchrun`` launch, which thus share one epoch order; the
    other two are ``rank × RANK_SEED_STRIDE`` further on, so that each process draws its own noise for its own
    clusters (rank 0's are those of a single process)."""
    offset = rank * RANK_SEED_STRIDE
    return {
        "shuffle": torch.Generator().manual_seed(seed),
        "augment": torch.Generator().manual_seed(seed + 10_000 + offset),
        "loss": torch.Generator(device=device).manual_seed(seed + 20_000 + offset),
    }


def with_data_noise(config: TrainConfig) -> TrainConfig:
    """``config`` with ``noise`` set: as given, else as the data were curated, else the default noise."""
    if config.noise is not None:
        return config
    return replace(config, noise=(curated_noise(config.data) or NoiseConfig()).to_dict())


def redraw_weak(batch, noise: NoiseConfig, generator: torch.Generator) -> torch.Tensor:
    """Augmentation: fresh rigid noise for every molecule of a batch, centred per graph as curation does."""
    x_w = rigid_noise(batch.x_s.cpu(), batch.molecule.cpu(), noise, generator).to(batch.x_s)
    x_w, _ = centre_on_weak(x_w, batch.x_s, batch.batch)
    return x_w


def batch_loss(
    model,
    path: Objective,
    batch,
    dataset: ClusterDataset,
    x_w: torch.Tensor,
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
) -> torch.Tensor:
    """The objective's loss on one PyG batch of ``dataset``, with its molecules' automorphisms if it uses them;
    times drawn as in training, or given per graph ``t [B]``."""
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
        t=t,
    )


#: The validation loss's noise seed, the same in every run so that runs compare, and its times per cluster: evenly
#: spaced quantiles of the objective's training times (one random time per cluster put the same LERP model
#: anywhere between 0.02 and 0.66, and 8 random times per cluster still between 0.26 and 1.50).
VALIDATION_SEED = 0
VALIDATION_DRAWS = 8


def draw_seed(seed: int, cluster_id: str, draw: int) -> int:
    """The noise seed of validation draw ``draw`` of a cluster: a function of ``seed``, the cluster and the draw."""
    digest = hashlib.sha256(f"{seed}:{cluster_id}:{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@torch.no_grad()
def validation_loss(
    model,
    path: Objective,
    dataset: ClusterDataset,
    device: torch.device,
    seed: int = VALIDATION_SEED,
    draws: int = VALIDATION_DRAWS,
) -> tuple[float, float]:
    """The objective on ``dataset`` as ``(mean, std)`` over its clusters of their losses.

    A cluster's loss is a fixed quadrature over the objective's times: the mean over ``draws`` times at evenly
    spaced quantiles (``Objective.time_quantile``), the noise of each drawn from :func:`draw_seed`. Each cluster is
    scored on its own, so the figure depends on the model and the clusters only: not on the batch size, the
    order, or how the clusters are shared among processes. ``std`` is the spread of the per-cluster losses
    (sample standard deviation; NaN for one cluster).
    """
    model.eval()
    quantiles = (torch.arange(draws, dtype=torch.float64) + 0.5) / draws
    per_cluster = torch.zeros(len(dataset), dtype=torch.float64)
    for index, item in enumerate(dataset):
        batch = to_device(Batch.from_data_list([item]), device)
        for draw, quantile in enumerate(quantiles):
            generator = torch.Generator(device=device).manual_seed(draw_seed(seed, item.cluster_id, draw))
            t = path.time_quantile(quantile.reshape(1)).to(device)
            per_cluster[index] += float(batch_loss(model, path, batch, dataset, batch.x_w, generator, t)) / draws
    model.train()
    return float(per_cluster.mean()), float(per_cluster.std()) if len(dataset) > 1 else math.nan


def save_checkpoint(
    run_dir: Path,
    model,
    optimizer,
    rank_generators: list[dict[str, torch.Tensor]],
    progress: Progress,
    history: list[dict],
    config: TrainConfig,
) -> Path:
    """Atomic save of everything needed to resume exactly (tensors, numbers, strings, lists and dicts only, so
    ``weights_only`` loadable), and of ``history.csv``. ``rank_generators`` holds the states of every process's
    random streams, in rank order (one entry for a single process)."""
    path = run_dir / CHECKPOINT
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rank_generators": rank_generators,
        "device": next(model.parameters()).device.type,
        "progress": asdict(progress),
        "history": history,
        "config": config.to_dict(),
        "pair_layouts": model.pair_layout.state(),
    }
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)
    with atomic_open(run_dir / HISTORY) as handle:
        pd.DataFrame(history).to_csv(handle, index=False)
    return path


def read_checkpoint(path: Path, keys: tuple[str, ...] = MODEL_KEYS) -> dict:
    """The contents of a checkpoint (tensors on the CPU) that holds ``keys``; a :class:`CheckpointError` naming
    the file says why one cannot be used. Checksums are verified first: ``torch.load`` alone reads a corrupted
    tensor without complaint."""
    if not path.is_file():
        raise CheckpointError(path, "no checkpoint (train first with `crystalflow train`)")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        state = None if damaged else torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as error:
        reason = (str(error).splitlines() or [""])[0]
        raise CheckpointError(path, f"unreadable: truncated, corrupted or not a checkpoint ({reason!r})") from error
    if damaged:
        raise CheckpointError(path, f"corrupted: checksum mismatch in {damaged}")
    missing = [key for key in keys if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(path, f"not a checkpoint this version can use (missing {', '.join(missing)})")
    return state


def _checkpoint_config(path: Path, state: dict) -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(path, f"unusable settings ({error})") from error


def _load_weights(path: Path, model: torch.nn.Module, state: dict, config: TrainConfig) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        problem = f"weights do not fit the {config.path!r} network of its settings ({str(error).splitlines()[0]})"
        raise CheckpointError(path, problem) from error


def load_model(run_dir: str | Path, device: str | torch.device = "auto") -> tuple[PaiNNVelocity, TrainConfig]:
    """The trained model of a run directory (in eval mode) and its config."""
    path = Path(run_dir) / CHECKPOINT
    device = resolve_device(device) if isinstance(device, str) else device
    state = read_checkpoint(path)
    config = _checkpoint_config(path, state)
    model = build_model(config)
    _load_weights(path, model, state, config)
    model.to(device).eval()
    return model, config


def _resume_state(path: Path, config: TrainConfig, device: torch.device, world: World) -> dict | None:
    """The checkpoint to resume from (``None``: start afresh); refuses one written for other settings or by
    another number of processes (the batches would differ)."""
    if not path.exists():
        return None
    state = read_checkpoint(path, MODEL_KEYS + RESUME_KEYS)
    previous, current = state["config"], config.to_dict()
    clash = [f"{k}: {previous.get(k)!r} → {current[k]!r}" for k in ARCHITECTURE_KEYS if previous.get(k) != current[k]]
    if clash:
        raise CheckpointError(path, f"cannot resume, settings differ ({'; '.join(clash)}); use a new --out")
    if state["device"] != device.type:
        raise CheckpointError(path, f"written on {state['device']}; resume there (--device {state['device']})")
    processes = len(state["rank_generators"])
    if processes != world.size:
        problem = f"written by {processes} processes, this run has {world.size}"
        raise CheckpointError(path, f"cannot resume, {problem}; use torchrun --nproc_per_node={processes}")
    return state


def _cosine_schedule(total_steps: int, warmup: int = 20) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to 5 % of the peak."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@dataclass
class _Run:
    """One training run in progress: its pieces, and the loop that advances them."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    world: World
    path: Objective
    train_set: ClusterDataset
    val_set: ClusterDataset
    model: PaiNNVelocity
    network: torch.nn.Module
    """``model`` as training calls it: in its precision mode, compiled if asked (``nn.precision.training_network``),
    in DistributedDataParallel under ``torchrun`` (``World.wrap``)."""
    optimizer: torch.optim.Optimizer
    generators: dict[str, torch.Generator]
    progress: Progress = field(default_factory=Progress)
    history: list[dict] = field(default_factory=list)

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint's ``state`` (see :func:`_resume_state`)."""
        path = self.run_dir / CHECKPOINT
        progress = Progress(**state["progress"])
        if progress.order is not None and len(progress.order) != len(self.train_set):
            problem = f"its epoch has {len(progress.order)} training clusters, the data now {len(self.train_set)}"
            raise CheckpointError(path, f"cannot resume, {problem}; use a new --out")
        _load_weights(path, self.model, state, self.config)
        self.model.pair_layout.load_state(state.get("pair_layouts", []))
        self.optimizer.load_state_dict(state["optimizer"])
        for name, generator in self.generators.items():
            generator.set_state(state["rank_generators"][self.world.rank][name])
        self.progress, self.history = progress, state["history"]

    def save(self) -> None:
        """Checkpoint: rank 0 writes it, with every process's random streams; all processes wait until it has."""
        streams = self.world.gather({name: generator.get_state() for name, generator in self.generators.items()})
        if self.world.main:
            save_checkpoint(self.run_dir, self.model, self.optimizer, streams, self.progress, self.history, self.config)
        self.world.barrier()

    def share(self, indices: list[int]) -> tuple[list[int], float]:
        """This process's part of the batch ``indices`` (``World.share``) and the weight of its loss.

        ``batch_loss`` is a mean over the batch's atom coordinates, so the batch's loss is the mean of the parts'
        losses weighted by their atoms; weighting each by ``size × its atoms / the batch's atoms`` makes the
        average that DistributedDataParallel takes of the parts' gradients the gradient of the batch's loss (the
        weight is 1 for a single process). A process whose part is empty (a last batch smaller than the world)
        runs the batch's first cluster at weight 0: every process must take part in every step.
        """
        if not self.world.distributed:
            return indices, 1.0
        share = self.world.share(indices)
        if not share:
            return indices[:1], 0.0
        atoms = {i: self.train_set[i].num_nodes for i in indices}
        return share, self.world.size * sum(atoms[i] for i in share) / sum(atoms.values())

    def step(self, indices: list[int], lr: float, noise: NoiseConfig) -> float:
        """One optimiser step on the training clusters ``indices`` (under ``torchrun``, this process's
        :meth:`share` of them); returns the batch's mean loss."""
        share, weight = self.share(indices)
        batch = to_device(Batch.from_data_list([self.train_set[i] for i in share]), self.device)
        x_w = redraw_weak(batch, noise, self.generators["augment"]) if self.config.augment else batch.x_w
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = weight * batch_loss(self.network, self.path, batch, self.train_set, x_w, self.generators["loss"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return self.world.mean(loss).item()

    def epoch(self, schedule: Callable[[int], float], bar: tqdm) -> None:
        """Finish the current epoch from where it stands, checkpointing every ``checkpoint_every`` steps."""
        config, progress = self.config, self.progress
        noise = NoiseConfig(**config.noise)
        if progress.order is None:
            progress.order = torch.randperm(len(self.train_set), generator=self.generators["shuffle"]).tolist()
        while progress.position < len(progress.order):
            indices = progress.order[progress.position : progress.position + config.batch_size * self.world.size]
            loss = self.step(indices, config.lr * schedule(progress.step), noise)
            progress.step += 1
            progress.position += len(indices)
            progress.loss_sum += loss * len(indices)
            bar.update()
            bar.set_postfix(epoch=progress.epoch + 1, loss=f"{loss:.4f}")
            if progress.step % config.checkpoint_every == 0:
                self.save()
        record = {
            "epoch": progress.epoch + 1,
            "step": progress.step,
            "train_loss": progress.loss_sum / len(progress.order),
        }
        if len(self.val_set):
            record["val_loss"], record["val_loss_std"] = validation_loss(
                self.model, self.path, self.val_set, self.device
            )
        self.history.append(record)
        self.progress = Progress(step=progress.step, epoch=progress.epoch + 1)
        self.save()


def _start(config: TrainConfig, device: torch.device, world: World) -> _Run:
    """A fresh run of ``config`` on ``device`` in process ``world``: data, model (seeded initialisation),
    optimiser and generators."""
    seed_everything(config.seed)
    every = config.training_split == "all"
    with world.main_first():  # rank 0 writes the data's tensor cache, the others read it
        train_set = ClusterDataset(
            config.data,
            split=None if every else "train",
            seed=config.seed,
            subset=config.subset,
            progress=config.progress and world.main,
        )
        val_split = ClusterDataset(config.data, split="val", seed=config.seed, subset=config.subset, progress=False)
    if len(train_set) == 0:
        raise ParameterError("data", config.data, "the training split is empty")
    # Training on every crystal leaves nothing to validate on: the history then has no val_loss.
    val_set = torch.utils.data.Subset(val_split, []) if every else val_split
    model = build_model(config).to(device)
    precision = resolve_precision(config.precision, device)
    set_matmul_precision(precision)
    return _Run(
        config=config,
        run_dir=Path(config.out),
        device=device,
        world=world,
        path=get_path(config.path, **config.path_kwargs),
        train_set=train_set,
        val_set=val_set,
        model=model,
        network=world.wrap(training_network(model, precision, config.compile)),
        optimizer=torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay),
        generators=make_generators(config.seed, device, world.rank),
    )


def _report_resume(run: _Run) -> None:
    """Say where a resumed run picks up (with ``progress`` on, by rank 0), so a restart shows that nothing is
    redone."""
    if run.config.progress and run.world.main:
        print(
            f"resuming {run.run_dir / CHECKPOINT} at step {run.progress.step}: epoch {run.progress.epoch + 1}, "
            f"{run.progress.position}/{len(run.train_set)} training clusters done",
            file=sys.stderr,
        )


def train(config: TrainConfig) -> pd.DataFrame:
    """Train (or resume) one run; returns the loss history, one row per epoch. Under ``torchrun`` every process
    calls this and trains its share (see the module's docstring); each returns the history."""
    config = with_data_noise(config)
    device = resolve_device(config.device)
    with process_group(device) as world:
        history = _train_in(world, config, device)
    return pd.DataFrame(history)


def _train_in(world: World, config: TrainConfig, device: torch.device) -> list[dict]:
    """:func:`train` in ``world``; returns the history. The run (its network wrapped for ``world``) is gone when
    this returns, before the process group is left (:func:`~crystalflow_core.distributed.process_group`)."""
    run = _start(config, world.device(device), world)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    state = _resume_state(run.run_dir / CHECKPOINT, config, run.device, world)
    if state is not None:
        run.restore(state)
        _report_resume(run)
    if world.main:
        with atomic_open(run.run_dir / CONFIG) as handle:
            json.dump(config.to_dict(), handle, indent=2)
    steps_per_epoch = math.ceil(len(run.train_set) / (config.batch_size * world.size))
    schedule = _cosine_schedule(steps_per_epoch * config.epochs)
    bar = tqdm(
        total=steps_per_epoch * config.epochs,
        initial=run.progress.step,
        desc=f"train {config.path}",
        unit="step",
        disable=not (config.progress and world.main),
    )
    run.model.train()
    while run.progress.epoch < config.epochs:
        run.epoch(schedule, bar)
    bar.close()
    return run.history
