"""MMFF94 intermolecular energy of clusters of identical rigid molecules, batched in torch.

Why MMFF94: it is the force field RDKit (already a dependency) types and parameterises for organic molecules,
and unlike UFF or bare Lennard-Jones it carries partial charges and MMFF's buffered 14-7 van der Waals, which
treats polar hydrogens so that hydrogen bonds come out at their lengths. Between two rigid molecules only the
non-bonded terms act, so the interaction energy of a cluster is

    E = Σ_{i<j, different molecules} ε_ij (1.07 R*_ij / (r + 0.07 R*_ij))⁷ (1.12 R*_ij⁷ / (r⁷ + 0.12 R*_ij⁷) − 2)
                                      + 332.0716 q_i q_j / (r + 0.05)                         (kcal/mol)

with RDKit's parameters (:func:`mmff_terms`; constant dielectric 1, no cutoff). It equals RDKit's own MMFF energy
of the cluster minus that of its molecules alone, which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers
from torch import Tensor

from .chemistry import cluster_to_rdkit

#: MMFF94's electrostatic constant (kcal Å / (mol e²)) and distance buffer (Å).
COULOMB = 332.0716
CHARGE_BUFFER = 0.05


class ForceFieldError(ValueError):
    """RDKit cannot type this molecule for MMFF94 (unusual valence, radical, metal, missing hydrogens …)."""


@dataclass(frozen=True)
class PairTerms:
    """MMFF94 non-bonded parameters between an atom ``a`` of one copy of a molecule and ``b`` of another:
    ``charge [n]`` (e), ``r_star [n, n]`` (Å) and ``epsilon [n, n]`` (kcal/mol), atoms in the molecule's order."""

    charge: Tensor
    r_star: Tensor
    epsilon: Tensor

    @property
    def n_atoms(self) -> int:
        return len(self.charge)


def mmff_terms(molecule: Chem.Mol) -> PairTerms:
    """The :class:`PairTerms` of an RDKit molecule with explicit hydrogens and bond orders."""
    try:
        properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(molecule)
    except (RuntimeError, ValueError) as error:  # sanitisation failures
        raise ForceFieldError(f"MMFF94 cannot type the molecule: {error}") from error
    if properties is None or any(atom.GetNumRadicalElectrons() for atom in molecule.GetAtoms()):
        raise ForceFieldError("MMFF94 cannot type the molecule (unknown atom type or radical)")
    n = molecule.GetNumAtoms()
    charge = torch.tensor([properties.GetMMFFPartialCharge(a) for a in range(n)], dtype=torch.float64)
    if abs(float(charge.sum())) > 0.01:
        # Copies of an ion repel without bound: no cluster of them has a minimum.
        raise ForceFieldError(f"the molecule carries a net charge of {float(charge.sum()):+.2f} e")
    r_star = torch.empty(n, n, dtype=torch.float64)
    epsilon = torch.empty(n, n, dtype=torch.float64)
    for a in range(n):
        for b in range(a, n):
            # GetMMFFVdWParams gives (R*, ε) unscaled, then as the force field applies them (donor–acceptor
            # pairs scaled); the force field's own pair is the second.
            _, _, r_ab, e_ab = properties.GetMMFFVdWParams(a, b)
            r_star[a, b] = r_star[b, a] = r_ab
            epsilon[a, b] = epsilon[b, a] = e_ab
    return PairTerms(charge=charge, r_star=r_star, epsilon=epsilon)


def cluster_terms(numbers: np.ndarray, mol_index: np.ndarray, x: np.ndarray) -> PairTerms:
    """:class:`PairTerms` of the molecule of a curated cluster (``numbers``, ``mol_index [N]``, ``x [N, 3]``).

    Bonds come from the curation's rule and bond orders from RDKit (neutral molecule), on molecule 0; every
    molecule must be a copy of it (the same elements in the same order), as curated clusters are. Raises
    :class:`ForceFieldError` if any of that fails.
    """
    numbers, mol_index = np.asarray(numbers), np.asarray(mol_index)
    first = mol_index == 0
    for m in range(1, int(mol_index.max()) + 1):
        if not np.array_equal(numbers[mol_index == m], numbers[first]):
            raise ForceFieldError(f"molecule {m} is not a copy of molecule 0 (elements differ)")
    molecule = cluster_to_rdkit(numbers[first], np.zeros(int(first.sum()), dtype=int), np.asarray(x)[first])
    try:
        Chem.SanitizeMol(molecule)
    except (RuntimeError, ValueError) as error:
        raise ForceFieldError(f"RDKit cannot perceive the molecule: {error}") from error
    return mmff_terms(molecule)


def local_index(mol_index: Tensor) -> Tensor:
    """``[N]`` position of every atom within its molecule (molecules contiguous, as in every cluster here)."""
    mol_index = torch.as_tensor(mol_index)
    first = torch.zeros(int(mol_index.max()) + 1, dtype=torch.long).scatter_reduce(
        0, mol_index, torch.arange(len(mol_index)), reduce="amin", include_self=False
    )
    return torch.arange(len(mol_index)) - first[mol_index]


class ClusterEnergy:
    """The MMFF94 interaction energy of clusters of one layout (``mol_index [N]``, copies of ``terms``' molecule),
    with the parameters of every atom pair laid out once as dense ``[N, N]`` matrices, so that repeated calls (a
    minimisation) only compute distances."""

    def __init__(self, terms: PairTerms, mol_index: Tensor, dtype: torch.dtype = torch.float64) -> None:
        mol_index = torch.as_tensor(mol_index)
        local = local_index(mol_index.cpu())
        if int(local.max()) + 1 != terms.n_atoms:
            raise ValueError(f"molecules of {int(local.max()) + 1} atoms, terms of {terms.n_atoms}")
        device = mol_index.device
        self.r_star = terms.r_star[local][:, local].to(device=device, dtype=dtype)
        self.epsilon = terms.epsilon[local][:, local].to(device=device, dtype=dtype)
        charge = terms.charge[local].to(device=device, dtype=dtype)
        self.qq = COULOMB * charge[:, None] * charge[None, :]
        self.between = torch.triu(mol_index[:, None] != mol_index[None, :], diagonal=1)

    def __call__(self, x: Tensor) -> Tensor:
        """Energy (kcal/mol) of ``x [..., N, 3]``; the leading dimensions (samples) are kept."""
        r = pair_distances(x)
        r7, s7 = r**7, self.r_star**7
        vdw = self.epsilon * (1.07 * self.r_star / (r + 0.07 * self.r_star)) ** 7 * (1.12 * s7 / (r7 + 0.12 * s7) - 2.0)
        pair = (vdw + self.qq / (r + CHARGE_BUFFER)) * self.between
        return pair.sum(dim=(-1, -2))


def pair_distances(x: Tensor) -> Tensor:
    """``[..., N, N]`` distances of ``x [..., N, 3]`` (exact differences, not the matrix-product shortcut),
    with a finite gradient everywhere, the zero diagonal included."""
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")


def interaction_energy(x: Tensor, terms: PairTerms, mol_index: Tensor) -> Tensor:
    """MMFF94 intermolecular energy (kcal/mol) of clusters ``x [..., N, 3]`` of copies of ``terms``' molecule:
    every pair of atoms in different molecules counts once; the leading dimensions (samples) are kept."""
    mol_index = torch.as_tensor(mol_index, device=x.device)
    return ClusterEnergy(terms, mol_index, x.dtype)(x)
