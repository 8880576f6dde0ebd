"""Minimisation pulled towards the weak cluster: ``x_w``'s centroids as restraints, as a refinement uses data.

A random start relaxes into the nearest minimum of the lattice energy, and nearly every start of the plain search
ends in a minimum of its own (39 distinct crystals of 40 on a validation cluster), few of them near ``x_w``. So,
before it relaxes freely, each start is pulled towards ``x_w``, for a few rounds:

1. the start's pool of molecules (the central one and its nearest, each known as a symmetry image and a lattice
   translation of the reference molecule) is superposed on ``x_w``'s centroids (:func:`~.cluster_fit.fit_cut`),
   which pairs each of ``x_w``'s molecules with one of the pool;
2. ``x_w``'s centroids, taken into the crystal's frame by that superposition, become targets, and the lattice
   energy plus ``strength · Σ |c_j − y_j|²`` (the paired molecules' centroids ``c_j``, each a function of the cell
   and the pose, against the targets ``y_j``) is minimised for a few iterations; pairs farther apart than
   ``reach`` are not pulled, so a molecule the start places elsewhere does not drag the crystal.

Then the restraint is dropped and the crystal minimised as the plain search minimises it, so every crystal found is
a minimum of the lattice energy and is ranked by its energy and misfit as before.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from crystalflow_core.data.crystal import plane_spacings
from crystalflow_core.forcefield import PairTerms

from .cluster_fit import POOL_SIZE, fit_cut, forbidden_pairs
from .cluster_lattice import WeakClusterCues
from .lattice_energy import LatticeEnergy
from .minimize import Minimized, minimize_crystal
from .rigid_crystal import RigidCrystal


@dataclass(frozen=True)
class PullSettings:
    """``strength`` of the restraint (kcal/mol per Å² of squared centroid distance, summed over ``x_w``'s
    molecules), ``rounds`` of pairing and restrained minimisation of ``iterations`` each, ``reach`` (Å: paired
    centroids farther apart are not pulled), ``fit_starts`` rotations of each round's superposition and
    ``sigma``, ``x_w``'s centroid noise (Å per axis)."""

    strength: float = 0.3
    rounds: int = 2
    iterations: int = 60
    reach: float = 6.0
    fit_starts: int = 64
    sigma: float = 1.0


@dataclass
class PoolImages:
    """The molecules of a crystal nearest its reference one: ``ops`` ``[P]`` (index into the crystal's
    ``image_ops``), ``shifts`` ``[P, 3]`` (the lattice translation, fractional, integer) and ``centroids``
    ``[P, 3]`` (Cartesian), the reference first, nearest first."""

    ops: np.ndarray
    shifts: np.ndarray
    centroids: np.ndarray

    def proper(self, crystal: RigidCrystal) -> np.ndarray:
        """``[P]`` whether each molecule is a proper image of the reference (same handedness)."""
        return np.linalg.det(crystal.rotations[crystal.image_ops[self.ops]]) > 0


def _image_centroids(crystal: RigidCrystal, centroid: np.ndarray) -> np.ndarray:
    """``[Z, 3]`` fractional centroids of the cell's molecules, unwrapped (the operations applied as they are)."""
    ops = crystal.image_ops
    return np.einsum("kij,j->ki", crystal.rotations[ops], centroid) + crystal.translations[ops]


def pool_images(crystal: RigidCrystal, lattice: np.ndarray, molecule: np.ndarray, size: int = POOL_SIZE) -> PoolImages:
    """The ``size`` molecules of the crystal (``lattice`` rows, reference ``molecule`` ``[n, 3]`` Cartesian) whose
    centroids lie nearest the reference's, with the symmetry image and lattice translation that make each."""
    centroid = molecule.mean(axis=0) @ np.linalg.inv(lattice)
    images = _image_centroids(crystal, centroid)
    wrap = -np.floor(images - centroid + 0.5)  # each image brought next to the reference
    spacing = plane_spacings(lattice)
    layers = np.full(3, 1)
    while True:
        grid = np.array(list(itertools.product(*(range(-n, n + 1) for n in layers))), dtype=np.float64)
        shifts = (wrap[None, :, :] + grid[:, None, :]).reshape(-1, 3)
        ops = np.tile(np.arange(len(images)), len(grid))
        distance = np.linalg.norm((images[ops] + shifts - centroid) @ lattice, axis=1)
        order = np.lexsort((ops, np.round(distance, 6)))[:size]
        # every molecule within the size-th distance lies inside the grid searched
        needed = np.ceil(distance[order[-1]] / spacing).astype(int) + 1
        if len(order) == size and np.all(layers >= needed):
            break
        layers = np.maximum(layers + 1, needed)
    return PoolImages(ops[order], shifts[order], (images[ops[order]] + shifts[order]) @ lattice)


class CentroidRestraint:
    """``Σ_j |c_j − y_j|²`` (Å²): the centroids ``c_j`` of a crystal's molecules ``pool`` (its images and
    translations), as functions of the cell and the reference molecule, against ``targets`` ``[J, 3]``."""

    def __init__(self, crystal: RigidCrystal, ops: np.ndarray, shifts: np.ndarray, targets: np.ndarray) -> None:
        image_ops = crystal.image_ops[ops]
        self.rotations = torch.as_tensor(crystal.rotations[image_ops], dtype=torch.float64)
        self.offsets = torch.as_tensor(crystal.translations[image_ops] + shifts, dtype=torch.float64)
        self.targets = torch.as_tensor(targets, dtype=torch.float64)

    def __call__(self, lattice: Tensor, molecule: Tensor) -> Tensor:
        centroid = molecule.mean(dim=0) @ torch.linalg.inv(lattice)
        centroids = (torch.einsum("kij,j->ki", self.rotations, centroid) + self.offsets) @ lattice
        return ((centroids - self.targets) ** 2).sum()


def _start_geometry(crystal: RigidCrystal) -> tuple[np.ndarray, np.ndarray]:
    lattice, molecule = crystal.geometry(torch.zeros(crystal.n_parameters, dtype=torch.float64))
    return lattice.numpy(), molecule.numpy()


def restraint_towards(
    crystal: RigidCrystal, weak: WeakClusterCues, use_handedness: bool, settings: PullSettings
) -> CentroidRestraint:
    """The restraint pulling ``crystal`` (at its start) towards ``weak``'s centroids: its pool superposed on them,
    each of ``weak``'s molecules pulled towards the pool molecule it is paired with, unless they lie farther apart
    than ``settings.reach``."""
    lattice, molecule = _start_geometry(crystal)
    pool = pool_images(crystal, lattice, molecule, max(POOL_SIZE, len(weak.centroids)))
    pool_cues = WeakClusterCues(
        centroids=pool.centroids,
        proper_rmsd=np.zeros(len(pool.ops)),
        improper_rmsd=np.zeros(len(pool.ops)),
        handedness=np.where(pool.proper(crystal), 1, -1),
        planar=weak.planar,
        achiral=weak.achiral,
        molecule_volume=weak.molecule_volume,
    )
    forbidden = forbidden_pairs(weak, pool_cues, use_handedness)
    fit = fit_cut(pool.centroids, weak.centroids, forbidden, settings.sigma, starts=settings.fit_starts)
    targets = (weak.centroids - fit.shift) @ fit.rotation  # x_w's centroids in the crystal's frame
    paired = fit.order
    near = np.linalg.norm(pool.centroids[paired] - targets, axis=1) < settings.reach
    return CentroidRestraint(crystal, pool.ops[paired][near], pool.shifts[paired][near], targets[near])


def _restrained(
    energy: LatticeEnergy, restraint: CentroidRestraint, strength: float, lattice: Tensor, molecule: Tensor
) -> Tensor:
    return energy(lattice, molecule) + strength * restraint(lattice, molecule)


def pulled_minimize(
    crystal: RigidCrystal,
    terms: PairTerms,
    weak: WeakClusterCues,
    use_handedness: bool,
    settings: PullSettings = PullSettings(),
) -> Minimized:
    """``crystal`` pulled towards ``weak``'s centroids for ``settings.rounds`` rounds, then minimised in the lattice
    energy alone (``terms``: the molecule's MMFF94 terms). The result's ``start_energy`` is that of the start."""
    start_energy = float(LatticeEnergy(terms, crystal)(*map(torch.as_tensor, _start_geometry(crystal))))
    for _ in range(settings.rounds):
        energy = LatticeEnergy(terms, crystal)
        restraint = restraint_towards(crystal, weak, use_handedness, settings)
        pulled = minimize_crystal(
            crystal, partial(_restrained, energy, restraint, settings.strength), max_iterations=settings.iterations
        )
        crystal = RigidCrystal.from_molecular_crystal(
            crystal.to_molecular_crystal(pulled.lattice, pulled.molecule), crystal.name
        )
    relaxed = minimize_crystal(crystal, LatticeEnergy(terms, crystal))
    relaxed.start_energy = start_energy
    return relaxed
