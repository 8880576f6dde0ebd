"""crystalflow's PaiNN velocity model for the schnetpack peer benchmark (``bench_schnetpack.py``, not in this
repository).

``--model spk_painn,benchmarks/schnetpack_adapter.py:make_model,benchmarks/schnetpack_adapter.py:make_edge_model``
times, in one run and on the same clusters, target, loss and optimiser: schnetpack's PaiNN, ours as it trains
(the pair layout, per-cluster matrix products of :mod:`crystalflow_core.nn.pair_blocks` or edge lists, eager or
compiled, chosen by timing each on its first steps: give the benchmark ``--warmup 4``), ours on edge lists, ours
on edge lists with compiled message sums (``make_compiled_edge_model``) and ours on dense blocks
(``make_dense_model``). With ``CRYSTALFLOW_LAYOUT_LOG=FILE`` the layout ours chose is appended to FILE (CSV:
cutoff, batch, layout, the line it printed).

Our network is the one ``crystalflow train`` builds, at the benchmark's width, depth, RBF count and cutoff: the
time and ``x_w`` conditions, molecule pooling and pre-norms included. It builds its own pairs from the
positions inside the step (schnetpack's neighbour list is built before the step and not timed); ``x_w`` is the
positions plus a fixed 0.5 Å Gaussian offset and t = 0.5.

On a GPU the precision modes of ``crystalflow train --precision`` and ``--compile`` are timed as models of their
own (``make_tf32_model``, ``make_bf16_model``, ``make_compiled_model``). Each model sets the process's TF32 switch
in every forward pass, so with ``--no-isolate`` a TF32 model never leaves it on for the next one (list a
float32 model last).
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmark runs in its own venv

from crystalflow_core.nn import PaiNNVelocity  # noqa: E402
from crystalflow_core.nn.precision import set_matmul_precision, training_network  # noqa: E402


class CrystalflowVelocity(nn.Module):
    """Maps the benchmark's batch dict onto :class:`PaiNNVelocity`'s arguments."""

    def __init__(
        self,
        features: int,
        interactions: int,
        rbf: int,
        cutoff: float,
        dense: bool | None,
        precision: str = "fp32",
        compiled: bool = False,
    ) -> None:
        super().__init__()
        network = PaiNNVelocity(hidden=features, layers=interactions, n_rbf=rbf, cutoff=cutoff)
        network.dense_pairs = dense
        self.network = training_network(network, precision, compiled)
        self.precision = precision
        self._offsets: dict[tuple[int, torch.device], Tensor] = {}
        self._logged = 0

    def _offset(self, positions: Tensor) -> Tensor:
        key = (positions.shape[0], positions.device)
        if key not in self._offsets:
            generator = torch.Generator().manual_seed(0)
            self._offsets[key] = 0.5 * torch.randn(positions.shape, generator=generator).to(positions)
        return self._offsets[key]

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        positions, graph = batch["_positions"], batch["_idx_m"]
        t = torch.full((int(batch["_n_atoms"].shape[0]),), 0.5, dtype=positions.dtype, device=positions.device)
        x_w = positions + self._offset(positions)
        set_matmul_precision(self.precision)
        velocity = self.network(batch["_atomic_numbers"], positions, x_w, t, graph, batch["cluster_mol_idx"])
        self._log_layouts(t.shape[0])
        return velocity

    def _log_layouts(self, clusters: int) -> None:
        """Append the layouts chosen since the last call to ``$CRYSTALFLOW_LAYOUT_LOG``."""
        network = getattr(self.network, "network", self.network)  # a PrecisionNetwork's
        chooser = getattr(network, "pair_layout", None)
        log = os.environ.get("CRYSTALFLOW_LAYOUT_LOG")
        if not log or chooser is None or len(chooser.reports) == self._logged:
            return
        with open(log, "a", newline="") as file:
            for key in list(chooser.reports)[self._logged :]:
                csv.writer(file).writerow([network.cutoff, clusters, chooser.choices[key], chooser.reports[key]])
        self._logged = len(chooser.reports)


def make_model(features: int, interactions: int, rbf: int, cutoff: float) -> nn.Module:
    """Ours as ``crystalflow train`` runs it (the pair layout chosen by timing both on the first steps)."""
    return CrystalflowVelocity(features, interactions, rbf, cutoff, dense=None)


def make_edge_model(features: int, interactions: int, rbf: int, cutoff: float) -> nn.Module:
    """Ours with messages summed over edge lists (the formulation schnetpack uses)."""
    return CrystalflowVelocity(features, interactions, rbf, cutoff, dense=False)


def make_compiled_edge_model(features: int, interactions: int, rbf: int, cutoff: float) -> nn.Module:
    """Ours on edge lists whose message sums are compiled by ``torch.compile`` (one of the layouts timed)."""
    model = CrystalflowVelocity(features, interactions, rbf, cutoff, dense=False)
    model.network.compile_edges = True
    return model


def make_dense_model(features: int, interactions: int, rbf: int, cutoff: float) -> nn.Module:
    """Ours with messages as per-cluster matrix products (dense pair blocks)."""
    return CrystalflowVelocity(features, interactions, rbf, cutoff, dense=True)


def make_tf32_model(features: int, interactions: int, rbf: int, cutoff: float) -> nn.Module:
    """Ours with TF32 matrix products (``--precision tf32``, the default on CUDA)."""
    return CrystalflowVelocity(features, interactions, rbf, cutoff, dense=None, precision="tf32")


def make_bf16_model(features: int, interactions: int, rbf: int, cutoff: float) -> nn.Module:
    """Ours with bfloat16 atom-wise layers (``--precision bf16``)."""
    return CrystalflowVelocity(features, interactions, rbf, cutoff, dense=None, precision="bf16")


def make_compiled_model(features: int, interactions: int, rbf: int, cutoff: float) -> nn.Module:
    """Ours in float32 compiled by ``torch.compile`` (``--compile``)."""
    return CrystalflowVelocity(features, interactions, rbf, cutoff, dense=None, compiled=True)
