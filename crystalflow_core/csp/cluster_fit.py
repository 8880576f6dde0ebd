"""How well a crystal explains a weak cluster ``x_w``: its 17-molecule cut superposed on ``x_w``'s centroids.

``x_w`` keeps the crystal cluster's centroids up to Gaussian noise (``sigma`` Å per axis) and the handedness of
each molecule (:mod:`.cluster_lattice`); its orientations are random. A candidate crystal is cut as the curated
clusters are (the central molecule and its 16 nearest by centroid) and the cut's centroids are superposed on
``x_w``'s by a proper rotation and a translation. Molecules are paired by the Hungarian method (the two central
molecules together; two of opposite handedness at a cost, where handedness is readable), alternating with Kabsch
fits, from many starting rotations: a 17-molecule cluster is nearly spherical, so its principal axes do not seed
the superposition reliably. The misfit is the sum of squared centroid distances of the best superposition (plus
the handedness costs); ``SSE / (2 sigma^2)`` is minus the log-likelihood of ``x_w``'s centroids given the crystal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

from crystalflow_core.packing import kabsch

from .cluster_lattice import WeakClusterCues

#: Starting rotations of the superposition, and Hungarian/Kabsch rounds from each.
FIT_STARTS = 48
FIT_ROUNDS = 10
#: Cost (Å²) that keeps two molecules from being paired (the central ones with others).
_FORBIDDEN = 1e6
#: Cost (Å²) of pairing molecules of opposite handedness: as a 3 Å misplacement, so a crystal that explains
#: ``x_w``'s handedness in all but a molecule or two is not ruled out by a misread one.
HANDEDNESS_COST = 9.0


@dataclass
class CutFit:
    """The best superposition of a cut on ``x_w``: ``order[j]`` is the cut's molecule paired with ``x_w``'s
    molecule ``j``; ``cut_centroids @ rotation.T + shift`` lies on ``x_w``'s; ``sse`` (Å²) sums the squared
    centroid distances of the pairs and ``penalty`` (Å²) the costs of pairs of opposite handedness."""

    order: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    sse: float
    penalty: float

    @property
    def misfit(self) -> float:
        """What the superposition minimised (Å²): ``sse + penalty``."""
        return self.sse + self.penalty

    @property
    def rms(self) -> float:
        """Root-mean-square centroid distance (Å)."""
        return float(np.sqrt(self.sse / len(self.order)))


def forbidden_pairs(weak: WeakClusterCues, cut: WeakClusterCues, use_handedness: bool = True) -> np.ndarray:
    """``[M, M]`` cost added to pairing ``x_w``'s molecule ``j`` (rows) with the cut's ``k``: the central molecules
    pair only with each other and, with ``use_handedness`` and a chiral molecule, molecules of opposite
    handedness cost :data:`HANDEDNESS_COST`."""
    n = len(weak.centroids)
    if len(cut.centroids) != n:
        raise ValueError(f"a cut of {len(cut.centroids)} molecules against a weak cluster of {n}")
    cost = np.zeros((n, n))
    if use_handedness and weak.chirality_informative:
        cost[weak.handedness[:, None] * cut.handedness[None, :] < 0] = HANDEDNESS_COST
    cost[0, 1:] = cost[1:, 0] = _FORBIDDEN
    return cost


def _assign(moved: np.ndarray, target: np.ndarray, forbidden: np.ndarray) -> np.ndarray:
    cost = ((target[:, None, :] - moved[None, :, :]) ** 2).sum(axis=-1) + forbidden
    return linear_sum_assignment(cost)[1]


def fit_cut(
    cut_centroids: np.ndarray,
    weak_centroids: np.ndarray,
    forbidden: np.ndarray,
    starts: int = FIT_STARTS,
    seed: int = 0,
) -> CutFit:
    """The superposition of ``cut_centroids`` ``[M, 3]`` on ``weak_centroids`` ``[M, 3]`` with the smallest summed
    squared distance, pairs allowed by ``forbidden`` (:func:`forbidden_pairs`), from ``starts`` seeded random
    rotations (the identity first)."""
    cut = np.asarray(cut_centroids, dtype=np.float64)
    weak = np.asarray(weak_centroids, dtype=np.float64)
    rotations = np.concatenate([np.eye(3)[None], Rotation.random(starts - 1, random_state=seed).as_matrix()])
    best: CutFit | None = None
    for rotation in rotations:
        shift = weak.mean(axis=0) - cut.mean(axis=0) @ rotation.T
        order = _assign(cut @ rotation.T + shift, weak, forbidden)
        for _ in range(FIT_ROUNDS):
            rotation, shift = kabsch(cut[order], weak)
            new = _assign(cut @ rotation.T + shift, weak, forbidden)
            if np.array_equal(new, order):
                break
            order = new
        rotation, shift = kabsch(cut[order], weak)
        penalty = float(forbidden[np.arange(len(order)), order].sum())
        sse = float(((cut[order] @ rotation.T + shift - weak) ** 2).sum())
        if best is None or sse + penalty < best.misfit:
            best = CutFit(order, rotation, shift, sse, penalty)
    assert best is not None
    return best
