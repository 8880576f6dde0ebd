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
#: the batch's largest. Measured on 2 CPU cores: at 5 Å, 128 features, a 493-atom cluster (7 % of its pairs
#: within the cutoff) trains 1.3× faster dense; at the 4 Å, 32-feature training defaults with mixed cluster sizes
#: in a batch (under 1 % of the padded pairs are edges) edge lists are 1.7× faster.
DENSE_PAIR_FRACTION = 0.05


def dense_basis_bytes(batch: Tensor, num_graphs: int, n_rbf: int, element_size: int) -> int:
    """Bytes the two basis matrices of a batch would take: 2 · B · n_max² · (K + 1) elements."""
    return 2 * num_graphs * _largest_graph(batch, num_graphs) ** 2 * (n_rbf + 1) * element_size


def use_dense_blocks(edges: int, batch: Tensor, num_graphs: int, n_rbf: int, element_size: int) -> bool:
    """Whether dense blocks pay: `edges` are at least `DENSE_PAIR_FRACTION` of the padded pairs B · n_max² and the
    basis fits in `DENSE_BASIS_LIMIT_BYTES`."""
    padded_pairs = num_graphs * _largest_graph(batch, num_graphs) ** 2
    fits = dense_basis_bytes(batch, num_graphs, n_rbf, element_size) <= DENSE_BASIS_LIMIT_BYTES
    return fits and edges >= DENSE_PAIR_FRACTION * padded_pairs


def _largest_graph(batch: Tensor, num_graphs: int) -> int:
    return int(torch.bincount(batch, minlength=num_graphs).max()) if batch.numel() else 0


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
