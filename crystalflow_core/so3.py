"""Rotations and rigid bodies in torch: the exponential and logarithm of SO(3), and per-molecule Kabsch fits.

Molecules of a batch are addressed by global ids ``molecule [N]`` (0..M-1), as everywhere in the package, so
every function works on a whole batch without Python loops. Rotation vectors ``w [..., 3]`` are axis × angle
(angle in [0, π]); ``exp(w)`` is the rotation by |w| about w / |w|.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from .data.noise import molecule_centroids

#: Floor of the quaternion divisor 4 q_k² in `matrix_to_quaternion` (never reached for a rotation matrix).
_EPS = 1e-12


def hat(w: Tensor) -> Tensor:
    """Skew-symmetric matrices ``[..., 3, 3]`` with ``hat(w) @ v = w × v`` for ``w [..., 3]``."""
    zero = torch.zeros_like(w[..., 0])
    x, y, z = w.unbind(dim=-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*w.shape[:-1], 3, 3)


def exp_map(w: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of rotation vectors ``w [..., 3]`` (matrix exponential of ``hat(w)``)."""
    return torch.linalg.matrix_exp(hat(w))


def matrix_to_quaternion(rotation: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` (w, x, y, z; w ≥ 0) of rotation matrices ``[..., 3, 3]``.

    Of the four algebraically equivalent formulas, each matrix uses the one with the largest denominator, so
    the result is accurate for every angle up to and including π.
    """
    m = rotation
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # 4 q_k² for k = w, x, y, z (up to round-off); the largest one is the safest divisor.
    squares = torch.stack(
        [1 + trace, 1 + 2 * m[..., 0, 0] - trace, 1 + 2 * m[..., 1, 1] - trace, 1 + 2 * m[..., 2, 2] - trace], dim=-1
    )
    pick = squares.argmax(dim=-1)
    root = torch.sqrt(squares.gather(-1, pick[..., None]).clamp(min=_EPS))[..., 0]  # 2 |q_pick|
    skew = torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    sym = torch.stack([m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]], -1)
    candidates = torch.stack(
        [
            torch.stack([root**2, skew[..., 0], skew[..., 1], skew[..., 2]], dim=-1),
            torch.stack([skew[..., 0], root**2, sym[..., 0], sym[..., 1]], dim=-1),
            torch.stack([skew[..., 1], sym[..., 0], root**2, sym[..., 2]], dim=-1),
            torch.stack([skew[..., 2], sym[..., 1], sym[..., 2], root**2], dim=-1),
        ],
        dim=-2,
    )  # row k is 2|q_k| · q (times sign of q_k)
    q = candidates.gather(-2, pick[..., None, None].expand(*pick.shape, 1, 4))[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def log_map(rotation: Tensor) -> Tensor:
    """Rotation vectors ``[..., 3]`` (angle in [0, π]) of rotation matrices ``[..., 3, 3]``; inverse of ``exp_map``."""
    q = matrix_to_quaternion(rotation)
    vector = q[..., 1:]
    sine = vector.norm(dim=-1, keepdim=True)  # sin(θ/2)
    angle = 2.0 * torch.atan2(sine, q[..., :1])
    # θ / sin(θ/2) → 2 as θ → 0; the series keeps the small-angle limit smooth.
    scale = torch.where(sine > 1e-6, angle / sine.clamp(min=1e-12), 2.0 + sine**2 / 3.0)
    return vector * scale


def rotate(rotation: Tensor, vectors: Tensor) -> Tensor:
    """``rotation [N, 3, 3] @ vectors [N, 3]`` row by row."""
    return torch.einsum("nij,nj->ni", rotation, vectors)


def kabsch(body: Tensor, target: Tensor, molecule: Tensor, n_molecules: int) -> tuple[Tensor, Tensor]:
    """Best proper rigid fit of each molecule's ``body`` points onto its ``target`` points.

    ``body`` are coordinates relative to their molecule's centroid ``[N, 3]``; ``target [N, 3]`` any points.
    Returns ``(rotation [M, 3, 3], centre [M, 3])`` minimising Σ |centre + rotation · body − target|² per
    molecule over proper rotations (a reflection, which a rigid motion cannot make, is never returned).
    """
    centre = molecule_centroids(target, molecule, n_molecules)
    local = target - centre[molecule]
    covariance = scatter(local[:, :, None] * body[:, None, :], molecule, dim=0, dim_size=n_molecules, reduce="sum")
    u, _, vh = torch.linalg.svd(covariance)
    sign = torch.sign(torch.linalg.det(u @ vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    correction = torch.ones_like(covariance[..., 0])
    correction[:, 2] = sign
    return u @ (correction[:, :, None] * vh), centre


def place(centre: Tensor, rotation: Tensor, body: Tensor, molecule: Tensor) -> Tensor:
    """Atom positions ``[N, 3]`` of molecules at poses ``(centre [M, 3], rotation [M, 3, 3])``, body ``[N, 3]``."""
    return centre[molecule] + rotate(rotation[molecule], body)


def inertial_axes(body: Tensor, molecule: Tensor, n_molecules: int, scale: float = 0.1) -> Tensor:
    """Principal axes ``[M, 3, 3]`` (column k: the axis of the k-th smallest second moment) of each molecule.

    ``body [N, 3]`` are atom positions relative to their molecule's centroid (unweighted, as the centroids).
    Each axis e_k is signed so that the third moment Σ (r·e_k)³ is positive, which makes the axes polar vectors
    of the molecule itself: rotating or reflecting the molecule by Q turns them into Q e_k. Where the molecule
    is symmetric an axis is not unique (two equal second moments, or a vanishing third moment as in a
    centrosymmetric molecule), so each axis is scaled by tanh(gap / scale) · tanh(|third| / scale), with the
    per-atom moments in Å² and Å³: it fades out smoothly where it stops being defined, which keeps the axes
    equivariant for every molecule.
    """
    count = scatter(torch.ones_like(body[:, 0]), molecule, dim=0, dim_size=n_molecules)[:, None]
    second = scatter(body[:, :, None] * body[:, None, :], molecule, dim=0, dim_size=n_molecules, reduce="sum")
    moments, axes = torch.linalg.eigh(second / count[:, :, None])
    third = scatter(torch.einsum("ni,nik->nk", body, axes[molecule]) ** 3, molecule, dim=0, dim_size=n_molecules)
    third = third / count
    gaps = (moments[:, :, None] - moments[:, None, :]).abs() + torch.eye(3, dtype=body.dtype, device=body.device) * 1e6
    weight = torch.tanh(gaps.min(dim=2).values / scale) * torch.tanh(third.abs() / scale)
    return axes * (torch.sign(third) * weight)[:, None, :]
