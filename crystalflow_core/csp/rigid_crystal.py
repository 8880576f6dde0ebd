"""A crystal of one rigid molecule: space-group operations, a cell and one molecule's pose, and the free parameters
that change the cell and the pose without breaking the space group.

Conventions are those of :class:`~crystalflow_core.data.crystal.Crystal`: lattice rows are a, b, c, Cartesian =
``frac @ lattice``, operations act on fractional column vectors. Cells are held in the standard orientation (a
along x, b in the xy plane), the Cholesky factor of the metric ``G = L Lᵀ``, so that a cell is a function of its
metric alone and the molecule's Cartesian pose does not turn when the cell changes.

The free parameters (:meth:`RigidCrystal.geometry`) keep the space group exactly:

- the metric moves in the linear space of symmetric matrices with ``Rᵀ G R = G`` for every operation (6 numbers
  for triclinic groups, 4 for monoclinic, 3 orthorhombic, 2 tetragonal or hexagonal, 1 cubic), in any setting;
- the centroid moves within the subspace its site symmetry leaves fixed (anywhere on a general position, not at
  all on an inversion centre), and the molecule turns only about axes its site symmetry keeps (any axis on an
  inversion centre, the axis of a 2-fold site): both projectors are group averages over the site's operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from crystalflow_core.data.crystal import Crystal
from crystalflow_core.data.molecules import MolecularCrystal, hill_formula
from crystalflow_core.so3 import exp_map

#: Two symmetry images with centroids closer than this (Å) are one molecule on a special position.
SAME_SITE_TOLERANCE = 0.3
#: Parameter scales: a metric coordinate of 1 changes the metric by its mean diagonal (about twice the relative
#: change of the cell edges), a position coordinate of 1 moves the centroid 1 Å, a rotation coordinate 1 radian.
_DIAGONAL_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def standard_lattice(lattice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(L, Q)``: the cell ``lattice`` [3, 3] in the standard orientation (Cholesky factor of its metric) and
    the rotation with ``L = lattice @ Q``; a left-handed cell is refused."""
    if np.linalg.det(lattice) <= 0:
        raise ValueError("the cell is left-handed or flat (det <= 0)")
    standard = np.linalg.cholesky(lattice @ lattice.T)
    return standard, np.linalg.solve(lattice, standard)


def metric_basis(rotations: np.ndarray) -> np.ndarray:
    """Orthonormal basis [D, 3, 3] of the symmetric matrices ``G`` with ``Rᵀ G R = G`` for every ``R``."""
    unit = np.zeros((6, 3, 3))
    for k, (i, j) in enumerate(_DIAGONAL_PAIRS):
        unit[k, i, j] = unit[k, j, i] = 1.0
    constraints = np.concatenate(
        [np.stack([(r.T @ u @ r - u).reshape(-1) for u in unit], axis=1) for r in rotations], axis=0
    )
    _, singular, vt = np.linalg.svd(constraints)
    rank = int((singular > 1e-8).sum())
    basis = np.einsum("dk,kij->dij", vt[rank:], unit)
    return basis / np.linalg.norm(basis, axis=(1, 2))[:, None, None]


def distinct_images(
    rotations: np.ndarray, translations: np.ndarray, centroid: np.ndarray, lattice: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ops, site_ops)``: operations giving each distinct molecule of the cell once (the identity
    first), and those mapping the molecule's centroid onto itself (its site symmetry)."""
    images = np.einsum("kij,j->ki", rotations, centroid) + translations
    delta = images - centroid
    site = np.linalg.norm((delta - np.round(delta)) @ lattice, axis=1) < SAME_SITE_TOLERANCE
    identity = np.all(np.isclose(rotations, np.eye(3)), axis=(1, 2)) & np.all(
        np.isclose(delta, np.round(delta)), axis=1
    )
    if not identity.any():
        raise ValueError("the operations lack the identity")
    kept: list[int] = []
    for k in [int(np.argmax(identity)), *range(len(rotations))]:
        gap = images[k] - images[kept] if kept else np.zeros((0, 3))
        if not (np.linalg.norm((gap - np.round(gap)) @ lattice, axis=1) < SAME_SITE_TOLERANCE).any():
            kept.append(int(k))
    return np.array(kept), np.flatnonzero(site)


@dataclass
class RigidCrystal:
    """A crystal of copies of one rigid molecule: ``numbers [n]`` and its atoms ``body [n, 3]`` about their
    centroid (Cartesian, standard orientation), the operations ``rotations [K, 3, 3]``/``translations [K, 3]``,
    ``image_ops [Z]`` (one per molecule of the cell, identity first), the start ``lattice`` and ``centroid``
    (fractional), and the free directions: ``metric_basis [D, 3, 3]``, ``position_basis [3, P]`` and
    ``rotation_basis [3, R]``."""

    numbers: np.ndarray
    body: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    image_ops: np.ndarray
    lattice: np.ndarray
    centroid: np.ndarray
    metric_basis: np.ndarray
    position_basis: np.ndarray
    rotation_basis: np.ndarray
    name: str = "crystal"
    spacegroup: str = ""

    @classmethod
    def from_molecular_crystal(cls, mc: MolecularCrystal, name: str | None = None) -> RigidCrystal:
        """The crystal of ``mc`` (its reference molecule taken as the rigid body)."""
        crystal = mc.crystal
        lattice, turn = standard_lattice(crystal.lattice)
        centroid = mc.frac.mean(axis=0)
        body = (mc.frac - centroid) @ crystal.lattice @ turn
        image_ops, site_ops = distinct_images(crystal.rotations, crystal.translations, centroid, lattice)
        site_rotations = crystal.rotations[site_ops]
        cartesian = np.einsum("ij,kjl,lm->kim", lattice.T, site_rotations, np.linalg.inv(lattice.T))
        position = site_rotations.mean(axis=0)
        rotation = (np.linalg.det(cartesian)[:, None, None] * cartesian).mean(axis=0)
        return cls(
            numbers=np.asarray(mc.numbers),
            body=body,
            rotations=crystal.rotations,
            translations=crystal.translations,
            image_ops=image_ops,
            lattice=lattice,
            centroid=centroid,
            metric_basis=metric_basis(crystal.rotations),
            position_basis=_range_basis(position, lattice),
            rotation_basis=_range_basis(rotation, np.eye(3)),
            name=name or crystal.name,
            spacegroup=crystal.spacegroup,
        )

    @property
    def z(self) -> int:
        """Molecules per cell."""
        return len(self.image_ops)

    @property
    def n_parameters(self) -> int:
        return len(self.metric_basis) + self.position_basis.shape[1] + self.rotation_basis.shape[1]

    def geometry(self, parameters: Tensor) -> tuple[Tensor, Tensor]:
        """``(lattice [3, 3], molecule [n, 3])`` (Cartesian atoms of the reference molecule) at ``parameters``
        (zero: the start), differentiable; raises ``torch.linalg.LinAlgError`` for a metric that is not positive
        definite."""
        dtype = parameters.dtype
        as_tensor = lambda a: torch.as_tensor(a, dtype=dtype, device=parameters.device)  # noqa: E731
        n_metric, n_position = len(self.metric_basis), self.position_basis.shape[1]
        start = self.lattice @ self.lattice.T
        scale = float(np.trace(start)) / 3.0
        metric = as_tensor(start) + scale * torch.einsum(
            "d,dij->ij", parameters[:n_metric], as_tensor(self.metric_basis)
        )
        lattice = torch.linalg.cholesky(metric)
        centroid = (
            as_tensor(self.centroid) + as_tensor(self.position_basis) @ parameters[n_metric : n_metric + n_position]
        )
        turn = exp_map(as_tensor(self.rotation_basis) @ parameters[n_metric + n_position :])
        molecule = centroid @ lattice + as_tensor(self.body) @ turn.T
        return lattice, molecule

    def images(self, lattice: Tensor, molecule: Tensor) -> Tensor:
        """``[Z, n, 3]`` Cartesian atoms of every molecule of the cell (reference first), each image's centroid
        wrapped into the cell."""
        inverse = torch.linalg.inv(lattice)
        frac = molecule @ inverse
        rotations = torch.as_tensor(self.rotations[self.image_ops], dtype=frac.dtype, device=frac.device)
        translations = torch.as_tensor(self.translations[self.image_ops], dtype=frac.dtype, device=frac.device)
        images = torch.einsum("kij,nj->kni", rotations, frac) + translations[:, None, :]
        images = images - torch.floor(images.mean(dim=1, keepdim=True).detach())
        return images @ lattice

    def to_molecular_crystal(
        self, lattice: np.ndarray, molecule: np.ndarray, name: str | None = None
    ) -> MolecularCrystal:
        """The crystal with ``lattice`` and reference molecule ``molecule [n, 3]`` (Cartesian) as the data
        pipeline holds it, so that it can be cut into clusters, compared and written."""
        frac = molecule @ np.linalg.inv(lattice)
        frac -= np.floor(frac.mean(axis=0))
        crystal = Crystal(
            name=name or self.name,
            source="csp",
            lattice=np.asarray(lattice, dtype=np.float64),
            rotations=self.rotations,
            translations=self.translations,
            numbers=self.numbers,
            frac=frac,
            occupancies=np.ones(len(self.numbers)),
            labels=[f"A{i + 1}" for i in range(len(self.numbers))],
            spacegroup=self.spacegroup,
        )
        n_ops = len(self.rotations)
        return MolecularCrystal(
            crystal=crystal,
            numbers=self.numbers,
            frac=frac,
            formula=hill_formula(self.numbers),
            z=self.z,
            z_prime=self.z / n_ops,
        )


def _range_basis(projector: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Basis ``[3, r]`` of the range of a projector (its eigenvectors of eigenvalue 1), each vector scaled to
    1 Å in Cartesian space through ``lattice`` (rows), so that every parameter moves atoms on the same scale."""
    u, singular, _ = np.linalg.svd(projector)
    basis = u[:, singular > 0.5]
    return basis / np.linalg.norm(basis.T @ lattice, axis=1)
