"""PaiNN velocity field v_θ(x_t, x_w, t) for CrystalFlow (paper Eq. 1–2; Schütt et al. 2021).

The network sees a batch of clusters in PyG layout: flat atom tensors plus a sorted `batch` vector giving each
atom's graph. Messages are passed on the current coordinates x_t within a cutoff, never between graphs. The
condition x_w enters only through the displacement x_w − x_t (a vector, invariant to translations) and its
norm (a scalar), so the predicted velocity is translation invariant and rotation (and reflection) equivariant.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter, to_dense_batch

from crystalflow_core.nn.pair_blocks import (
    COMPILED_EDGES,
    DENSE,
    NEGLIGIBLE_BASIS,
    LayoutTrial,
    PairBlocks,
    PairLayoutChooser,
    build_pair_blocks,
    largest_graph,
    layouts_to_try,
    size_class,
    use_dense_blocks,
)
from crystalflow_core.nn.precision import full_precision
from crystalflow_core.nn.radial import CosineCutoff, GaussianRBF
from crystalflow_core.so3 import inertial_axes

_NORM_EPS = 1e-8


def radius_edges(pos: Tensor, batch: Tensor, cutoff: float, num_graphs: int) -> Tensor:
    """Directed edges `[2, E]` (source j, target i) between distinct atoms of one graph closer than `cutoff`, sorted
    by target, then source.

    Built from dense per-graph distance matrices `[B, N_max, N_max]`, so memory grows with B·N_max²; a cutoff
    larger than the cluster diameter gives all pairs. `pos` is `[N, 3]`, `batch` `[N]` sorted graph indices.
    """
    index = torch.arange(pos.shape[0], device=pos.device)
    dense_index, mask = to_dense_batch(index, batch, fill_value=-1, batch_size=num_graphs)
    dense_pos, _ = to_dense_batch(pos, batch, batch_size=num_graphs)
    distance = torch.cdist(dense_pos, dense_pos, compute_mode="donot_use_mm_for_euclid_dist")
    n_max = dense_index.shape[1]
    not_self = ~torch.eye(n_max, dtype=torch.bool, device=pos.device)
    adjacency = mask[:, :, None] & mask[:, None, :] & not_self & (distance < cutoff)
    graph, target, source = adjacency.nonzero(as_tuple=True)
    return torch.stack([dense_index[graph, source], dense_index[graph, target]])


class SinusoidalTimeFeatures(nn.Module):
    """Features `[B, dim]` of times t ∈ [0, 1] `[B]`: sin and cos at frequencies spaced geometrically in 1..1000."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time_embedding must be even, got {dim}")
        self.register_buffer("frequencies", torch.exp(torch.linspace(0.0, math.log(1000.0), dim // 2)))

    def forward(self, t: Tensor) -> Tensor:
        """Map `t [B]` to `[B, dim]`."""
        angle = t[:, None] * self.frequencies
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class PaiNNMessage(nn.Module):
    """Eq. (1): scalar and vector messages from neighbours j to atom i, filtered by the distance |x_ij|.

    The sums are taken either over an edge list (:class:`EdgeGraph`) or as per-cluster matrix products
    (:class:`~crystalflow_core.nn.pair_blocks.PairBlocks`); both give the same messages from the same weights.
    """

    def __init__(self, hidden: int, n_rbf: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.scalar_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))
        self.filter = nn.Linear(n_rbf, 3 * hidden)

    def forward(self, h_s: Tensor, h_v: Tensor, pairs: EdgeGraph | PairBlocks) -> tuple[Tensor, Tensor]:
        """Summed messages `(Δh_s [N, F], Δh_v [N, 3, F])` from features `h_s [N, F]`, `h_v [N, 3, F]`."""
        if isinstance(pairs, PairBlocks):
            return self._from_blocks(h_s, h_v, pairs)
        f = self.hidden
        # The filter (Σ_k rbf_k A_k + b)·fcut as one product of the basis [rbf·fcut, fcut] with [A; b].
        weight = torch.cat([self.filter.weight.T, self.filter.bias[None]], dim=0)  # [K+1, 3F]
        phi = self.scalar_mlp(h_s)
        if pairs.compiled:
            summed = _COMPILED_EDGE_MESSAGES(phi, h_v, pairs.basis, pairs.unit, *pairs.edges, weight)
            if summed is not None:
                return summed
        message = pairs.gather(phi) * (pairs.basis @ weight)  # [E, 3F]
        d_s, gate_v, gate_dir = torch.split(message, f, dim=-1)
        h_v_j = pairs.gather(h_v)  # [E, 3, F]
        d_v = torch.addcmul(gate_dir[:, None, :] * pairs.unit[:, :, None], gate_v[:, None, :], h_v_j)
        return pairs.sum(d_s), pairs.sum(d_v)

    def _from_blocks(self, h_s: Tensor, h_v: Tensor, blocks: PairBlocks) -> tuple[Tensor, Tensor]:
        f = self.hidden
        phi_s, phi_v, phi_dir = torch.split(blocks.pad(self.scalar_mlp(h_s)), f, dim=-1)
        x, h_v = blocks.padded_positions, blocks.pad(h_v)
        n = x.shape[0]
        gated = blocks.aggregate(blocks.filter_basis, torch.cat([phi_s, (phi_v[:, None] * h_v).flatten(1)], -1))
        placed = (phi_dir[:, None] * x[..., None]).flatten(1)  # φ_j ⊗ x_j
        directed = blocks.aggregate(blocks.direction_basis, torch.cat([placed, phi_dir], -1))
        weight = torch.cat([self.filter.weight.T, self.filter.bias[None]], dim=0)  # [K+1, 3F]
        w_s, w_v, w_dir = torch.split(weight, f, dim=-1)
        # Contract the basis axis before splitting the channels: slicing the large [B·n, K+1, 4F] products would
        # make the backward pass zero-fill a copy of each.
        gated = (gated * torch.cat([w_s, w_v, w_v, w_v], dim=-1)).sum(dim=1)  # [B·n, 4F]
        directed = (directed * torch.cat([w_dir, w_dir, w_dir, w_dir], dim=-1)).sum(dim=1)
        d_s, d_v = gated[:, :f], gated[:, f:].view(n, 3, f)
        d_v = d_v + directed[:, : 3 * f].view(n, 3, f) - x[..., None] * directed[:, None, 3 * f :]
        return blocks.unpad(d_s), blocks.unpad(d_v)


def _edge_messages(
    phi: Tensor, h_v: Tensor, basis: Tensor, unit: Tensor, source: Tensor, target: Tensor, weight: Tensor
) -> tuple[Tensor, Tensor]:
    """Eq. (1) summed over edge lists in plain gathers, products and `index_add`: what ``torch.compile`` fuses
    into one loop over the edges (forward and backward). `phi [N, 3F]` is φ(h_s), `weight [K+1, 3F]` the filter."""
    f = h_v.shape[-1]
    message = phi.index_select(0, source) * (basis @ weight)
    d_s, gate_v, gate_dir = torch.split(message, f, dim=-1)
    d_v = gate_v[:, None, :] * h_v.index_select(0, source) + gate_dir[:, None, :] * unit[:, :, None]
    summed_s = d_s.new_zeros(h_v.shape[0], f).index_add(0, target, d_s)
    return summed_s, d_v.new_zeros(h_v.shape).index_add(0, target, d_v)


class _CompiledEdgeMessages:
    """:func:`_edge_messages` compiled once per process (dynamic shapes); None where compiling fails (e.g. no C++
    compiler), after which the eager edge lists are used."""

    def __init__(self) -> None:
        self.function = None
        self.failed = False

    def __call__(self, *args: Tensor) -> tuple[Tensor, Tensor] | None:
        if torch.compiler.is_compiling():  # inside a compiled network: part of its graph
            return _edge_messages(*args)
        if self.failed:
            return None
        if self.function is None:
            self.function = torch.compile(_edge_messages, dynamic=True)
        try:
            return self.function(*args)
        except Exception as error:  # noqa: BLE001 - any failure of the compiler leaves the eager edge lists
            self.failed = True
            print(
                f"compiled edge lists unavailable ({type(error).__name__}: {error}); eager edge lists instead",
                file=sys.stderr,
            )
            return None


_COMPILED_EDGE_MESSAGES = _CompiledEdgeMessages()


class PaiNNUpdate(nn.Module):
    """Eq. (2): atom-wise mixing of scalar and vector channels through norms and inner products."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.vector_mix = nn.Linear(hidden, 2 * hidden, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))

    def forward(self, h_s: Tensor, h_v: Tensor) -> tuple[Tensor, Tensor]:
        """Atom-wise updates `(Δh_s [N, F], Δh_v [N, 3, F])` from `h_s [N, F]` and `h_v [N, 3, F]`."""
        u_v, v_v = torch.split(self.vector_mix(h_v), self.hidden, dim=-1)
        v_norm = torch.sqrt((v_v**2).sum(dim=1) + _NORM_EPS)
        a_vv, a_sv, a_ss = torch.split(self.mlp(torch.cat([h_s, v_norm], dim=-1)), self.hidden, dim=-1)
        return a_ss + a_sv * (u_v * v_v).sum(dim=1), a_vv[:, None, :] * u_v


class EquivariantNorm(nn.Module):
    """Normalise scalars with LayerNorm and vectors by their RMS norm over channels (rotation equivariant).

    Used pre-norm style: each message/update block reads normalised copies and adds to the raw residual streams,
    which keeps the quadratic vector products of Eq. (2) from blowing up with depth or neighbour count.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.scalar_norm = nn.LayerNorm(hidden)

    def forward(self, h_s: Tensor, h_v: Tensor) -> tuple[Tensor, Tensor]:
        rms = torch.sqrt((h_v**2).sum(dim=1).mean(dim=-1, keepdim=True) + _NORM_EPS)  # [N, 1]
        return self.scalar_norm(h_s), h_v / rms[:, :, None]


class _GroupSum(torch.autograd.Function):
    """Rows `[R, ...]` summed by group `index [R]` into `[G, ...]`: the rows taken in the order `order [R]` that
    sorts them by group (None: they are sorted), then summed over the consecutive segments `offsets [G + 1]`.
    Backward: each row gets its group's gradient (:class:`_Gather`). On the CPU this is far faster than
    `index_add_` or `scatter_add_`, which add the rows one after another."""

    @staticmethod
    def forward(rows: Tensor, index: Tensor, order: Tensor | None, offsets: Tensor) -> Tensor:
        if order is not None:
            rows = rows.index_select(0, order)
        return torch.segment_reduce(rows, "sum", offsets=offsets, axis=0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs[1:])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        index, order, offsets = ctx.saved_tensors
        return _Gather.apply(grad, index, order, offsets), None, None, None


class _Gather(torch.autograd.Function):
    """`features[index]` (rows `[R, ...]` of groups `[G, ...]`), whose backward sums the gradient rows by group
    as a :class:`_GroupSum` instead of an accumulating scatter."""

    @staticmethod
    def forward(features: Tensor, index: Tensor, order: Tensor | None, offsets: Tensor) -> Tensor:
        return features.index_select(0, index)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs[1:])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        index, order, offsets = ctx.saved_tensors
        return _GroupSum.apply(grad, index, order, offsets), None, None, None


@dataclass
class Groups:
    """Rows grouped by `index [R]` (values in 0..G−1): sums and means of rows by group, and each row's group
    features, through segment sums of the rows sorted by group (`order [R]`, None if `index` is sorted; group g
    holds sorted rows `offsets[g]:offsets[g + 1]`)."""

    index: Tensor
    order: Tensor | None
    offsets: Tensor

    @classmethod
    def of(cls, index: Tensor, groups: int, is_sorted: bool = False) -> Groups:
        """The groups `0..groups−1` of `index [R]`; `is_sorted` promises that `index` is non-decreasing."""
        counts = torch.bincount(index, minlength=groups)
        offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return cls(index, None if is_sorted else torch.argsort(index, stable=True), offsets)

    def sum(self, rows: Tensor) -> Tensor:
        """`rows [R, ...]` summed by group: `[G, ...]` (zeros for an empty group)."""
        return _GroupSum.apply(rows, self.index, self.order, self.offsets)

    def mean(self, rows: Tensor) -> Tensor:
        """`rows [R, ...]` averaged by group: `[G, ...]` (zeros for an empty group)."""
        counts = (self.offsets[1:] - self.offsets[:-1]).clamp(min=1).to(rows.dtype)
        return self.sum(rows) / counts.view(-1, *[1] * (rows.dim() - 1))

    def gather(self, features: Tensor) -> Tensor:
        """Each row's group features `[R, ...]` from `features [G, ...]`."""
        return _Gather.apply(features, self.index, self.order, self.offsets)


@dataclass
class EdgeGraph:
    """A radius graph's directed edges `[2, E]` (source j, target i) sorted by target, then source; their basis
    `[E, K+1]` (the radial basis times the cutoff weight, then the weight), cutoff weight `[E]` and unit vectors
    `[E, 3]`; each target's inverse weighted degree `[N]`; and the edges grouped by source and by target."""

    edges: Tensor
    basis: Tensor
    weight: Tensor
    unit: Tensor
    inverse_degree: Tensor
    sources: Groups
    targets: Groups
    compiled: bool = False

    def gather(self, features: Tensor) -> Tensor:
        """The sources' rows `[E, ...]` of node `features [N, ...]`."""
        return self.sources.gather(features)

    def sum(self, rows: Tensor) -> Tensor:
        """Per-edge `rows [E, ...]` summed on their targets `[N, ...]`."""
        return self.targets.sum(rows)


class PairGeometry(nn.Module):
    """The pairs a message layer sums over, with their radial basis, cosine-cutoff weight and direction, and each
    atom's inverse (weighted) degree: messages are averaged over neighbours, so their scale does not grow with
    the cutoff (the degree is invariant).

    Dense cutoffs get :class:`~crystalflow_core.nn.pair_blocks.PairBlocks` (dense products, memory independent of
    the number of neighbours) and sparse ones an :class:`EdgeGraph`: see
    :func:`~crystalflow_core.nn.pair_blocks.use_dense_blocks`.
    """

    def __init__(self, n_rbf: int, cutoff: float) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.rbf = GaussianRBF(n_rbf, cutoff)
        self.cutoff_fn = CosineCutoff(cutoff)

    def forward(
        self,
        pos: Tensor,
        batch: Tensor,
        num_graphs: int,
        dense: bool | None = None,
        edges: Tensor | None = None,
        compiled: bool = False,
    ) -> EdgeGraph | PairBlocks:
        """The pairs of nodes at `pos [N, 3]` in graphs `batch [N]` in the layout `dense` (None: the untimed guess
        of :func:`~crystalflow_core.nn.pair_blocks.use_dense_blocks`); `edges`: the :func:`radius_edges` of `pos`
        where they are known already; `compiled`: edge lists whose messages are summed by compiled code.

        Built on `pos`'s device, in float32 even inside a bfloat16 autocast region.
        """
        with full_precision(pos.device):
            return self._pairs(pos, batch, num_graphs, dense, edges, compiled)

    def _pairs(
        self, pos: Tensor, batch: Tensor, num_graphs: int, dense: bool | None, edges: Tensor | None, compiled: bool
    ) -> EdgeGraph | PairBlocks:
        if edges is None and not dense:
            edges = radius_edges(pos, batch, self.cutoff, num_graphs=num_graphs)
        if dense is None:
            dense = use_dense_blocks(edges.shape[1], batch, num_graphs, self.rbf.n_rbf, pos.element_size())
        if dense:
            return build_pair_blocks(pos, batch, num_graphs, self.rbf, self.cutoff_fn, _NORM_EPS)
        source, target = edges  # sorted by target, then source (radius_edges)
        vector = pos[source] - pos[target]
        distance = torch.sqrt((vector**2).sum(dim=-1) + _NORM_EPS)
        weight = self.cutoff_fn(distance)
        radial = self.rbf(distance) * weight[:, None]
        # Far Gaussian tails underflow to subnormal floats, which slow every product they enter many times over.
        radial = radial.masked_fill(radial < NEGLIGIBLE_BASIS, 0.0)
        targets = Groups.of(target, len(pos), is_sorted=True)
        degree = targets.sum(weight)
        return EdgeGraph(
            edges=edges,
            basis=torch.cat([radial, weight[:, None]], dim=-1),
            weight=weight,
            unit=vector / distance[:, None],
            inverse_degree=1.0 / degree.clamp(min=1.0),
            sources=Groups.of(source, len(pos)),
            targets=targets,
            compiled=compiled,
        )


class PaiNNVelocity(nn.Module):
    """SE(3)-equivariant velocity field `v_θ(x_t, x_w, t) [N, 3]` on batched molecular clusters.

    Hyperparameters: `hidden` feature width F; `layers` rounds of message (Eq. 1) + update (Eq. 2); `n_rbf`
    Gaussians on [0, cutoff] for the edge filters; `cutoff` radius graph cutoff in Å (the paper uses 20 or 50,
    i.e. nearly all pairs of a 17-molecule cluster); `max_z` largest atomic number; `time_embedding` number of
    sinusoidal time features.

    Scalar features start as embedding(Z) + MLP(time features) + MLP(log(1 + |x_w − x_t|)); vector features
    start as (x_w − x_t) ⊗ w with a learned per-channel weight w. The output is a bias-free linear map of the
    final vector features, one 3-vector per atom.

    With `molecular_frame` (used by the rigid objective), each atom also starts with its position relative to
    its molecule's centroid, r = x_t − c_t (a translation-invariant polar vector, as a second vector input, and
    log(1 + |r|) as a scalar): a rotation of a molecule moves each atom along ω × r, so the network needs r
    at every atom, not only at the far end of a message chain. The molecule's principal axes
    (`so3.inertial_axes`, three polar vectors) are added to every atom's vector channel too, and the atom's
    coordinates on them to its scalars: vector features alone cannot form these eigenvectors of a second-moment
    tensor, and a rotation is far easier to express in a frame attached to the molecule.

    With `molecule_cutoff` > 0 (and molecule ids), every layer also passes PaiNN messages between whole
    molecules: nodes at the molecule centroids carry the pooled atom features, edges join centroids closer
    than `molecule_cutoff` Å (20 Å: every pair of a 17-molecule cluster), and each molecule's message is
    added to its atoms. This reaches across the cluster at the cost of a 17-node graph, where the atom
    cutoff only sees the nearest contacts.
    """

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 3,
        n_rbf: int = 20,
        cutoff: float = 5.0,
        max_z: int = 100,
        time_embedding: int = 16,
        molecular_frame: bool = False,
        molecule_cutoff: float = 0.0,
        axis_readout: bool = False,
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.molecular_frame = molecular_frame
        self.molecule_cutoff = molecule_cutoff
        if axis_readout and not molecular_frame:
            raise ValueError("axis_readout needs molecular_frame (the principal axes it turns)")
        self.axis_readout = axis_readout
        self.layers = layers
        self.n_rbf = n_rbf
        self.cutoff = cutoff
        self.max_z = max_z
        self.time_embedding = time_embedding
        self.atom_embedding = nn.Embedding(max_z + 1, hidden)
        self.time_features = SinusoidalTimeFeatures(time_embedding)
        self.time_mlp = nn.Sequential(nn.Linear(time_embedding, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.offset_mlp = nn.Sequential(nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.offset_weight = nn.Parameter(torch.ones(hidden))
        if molecular_frame:
            self.body_mlp = nn.Sequential(nn.Linear(4, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            self.body_weight = nn.Parameter(torch.ones(hidden))
            self.axis_weight = nn.Parameter(torch.randn(3, hidden) / math.sqrt(3))
        self.atom_geometry = PairGeometry(n_rbf, cutoff)
        #: Pair layout of the message sums: None picks dense blocks or edge lists (both exact) by timing both on
        #: the first steps of each size class of batch (:attr:`pair_layout`); True or False forces one.
        self.dense_pairs: bool | None = None
        #: Edge lists with compiled message sums: None where there are enough edges for compiling to pay (on a
        #: network whose layout is timed: :func:`~crystalflow_core.nn.pair_blocks.layouts_to_try`); True for every
        #: edge list, False never.
        self.compile_edges: bool | None = None
        self.pair_layout = PairLayoutChooser()
        self.messages = nn.ModuleList(PaiNNMessage(hidden, n_rbf) for _ in range(layers))
        self.updates = nn.ModuleList(PaiNNUpdate(hidden) for _ in range(layers))
        self.message_norms = nn.ModuleList(EquivariantNorm(hidden) for _ in range(layers))
        self.update_norms = nn.ModuleList(EquivariantNorm(hidden) for _ in range(layers))
        self.pool_norms = nn.ModuleList(EquivariantNorm(hidden) for _ in range(layers))
        self.pool_scalar = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.pool_vector = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(layers))
        if molecule_cutoff > 0:
            self.molecule_geometry = PairGeometry(n_rbf, molecule_cutoff)
            self.molecule_messages = nn.ModuleList(PaiNNMessage(hidden, n_rbf) for _ in range(layers))
            self.molecule_scalar = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
            self.molecule_vector = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(layers))
        self.readout = nn.Linear(hidden, 1, bias=False)
        if axis_readout:
            self.axis_turn = nn.Linear(hidden, 3, bias=False)
            nn.init.zeros_(self.axis_turn.weight)  # start from the unturned axes

    def describe(self) -> dict[str, float | int]:
        """Hyperparameters of this network, e.g. for logging alongside a checkpoint."""
        return {
            "hidden": self.hidden,
            "layers": self.layers,
            "n_rbf": self.n_rbf,
            "cutoff": self.cutoff,
            "max_z": self.max_z,
            "time_embedding": self.time_embedding,
            "molecular_frame": self.molecular_frame,
            "molecule_cutoff": self.molecule_cutoff,
            "axis_readout": self.axis_readout,
            "parameters": sum(p.numel() for p in self.parameters()),
        }

    def forward(
        self, numbers: Tensor, x_t: Tensor, x_w: Tensor, t: Tensor, batch: Tensor, molecule: Tensor | None = None
    ) -> Tensor:
        """Velocity `[N, 3]` from `numbers [N]`, `x_t`, `x_w` `[N, 3]`, one time per graph `t [B]`, `batch [N]`.

        With `molecule [N]` (global molecule ids) every layer also adds each molecule's mean features to its
        atoms, so a whole molecule can move coherently although the cutoff is shorter than the molecule.
        """
        offset = x_w - x_t
        offset_norm = torch.sqrt((offset**2).sum(dim=-1, keepdim=True) + _NORM_EPS)
        t_features = self.time_mlp(self.time_features(t.to(x_t.dtype)))
        h_s = self.atom_embedding(numbers) + t_features[batch] + self.offset_mlp(torch.log1p(offset_norm))
        h_v = offset[:, :, None] * self.offset_weight
        if self.molecular_frame and molecule is None:
            raise ValueError("a molecular_frame network needs the molecule ids of its atoms")
        molecules = None if molecule is None else Groups.of(molecule, int(molecule.max()) + 1)
        centre = None if molecule is None else molecules.mean(x_t)
        if self.molecular_frame:
            body = x_t - molecules.gather(centre)
            body_norm = torch.sqrt((body**2).sum(dim=-1, keepdim=True) + _NORM_EPS)
            axes = inertial_axes(body.detach(), molecule, centre.shape[0])[molecule]  # [N, 3, 3]
            principal = torch.einsum("ni,nik->nk", body, axes)  # the atom's coordinates on its molecule's axes
            h_s = h_s + self.body_mlp(torch.cat([torch.log1p(body_norm), principal], dim=-1))
            h_v = h_v + body[:, :, None] * self.body_weight + torch.einsum("nik,kf->nif", axes, self.axis_weight)

        pairs, dense, trial = self._atom_pairs(x_t, batch, t.shape[0])
        molecule_pairs = None
        if molecule is not None and self.molecule_cutoff > 0:
            molecule_batch = scatter(batch, molecule, dim=0, reduce="min")
            molecule_pairs = self.molecule_geometry(centre, molecule_batch, t.shape[0], dense=dense)
        start = (h_s, h_v)
        for layer, (message, update) in enumerate(zip(self.messages, self.updates, strict=True)):
            d_s, d_v = message(*self.message_norms[layer](h_s, h_v), pairs)
            h_s = h_s + d_s * pairs.inverse_degree[:, None]
            h_v = h_v + d_v * pairs.inverse_degree[:, None, None]
            if molecule is not None:
                n_s, n_v = self.pool_norms[layer](h_s, h_v)
                p_s, p_v = molecules.mean(n_s), molecules.mean(n_v)
                h_s = h_s + molecules.gather(self.pool_scalar[layer](p_s))
                h_v = h_v + molecules.gather(self.pool_vector[layer](p_v))
                if molecule_pairs is not None:
                    m_s, m_v = self.molecule_messages[layer](p_s, p_v, molecule_pairs)
                    m_inverse_degree = molecule_pairs.inverse_degree
                    h_s = h_s + molecules.gather(self.molecule_scalar[layer](m_s * m_inverse_degree[:, None]))
                    h_v = h_v + molecules.gather(self.molecule_vector[layer](m_v * m_inverse_degree[:, None, None]))
            d_s, d_v = update(*self.update_norms[layer](h_s, h_v))
            h_s, h_v = h_s + d_s, h_v + d_v
        output = self.readout(h_v).squeeze(-1)
        if self.axis_readout:
            # Each molecule's principal axes e_k move to e_k + δ_k: every atom follows with its own coordinates
            # p_k on them, Σ_k p_k δ_k. The δ_k are read from the molecule's pooled vectors, so the crystal
            # directions of the axes need not be re-derived at every atom from its current orientation.
            turn = self.axis_turn(molecules.mean(h_v))  # [M, 3, 3], column k: δ_k
            output = output + torch.einsum("nk,nik->ni", principal, molecules.gather(turn))
        if trial is not None:
            trial.finish_forward(output, start)
        return output

    def _atom_pairs(
        self, x_t: Tensor, batch: Tensor, num_graphs: int
    ) -> tuple[EdgeGraph | PairBlocks, bool | None, LayoutTrial | None]:
        """The atom pairs of a step, in the layout `dense_pairs` forces or the one :attr:`pair_layout` picks (a
        compiled network: the untimed guess); whether they are dense blocks (None: the guess's) and the trial that
        times the step."""
        compiled = bool(self.compile_edges)
        if self.dense_pairs is not None or torch.compiler.is_compiling():
            pairs = self.atom_geometry(x_t, batch, num_graphs, dense=self.dense_pairs, compiled=compiled)
            return pairs, self.dense_pairs, None
        with full_precision(x_t.device):
            edges = radius_edges(x_t, batch, self.cutoff, num_graphs=num_graphs)
        count = edges.shape[1]
        key = size_class(count, batch, num_graphs, x_t.dtype)
        layout, trial = self.pair_layout.choices.get(key), None
        if layout is None:
            shape = (count, batch, num_graphs, self.n_rbf, self.hidden, self.layers, x_t.element_size())
            compile_edges = False if torch.is_autocast_enabled(x_t.device.type) else self.compile_edges
            layouts = layouts_to_try(*shape, compile_edges=compile_edges)
            largest = largest_graph(batch, num_graphs)
            dtype = str(x_t.dtype).removeprefix("torch.")
            what = (
                f"{num_graphs} cluster(s) of up to {largest} atoms, {count} pairs within {self.cutoff:g} Å "
                f"({'training' if key[0] else 'inference'}, {x_t.device.type}, {dtype})"
            )
            layout, trial = self.pair_layout.pick(key, layouts, x_t.device, what)
        dense = layout == DENSE
        pairs = self.atom_geometry(x_t, batch, num_graphs, dense=dense, edges=edges, compiled=layout == COMPILED_EDGES)
        return pairs, dense, trial
