"""17-molecule clusters: the :class:`Cluster` record of one entry (its crystal cluster ``x_s`` and weakly-correlated
start ``x_w``) and :func:`crystal_cluster`, which cuts ``x_s`` around a reference molecule out of the periodic
crystal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crystalflow_core.data.crystal import lattice_shifts, plane_spacings
from crystalflow_core.data.molecules import MolecularCrystal

#: Two symmetry images whose centroids are closer than this (Å) are the same molecule (special position).
SAME_MOLECULE_TOLERANCE = 0.1
#: Centroid distances are rounded to this many decimals (Å) before sorting, so ties sort deterministically.
_DISTANCE_DECIMALS = 4


@dataclass
class Cluster:
    """One cluster as a COD-Cluster17 entry stores it: ``numbers`` ``[N]``, ``mol_index`` ``[N]`` (0 = central),
    ``x_w``/``x_s`` ``[N, 3]``."""

    cluster_id: str
    numbers: np.ndarray
    mol_index: np.ndarray
    x_w: np.ndarray
    x_s: np.ndarray

    @property
    def n_molecules(self) -> int:
        return int(self.mol_index.max()) + 1


def cell_molecules(mc: MolecularCrystal) -> np.ndarray:
    """Distinct images of the reference molecule under the space-group operations, reference first: the unit
    cell's Z molecules, each whole.

    Returns fractional coordinates [Z, n, 3]; the reference is ``mc.frac`` unchanged and every other image
    is shifted so its centroid lies in [0, 1).
    """
    crystal = mc.crystal
    images = np.einsum("kij,nj->kni", crystal.rotations, mc.frac) + crystal.translations[:, None, :]
    images -= np.floor(images.mean(axis=1, keepdims=True))
    images = np.concatenate([mc.frac[None], images], axis=0)
    centroids = images.mean(axis=1)
    delta = centroids[:, None, :] - centroids[None, :, :]
    delta -= np.round(delta)
    same = np.linalg.norm(delta @ crystal.lattice, axis=-1) < SAME_MOLECULE_TOLERANCE
    keep = ~np.any(np.triu(same, k=1), axis=0)
    return images[keep]


def crystal_cluster(mc: MolecularCrystal, n_molecules: int = 17) -> np.ndarray:
    """Reference molecule and its ``n_molecules - 1`` nearest neighbours by centroid distance.

    Returns Cartesian coordinates [n_molecules, n, 3] in Å. Every molecule is an image ``g·x_ref + L`` of
    the reference molecule, so all share its atom order; index 0 is the reference itself and centroid
    distances to it do not decrease along the first axis (ties broken by lattice shift, then operation).
    """
    lattice = mc.crystal.lattice
    images = cell_molecules(mc)  # [Z, n, 3]
    centroids = images.mean(axis=1)
    reference_centroid = centroids[0] @ lattice
    plane_spacing = plane_spacings(lattice)
    n_layers = np.maximum(np.ceil(np.cbrt(n_molecules / len(images))).astype(int), 1) * np.ones(3, dtype=int)
    while True:
        shifts = lattice_shifts(n_layers, len(images))
        candidate = (centroids[None, :, :] + shifts[:, None, :]) @ lattice  # [S, Z, 3]
        distance = np.linalg.norm(candidate - reference_centroid, axis=-1).reshape(-1)
        shift_index, image_index = np.divmod(np.arange(distance.size), len(images))
        order = np.lexsort((image_index, *shifts[shift_index].T[::-1], np.round(distance, _DISTANCE_DECIMALS)))
        if order.size >= n_molecules:
            radius = distance[order[n_molecules - 1]]
            needed = np.ceil(radius / plane_spacing) + 1
            if np.all(n_layers >= needed):
                break
            n_layers = np.maximum(n_layers, needed)
        else:
            n_layers = n_layers + 1
    chosen = order[:n_molecules]
    frac = images[image_index[chosen]] + shifts[shift_index[chosen]][:, None, :]
    return frac @ lattice
