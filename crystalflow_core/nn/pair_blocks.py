"""PaiNN's continuous-filter convolution as one matrix product per cluster, without per-edge feature tensors.

PaiNN's filter of a pair is linear in a fixed radial basis: W_ij = (Σ_k rbf_k(d_ij) A_k + b) · fcut(d_ij), with
learned `A [K, 3F]` and `b [3F]`. So for any features X_j of the neighbours,

    Σ_j W_ij ∘ X_j = Σ_k A_k ∘ (Σ_j B_ijk X_j) + b ∘ Σ_j B_ij,K X_j,
    B_ijk = rbf_k(d_ij)·fcut(d_ij),  B_ij,K = fcut(d_ij),

and Σ_j B_ijk X_j is a dense matrix product of the cluster's `[n·(K+1), n]` basis matrix with `X [n, C]`. The
basis depends on geometry only (no learned weights, no gradient), so it is built once per forward pass and shared
by every layer; what a layer keeps for its backward pass is `[N, K+1, C]`, independent of the number of
neighbours. The edge formulation keeps `[E, 3, F]` tensors instead, which dominate memory at the paper's
20–50 Å cutoffs (≈ 470 neighbours per atom in a 500-atom cluster).

The unit vectors enter the same way: Σ_j B_ijk u_ij X_j = Σ_j G_ijk x_j X_j − x_i Σ_j G_ijk X_j with
G_ijk = B_ijk / d_ij, so the direction messages are a second product with features X_j ⊗ x_j (x centred per
cluster, which keeps the difference well conditioned in float32).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.utils import to_dense_batch

from crystalflow_core.nn.precision import full_precision
from crystalflow_core.nn.radial import CosineCutoff, GaussianRBF

#: Above this many bytes of basis matrices a batch falls back to edge lists (a 500-atom cluster with 20 RBF
#: needs 42 MB; the largest bundled cluster, 2023 atoms, 690 MB).
DENSE_BASIS_LIMIT_BYTES = 2 * 1024**3

#: Basis values below this are set to zero (they are far below float32's resolution of the sums they enter).
NEGLIGIBLE_BASIS = 1e-30

#: Dense products also do the work of every pair beyond the cutoff and of the padding of smaller clusters up to
#: the batch's largest, edge lists keep `[E, 3F]` tensors per layer: which is faster depends on the machine (on one
#: 2-core CPU a 493-atom cluster at 5 Å, 7 % of its pairs within the cutoff, trained 1.3× faster dense, on another
#: 2× slower). :class:`PairLayoutChooser` times both; this fraction of the padded pairs is only the guess of a
#: compiled network, which is not timed.
DENSE_PAIR_FRACTION = 0.05

#: Edge lists are not tried where a step would keep more than this many bytes of per-edge tensors and over
#: `EDGE_MEMORY_FACTOR` times the dense blocks' (at 20 Å, 8 clusters of 500 atoms: ~50 GB against ~3 GB).
EDGE_TRIAL_LIMIT_BYTES = 2 * 1024**3
EDGE_MEMORY_FACTOR = 4


def dense_basis_bytes(batch: Tensor, num_graphs: int, n_rbf: int, element_size: int) -> int:
    """Bytes the two basis matrices of a batch would take: 2 · B · n_max² · (K + 1) elements."""
    return 2 * num_graphs * largest_graph(batch, num_graphs) ** 2 * (n_rbf + 1) * element_size


def use_dense_blocks(edges: int, batch: Tensor, num_graphs: int, n_rbf: int, element_size: int) -> bool:
    """The untimed guess (for a compiled network): dense blocks where `edges` are at least `DENSE_PAIR_FRACTION` of
    the padded pairs B · n_max² and the basis fits in `DENSE_BASIS_LIMIT_BYTES`."""
    padded_pairs = num_graphs * largest_graph(batch, num_graphs) ** 2
    fits = dense_basis_bytes(batch, num_graphs, n_rbf, element_size) <= DENSE_BASIS_LIMIT_BYTES
    return fits and edges >= DENSE_PAIR_FRACTION * padded_pairs


#: The pair layouts: dense blocks, edge lists, and edge lists whose message layers are compiled by
#: ``torch.compile`` (one fused loop of gathers, products and sums, forward and backward).
DENSE, EDGES, COMPILED_EDGES = "dense blocks", "edge lists", "compiled edge lists"

#: Edge lists are compiled from this many edges on (compiling takes seconds, once per process).
COMPILE_MIN_EDGES = 8192


def layouts_to_try(
    edges: int,
    batch: Tensor,
    num_graphs: int,
    n_rbf: int,
    hidden: int,
    layers: int,
    element_size: int,
    compile_edges: bool | None = False,
) -> tuple[str, ...]:
    """The layouts worth timing for a batch: dense blocks while their basis fits in `DENSE_BASIS_LIMIT_BYTES`;
    edge lists unless their per-edge tensors (about 18 · F values per edge and layer eager, 6 · F compiled) would
    pass `EDGE_TRIAL_LIMIT_BYTES` and `EDGE_MEMORY_FACTOR` times the dense blocks' basis and `[B·n, K+1, 8F]`
    products per layer. Edge lists are compiled with `compile_edges` True, and with None from `COMPILE_MIN_EDGES`
    edges on (compiled, they are 2.5–3× faster than eager on a CPU core and keep a third of the memory; timing the
    eager ones too would only raise the run's peak memory)."""
    if compile_edges is None:
        edge_layouts = (COMPILED_EDGES,) if edges >= COMPILE_MIN_EDGES else (EDGES,)
    else:
        edge_layouts = (COMPILED_EDGES,) if compile_edges else (EDGES,)
    basis = dense_basis_bytes(batch, num_graphs, n_rbf, element_size)
    if basis > DENSE_BASIS_LIMIT_BYTES:
        return edge_layouts
    products = num_graphs * largest_graph(batch, num_graphs) * (n_rbf + 1) * 8 * hidden * layers * element_size
    kept = []
    for layout in edge_layouts:
        edge_bytes = edges * _EDGE_VALUES[layout] * hidden * layers * element_size
        if edge_bytes <= EDGE_TRIAL_LIMIT_BYTES or edge_bytes <= EDGE_MEMORY_FACTOR * (basis + products):
            kept.append(layout)
    return (*kept, DENSE)


#: Values per edge, feature and layer that a training step keeps with edge lists (measured: ~27 kB and ~9.4 kB
#: per edge at 128 features and 3 layers in float32).
_EDGE_VALUES = {EDGES: 18, COMPILED_EDGES: 6}


def largest_graph(batch: Tensor, num_graphs: int) -> int:
    """Atoms in the largest of the batch's `num_graphs` graphs (0 for an empty batch)."""
    return int(torch.bincount(batch, minlength=num_graphs).max()) if batch.numel() else 0


def size_class(edges: int, batch: Tensor, num_graphs: int, dtype: torch.dtype) -> tuple:
    """The size class of a batch whose pair layout is chosen once: training or not, device, dtype, number of
    clusters, and the largest cluster and the fraction of its padded pairs within the cutoff, each to a factor √2."""
    n_max = largest_graph(batch, num_graphs)
    fraction = edges / max(1, num_graphs * n_max**2)
    return (
        torch.is_grad_enabled(),
        batch.device.type,
        dtype,
        num_graphs,
        round(2 * math.log2(max(1, n_max))),
        round(2 * math.log2(fraction)) if fraction > 0 else None,
    )


def _dtype_as_name(part: object) -> object:
    return str(part) if isinstance(part, torch.dtype) else part


def _dtype_from_name(part: object) -> object:
    """The dtype a size class part names (``"torch.float32"``); any other part as it is."""
    if isinstance(part, str) and part.startswith("torch."):
        return getattr(torch, part.removeprefix("torch."))
    return part


class LayoutTrial:
    """The time one step takes with one layout: from building the pairs to the end of the forward pass, plus the
    backward pass from the output back to the features the layers start from (if one follows)."""

    def __init__(self, layout: str, device: torch.device) -> None:
        self.layout = layout
        self.device = device
        self.start = self._now()
        self.forward: float | None = None
        self.backward: float | None = None
        self._backward_start = 0.0
        self._waiting = 0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def finish_forward(self, output: Tensor, inputs: tuple[Tensor, ...]) -> None:
        """The forward pass made `output` from the layers' starting features `inputs`; time the backward between."""
        self.forward = self._now() - self.start
        waiting = [tensor for tensor in inputs if tensor.requires_grad]
        if output.requires_grad and waiting:
            self._waiting = len(waiting)
            output.register_hook(self._backward_starts)
            for tensor in waiting:
                tensor.register_hook(self._input_reached)

    def _backward_starts(self, grad: Tensor) -> None:
        self._backward_start = self._now()

    def _input_reached(self, grad: Tensor) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            self.backward = self._now() - self._backward_start


class PairLayoutChooser:
    """A pair layout (:data:`DENSE`, :data:`EDGES`, :data:`COMPILED_EDGES`; all exact) chosen per size class of batch
    (:func:`size_class`) by timing each on the first steps that meet it, `trials` steps each taken in turn, and
    keeping the fastest (the least time of each); the choice is printed once. Training steps count their backward
    pass, inference only the forward."""

    #: Steps timed with each layout before one is kept.
    trials = 2

    def __init__(self) -> None:
        #: The layout kept for each size class, and the line printed about it.
        self.choices: dict[tuple, str] = {}
        self.reports: dict[tuple, str] = {}
        self._trials: dict[tuple, list[LayoutTrial]] = {}

    def pick(
        self, key: tuple, layouts: tuple[str, ...], device: torch.device, what: str
    ) -> tuple[str, LayoutTrial | None]:
        """The layout of a step of size class `key` among `layouts`, and the trial to time it by (None once chosen);
        `what` describes the class in the printed choice."""
        if key in self.choices:
            return self.choices[key], None
        if len(layouts) == 1:
            return self._keep(key, layouts[0], f"{what}: {layouts[0]} (the only layout allowed that fits in memory)")
        trials = self._trials.setdefault(key, [])
        trials[:] = [trial for trial in trials if trial.forward is not None]  # not those of a failed forward pass
        if len(trials) < len(layouts) * self.trials:
            trial = LayoutTrial(layouts[len(trials) % len(layouts)], device)
            trials.append(trial)
            return trial.layout, trial
        with_backward = all(trial.backward is not None for trial in trials)
        cost = dict.fromkeys(layouts, math.inf)
        for trial in trials:
            seconds = trial.forward + (trial.backward if with_backward else 0.0)
            cost[trial.layout] = min(cost[trial.layout], seconds)
        layout = min(layouts, key=cost.__getitem__)
        timed = "step" if with_backward else "forward pass"
        times = ", ".join(f"{name} {cost[name]:.3g} s" for name in layouts)
        del self._trials[key]
        return self._keep(key, layout, f"{what}: {layout} ({times} per {timed})")

    def state(self) -> list[list]:
        """The layouts kept so far as plain lists (``[*size class, layout]``, the dtype by name), for a checkpoint:
        a resumed run keeps them instead of timing again, and so continues as the interrupted one would have."""
        return [[*map(_dtype_as_name, key), layout] for key, layout in self.choices.items()]

    def load_state(self, state: list[list]) -> None:
        """Keep the layouts of :meth:`state`."""
        for *key, layout in state:
            self.choices[tuple(map(_dtype_from_name, key))] = layout

    def _keep(self, key: tuple, layout: str, message: str) -> tuple[str, None]:
        self.choices[key] = layout
        self.reports[key] = f"pair layout for {message}"
        print(self.reports[key], file=sys.stderr, flush=True)
        return layout, None


@dataclass
class PairBlocks:
    """Per-cluster basis matrices of a batch (see the module docstring) and the atoms' places in them.

    `filter_basis` and `direction_basis` are `[B, n·(K+1), n]` (row i·(K+1) + k, column j); `slots [N]` is each
    atom's row in the padded `[B·n]` layout; `padded_positions [B·n, 3]` are centred per cluster (zeros in the
    padding); `inverse_degree [N]` is 1 / max(1, Σ_j fcut(d_ij)).
    """

    filter_basis: Tensor
    direction_basis: Tensor
    slots: Tensor
    padded_positions: Tensor
    inverse_degree: Tensor

    def pad(self, features: Tensor) -> Tensor:
        """Atom rows `[N, ...]` in the padded per-cluster layout `[B·n, ...]` (zeros in the padding)."""
        graphs, _, n_max = self.filter_basis.shape
        return features.new_zeros(graphs * n_max, *features.shape[1:]).index_copy(0, self.slots, features)

    def aggregate(self, basis: Tensor, features: Tensor) -> Tensor:
        """Σ_j basis_ijk features_j, `[B·n, K+1, C]` in the padded layout, from padded `features [B·n, C]`.

        Rows of padding are zero; :meth:`unpad` of what is made from them gives the atoms' rows. Computed in the
        basis's float32 also where the layers run in bfloat16 (:mod:`~crystalflow_core.nn.precision`).
        """
        graphs, rows, n_max = basis.shape
        with full_precision(basis.device):  # the direction messages subtract two of these sums
            summed = torch.bmm(basis, features.to(basis.dtype).view(graphs, n_max, -1))  # [B, n·(K+1), C]
        return summed.view(graphs * n_max, rows // n_max, -1)

    def unpad(self, padded: Tensor) -> Tensor:
        """The atoms' rows `[N, ...]` of a padded `[B·n, ...]` tensor (a view when nothing is padded)."""
        if padded.shape[0] == self.slots.shape[0]:
            return padded
        return padded.index_select(0, self.slots)


def build_pair_blocks(
    pos: Tensor, batch: Tensor, num_graphs: int, rbf: GaussianRBF, cutoff_fn: CosineCutoff, norm_eps: float
) -> PairBlocks:
    """:class:`PairBlocks` of atoms at `pos [N, 3]` in graphs `batch [N]` for pairs closer than the cutoff (exactly
    the pairs of :func:`~crystalflow_core.nn.painn.radius_edges`; farther ones weigh 0 in `cutoff_fn`)."""
    dense_pos, mask = to_dense_batch(pos, batch, batch_size=num_graphs)  # [B, n, 3], [B, n]
    n_max = dense_pos.shape[1]
    centre = dense_pos.sum(dim=1, keepdim=True) / mask.sum(dim=1).clamp(min=1)[:, None, None]
    dense_pos = (dense_pos - centre) * mask[..., None]
    difference = dense_pos[:, None, :, :] - dense_pos[:, :, None, :]  # [B, i, j, 3]: x_j − x_i
    distance = torch.sqrt((difference**2).sum(dim=-1) + norm_eps)  # [B, i, j]
    eye = torch.eye(n_max, dtype=torch.bool, device=pos.device)
    weight = cutoff_fn(distance) * (mask[:, :, None] & mask[:, None, :] & ~eye)
    radial = rbf(distance) * weight[..., None]  # [B, i, j, K]
    # Far Gaussian tails underflow to subnormal floats, which slow every product they enter many times over.
    radial = radial.masked_fill(radial < NEGLIGIBLE_BASIS, 0.0)
    basis = torch.cat([radial, weight[..., None]], dim=-1).transpose(2, 3)  # [B, i, K+1, j]
    rows = n_max * basis.shape[2]
    slots = torch.arange(num_graphs * n_max, device=pos.device).view(num_graphs, n_max)[mask]
    return PairBlocks(
        filter_basis=basis.reshape(num_graphs, rows, n_max),
        direction_basis=(basis / distance[:, :, None, :]).reshape(num_graphs, rows, n_max),
        slots=slots,
        padded_positions=dense_pos.reshape(-1, 3),
        inverse_degree=1.0 / weight.sum(dim=-1).reshape(-1)[slots].clamp(min=1.0),
    )
