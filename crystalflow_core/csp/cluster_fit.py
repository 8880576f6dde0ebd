"""How well a crystal explains a weak cluster ``x_w``: its 17-molecule cut superposed on ``x_w``'s centroids.

``x_w`` keeps the crystal cluster's centroids up to Gaussian noise (``sigma`` Å per axis) and the handedness of
each molecule (:mod:`.cluster_lattice`); its orientations are random. A candidate crystal is cut into a pool of
molecules around its central one (more than ``x_w``'s 17: a candidate a little larger or sheared than the crystal
orders its neighbours differently near the edge of the cluster, and the 17 nearest would then miss some of those
``x_w`` holds) and the pool's centroids are superposed on ``x_w``'s by a proper rotation and a translation.
Each of ``x_w``'s molecules is paired with one of the pool by the Hungarian method (the two central molecules
together; two of opposite handedness at a cost, where handedness is readable), alternating with Kabsch fits, from
many starting rotations: a 17-molecule cluster is nearly spherical, so its principal axes do not seed the
superposition reliably. A pair's squared distance counts up to :data:`OUTLIER` sigma² only, so that one molecule
the candidate places differently does not outweigh sixteen it places right. The misfit is the sum of those
capped squared distances (plus the handedness costs); ``misfit / (2 sigma^2)`` is, up to the cap, minus the
log-likelihood of ``x_w``'s centroids given the crystal.

That fit scores a crystal. :func:`place_cut` places the chosen one: the same pool superposed on ``x_w``'s centroids
uncapped, each ``x_w`` molecule taking the place of the pool molecule it is paired with, a molecule beyond the
crystal's own cut (the central molecule and its 16 nearest, as ``x_w`` was cut) at :data:`BEYOND_CUT_COST`. Given the
true crystal of the 324 training and validation clusters of the default curation, the pool's capped fit put every
molecule in its own place of ``x_w`` for 53 % of them; the cut's own uncapped fit for 90 % (the rest are centroid
clouds nearly symmetric within the noise). But a crystal the search finds is minimised, and a few per cent of
strain reorders near-equidistant neighbours, so that its cut can hold a molecule ``x_w`` lacks: on those true
crystals minimised in the lattice energy, the cut alone scored PM(atom) 1.68 Å and the pool at 9 Å² 1.26, which
costs the exact crystals 0.04 Å (``benchmarks/solve_placement.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

from crystalflow_core.packing import kabsch

from .cluster_lattice import WeakClusterCues

#: Starting rotations of the superposition (48 missed the best fit of a third of the crystals of a validation
#: cluster by 5-25 Å²; 400 found them), and Hungarian/Kabsch rounds from each.
FIT_STARTS = 256
FIT_ROUNDS = 10
#: Molecules of a candidate's pool (the central one and its nearest by centroid) that x_w's 17 are paired with.
POOL_SIZE = 27
#: A pair's squared distance counts up to this many sigma² (a 3-sigma outlier per axis, summed over three axes).
OUTLIER = 9.0
#: Cost (Å²) that keeps two molecules from being paired (the central ones with others).
_FORBIDDEN = 1e6
#: Cost (Å²) of placing a pool molecule beyond the crystal's own cut in a place of ``x_w`` (module docstring):
#: chosen among 0, 2, 4, 9, 16 Å² and none on the training and validation crystals, minimised.
BEYOND_CUT_COST = 9.0
#: Cost (Å²) of pairing molecules of opposite handedness: as a 3 Å misplacement, so a crystal that explains
#: ``x_w``'s handedness in all but a molecule or two is not ruled out by a misread one.
HANDEDNESS_COST = 9.0


@dataclass
class CutFit:
    """The best superposition of a pool on ``x_w``: ``order[j]`` is the pool's molecule paired with ``x_w``'s
    molecule ``j``; ``pool_centroids @ rotation.T + shift`` lies on ``x_w``'s; ``sse`` (Å²) sums the capped
    squared centroid distances of the pairs and ``penalty`` (Å²) the costs of pairs of opposite handedness."""

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
        """Root-mean-square (capped) centroid distance (Å)."""
        return float(np.sqrt(self.sse / len(self.order)))


def forbidden_pairs(weak: WeakClusterCues, cut: WeakClusterCues, use_handedness: bool = True) -> np.ndarray:
    """``[M, P]`` cost added to pairing ``x_w``'s molecule ``j`` (rows) with the pool's ``k``: the central molecules
    pair only with each other and, with ``use_handedness`` and a chiral molecule, molecules of opposite
    handedness cost :data:`HANDEDNESS_COST`."""
    n, pool = len(weak.centroids), len(cut.centroids)
    if pool < n:
        raise ValueError(f"a pool of {pool} molecules against a weak cluster of {n}")
    cost = np.zeros((n, pool))
    if use_handedness and weak.chirality_informative:
        cost[weak.handedness[:, None] * cut.handedness[None, :] < 0] = HANDEDNESS_COST
    cost[0, 1:] = cost[1:, 0] = _FORBIDDEN
    return cost


def _capped(moved: np.ndarray, target: np.ndarray, cap: float) -> np.ndarray:
    """``[M, P]`` squared distances from each target point to each moved one, at most ``cap``."""
    return np.minimum(((target[:, None, :] - moved[None, :, :]) ** 2).sum(axis=-1), cap)


def _capped_pairs(moved: np.ndarray, target: np.ndarray, cap: float) -> np.ndarray:
    """``[M]`` squared distances between paired points ``moved[j]`` and ``target[j]``, at most ``cap``."""
    return np.minimum(((target - moved) ** 2).sum(axis=-1), cap)


def fit_cut(
    pool_centroids: np.ndarray,
    weak_centroids: np.ndarray,
    forbidden: np.ndarray,
    sigma: float = 1.0,
    starts: int = FIT_STARTS,
    seed: int = 0,
    outlier: float | None = OUTLIER,
) -> CutFit:
    """The superposition of ``pool_centroids`` ``[P, 3]`` (central first) on ``weak_centroids`` ``[M, 3]`` (central
    first, ``M <= P``) with the smallest capped misfit, pairs allowed by ``forbidden`` (:func:`forbidden_pairs`),
    from ``starts`` seeded random rotations (the identity first) about the central molecules. A pair counts up to
    ``outlier * sigma^2`` (None: uncapped), and the Kabsch fits use the pairs within the cap only."""
    pool = np.asarray(pool_centroids, dtype=np.float64)
    weak = np.asarray(weak_centroids, dtype=np.float64)
    cap = np.inf if outlier is None else outlier * sigma**2
    rows = np.arange(len(weak))
    rotations = np.concatenate([np.eye(3)[None], Rotation.random(starts - 1, random_state=seed).as_matrix()])
    best: CutFit | None = None
    for rotation in rotations:
        shift = weak[0] - pool[0] @ rotation.T
        order = linear_sum_assignment(_capped(pool @ rotation.T + shift, weak, cap) + forbidden)[1]
        for _ in range(FIT_ROUNDS):
            distance = _capped_pairs(pool[order] @ rotation.T + shift, weak, cap)
            inliers = distance < cap
            if inliers.sum() < 3:
                break
            rotation, shift = kabsch(pool[order][inliers], weak[inliers])
            new = linear_sum_assignment(_capped(pool @ rotation.T + shift, weak, cap) + forbidden)[1]
            if np.array_equal(new, order):
                break
            order = new
        sse = float(_capped_pairs(pool[order] @ rotation.T + shift, weak, cap).sum())
        penalty = float(forbidden[rows, order].sum())
        if best is None or sse + penalty < best.misfit:
            best = CutFit(order, rotation, shift, sse, penalty)
    assert best is not None
    return best


def place_cut(
    pool: np.ndarray, pool_cues: WeakClusterCues, weak: WeakClusterCues, use_handedness: bool, seed: int = 0
) -> np.ndarray:
    """A crystal's pool ``[P, n, 3]`` (the central molecule and its nearest by centroid, nearest first;
    ``pool_cues`` read off it) superposed on ``x_w``'s centroids by the uncapped fit, the molecules beyond its own
    cut (the first ``M``, as many as ``x_w`` holds) at :data:`BEYOND_CUT_COST`; returns ``[M, n, 3]``, molecule ``j``
    the pool's molecule paired with ``x_w``'s molecule ``j``, in its place."""
    forbidden = forbidden_pairs(weak, pool_cues, use_handedness)
    forbidden[:, len(weak.centroids) :] += BEYOND_CUT_COST
    fit = fit_cut(pool_cues.centroids, weak.centroids, forbidden, seed=seed, outlier=None)
    return (np.asarray(pool) @ fit.rotation.T + fit.shift)[fit.order]
