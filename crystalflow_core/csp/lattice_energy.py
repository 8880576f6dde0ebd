"""Lattice energy per molecule of a crystal of rigid molecules, periodic, in torch (autograd gives the forces on
the cell and the pose): MMFF94's non-bonded terms plus a scaled D3 dispersion term.

Between rigid molecules only MMFF94's non-bonded terms act, with RDKit's parameters
(:func:`~crystalflow_core.forcefield.mmff_terms`): the buffered 14-7 van der Waals term and the buffered Coulomb
term ``332.0716 qᵢqⱼ / (r + 0.05)``; a D3(BJ) dispersion term is added to them. The energy per molecule is half
the interaction of one molecule with every other molecule of the infinite crystal, which symmetry makes the same
for all of them:

- van der Waals: pairs within ``cutoff`` (12 Å), switched smoothly to zero over its last ``switch_width`` (2 Å)
  so that the energy is continuous while the cell changes (the tail beyond is below 0.1 kcal/mol for organic
  crystals; the tests measure it against an unswitched 40 Å sum);
- electrostatics: an Ewald sum of the point charges (real space within the cutoff and shifted to zero there,
  reciprocal space, self and intramolecular corrections; tin-foil boundary), plus MMFF's buffer
  ``1/(r + 0.05) − 1/r`` between whole molecules whose centroids lie within the cutoff (switched likewise), so
  that no molecule's charge is split;
- dispersion: ``dispersion_scale`` times Grimme's D3(BJ) pair term (:mod:`.dispersion`), switched like the van der
  Waals term.

MMFF94 alone makes crystals too large and turns some of them into other packings: relaxed, the train split's
experimental crystals grew by 6.7 % in the median. Shrinking its radii R* shrank them but kept fewer of their
shells (R* × 0.96: 82 % kept at least 14 of 15 molecules, against 87 %); the D3 term's scale is chosen on the
train split by ``benchmarks/lattice_energy_fit.py`` (record: ``benchmarks/records/lattice_energy_fit``).

The tests check it against a brute-force sum over a large block of cells and against RDKit's MMFF94 energy of
a cluster cut from the crystal, and the D3 term against tad-dftd3's own energy of a dimer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from crystalflow_core.data.crystal import plane_spacings
from crystalflow_core.forcefield import CHARGE_BUFFER, COULOMB, PairTerms

from .dispersion import d3_terms
from .rigid_crystal import RigidCrystal

#: Real-space cutoff (Å) and the width of the van der Waals switch before it.
CUTOFF = 12.0
SWITCH_WIDTH = 2.0
#: Ewald splitting (1/Å): erfc(α · cutoff) ≈ 2e-5, and reciprocal vectors up to where exp(-k²/4α²) < 1e-7.
EWALD_ALPHA = 0.25
_RECIPROCAL_DECAY = 16.1
#: The D3(BJ) dispersion term's weight, chosen on the train split (the module docstring says how).
DISPERSION_SCALE = 0.5


def switch(r: Tensor, cutoff: float, width: float) -> Tensor:
    """CHARMM's switch: 1 below ``cutoff - width``, 0 beyond ``cutoff``, smooth (C¹) between."""
    if width <= 0:
        return (r < cutoff).to(r.dtype)
    on2, off2, r2 = (cutoff - width) ** 2, cutoff**2, r * r
    ramp = (off2 - r2) ** 2 * (off2 + 2.0 * r2 - 3.0 * on2) / (off2 - on2) ** 3
    return torch.where(r2 <= on2, torch.ones_like(r), torch.where(r2 >= off2, torch.zeros_like(r), ramp))


def buffered_vdw(r: Tensor, r_star: Tensor, epsilon: Tensor) -> Tensor:
    """MMFF94's buffered 14-7 van der Waals energy (kcal/mol) at distances ``r``."""
    s7 = r_star**7
    return epsilon * (1.07 * r_star / (r + 0.07 * r_star)) ** 7 * (1.12 * s7 / (r**7 + 0.12 * s7) - 2.0)


class LatticeEnergy:
    """The lattice energy per molecule (kcal/mol) of ``crystal`` with the MMFF94 ``terms`` of its molecule;
    call with ``(lattice [3, 3], molecule [n, 3])``, the reference molecule's Cartesian atoms."""

    def __init__(
        self,
        terms: PairTerms,
        crystal: RigidCrystal,
        cutoff: float = CUTOFF,
        switch_width: float = SWITCH_WIDTH,
        alpha: float = EWALD_ALPHA,
        dispersion_scale: float = DISPERSION_SCALE,
    ) -> None:
        if terms.n_atoms != len(crystal.numbers):
            raise ValueError(f"force-field terms of {terms.n_atoms} atoms, a molecule of {len(crystal.numbers)}")
        self.crystal, self.cutoff, self.switch_width, self.alpha = crystal, cutoff, switch_width, alpha
        self.r_star, self.epsilon = terms.r_star, terms.epsilon
        self.dispersion_scale = dispersion_scale
        self.dispersion = d3_terms(crystal.numbers, crystal.body) if dispersion_scale else None
        self.charge = terms.charge
        self.qq = COULOMB * terms.charge[:, None] * terms.charge[None, :]
        self.radius = float(np.linalg.norm(crystal.body, axis=1).max())
        self.constant = self._self_and_intramolecular()

    def _self_and_intramolecular(self) -> float:
        """Ewald's self term and the removal of intramolecular pairs from the reciprocal sum (a rigid molecule's
        constant)."""
        body = torch.as_tensor(self.crystal.body, dtype=torch.float64)
        r = torch.cdist(body, body)
        pair = torch.triu(torch.ones_like(r, dtype=torch.bool), diagonal=1)
        intramolecular = (self.qq[pair] * torch.erf(self.alpha * r[pair]) / r[pair]).sum()
        self_term = COULOMB * self.alpha / math.sqrt(math.pi) * (self.charge**2).sum()
        return float(-intramolecular - self_term)

    def __call__(self, lattice: Tensor, molecule: Tensor) -> Tensor:
        real, reciprocal = self.parts(lattice, molecule)
        return real + reciprocal + self.constant

    def parts(self, lattice: Tensor, molecule: Tensor) -> tuple[Tensor, Tensor]:
        """``(real-space pair sum, reciprocal Ewald sum)`` per molecule."""
        images = self.crystal.images(lattice, molecule)
        return self.pair_sum(lattice, images), self.reciprocal_sum(lattice, images)

    def neighbours(self, lattice: Tensor, images: Tensor) -> Tensor:
        """``[M, n, 3]`` every molecule (images and lattice translates, the reference itself excepted) with an atom
        within the cutoff of one of the reference molecule's, or its centroid within the cutoff of the reference's."""
        return self.contributing_pairs(lattice, images)[0]

    def contributing_pairs(self, lattice: Tensor, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(others [M, n, 3], pairs [M, n, n])``: the :meth:`neighbours` and which of their atom pairs with the
        reference molecule add anything: those within the cutoff, and every pair of a molecule whose centroid lies
        within it (MMFF's charge buffer is cut by centroid distance); the others are switched or cut to exactly
        zero."""
        cell = lattice.detach().cpu().numpy()
        centres = images.detach().mean(dim=1).cpu().numpy()
        reach = self.cutoff + 2.0 * self.radius
        layers = np.ceil(reach / plane_spacings(cell)).astype(int) + 1
        grid = np.stack(np.meshgrid(*(np.arange(-n, n + 1) for n in layers), indexing="ij"), axis=-1).reshape(-1, 3)
        offsets = grid @ cell
        distance = np.linalg.norm(centres[None, :, :] + offsets[:, None, :] - centres[0], axis=-1)
        near = distance < reach
        near[np.all(grid == 0, axis=1), 0] = False
        shift_index, image_index = np.nonzero(near)
        shifts = torch.as_tensor(grid[shift_index], dtype=lattice.dtype, device=lattice.device) @ lattice
        others = images[torch.as_tensor(image_index, device=images.device)] + shifts[:, None, :]
        with torch.no_grad():
            pair_distance = torch.cdist(images[0], others, compute_mode="donot_use_mm_for_euclid_dist")
            centre = torch.linalg.vector_norm(others.mean(dim=1) - images[0].mean(dim=0), dim=-1)
            pairs = (pair_distance < self.cutoff) | (centre < self.cutoff)[:, None, None]
            keep = pairs.any(dim=(1, 2))  # a molecule with no such pair adds exactly nothing
        return others[keep], pairs[keep]

    def pair_sum(self, lattice: Tensor, images: Tensor) -> Tensor:
        """Van der Waals (and D3), Ewald real space and MMFF's charge buffer: half the reference molecule's
        interaction. Only the :meth:`contributing_pairs` are evaluated; the rest, half to 70 % of the neighbours'
        pairs, are switched or cut to exactly zero."""
        others, pairs = self.contributing_pairs(lattice, images)
        reference = images[0]
        centroid_distance = torch.linalg.vector_norm(others.mean(dim=1) - reference.mean(dim=0), dim=-1)
        molecule, i, j = pairs.nonzero(as_tuple=True)
        r = torch.linalg.vector_norm(reference[i] - others[molecule, j], dim=-1)
        dtype, device = r.dtype, r.device
        r_star = self.r_star.to(dtype=dtype, device=device)[i, j]
        epsilon = self.epsilon.to(dtype=dtype, device=device)[i, j]
        qq = self.qq.to(dtype=dtype, device=device)[i, j]
        vdw = buffered_vdw(r, r_star, epsilon)
        if self.dispersion is not None:
            vdw = vdw + self.dispersion_scale * self.dispersion.energy(r, (i, j))
        vdw = vdw * switch(r, self.cutoff, self.switch_width)
        # Shifted to zero at the cutoff: a lattice vector crossing the cutoff takes every atom's pair with its own
        # translate across it at once, and an unshifted cut then makes the energy jump (by ~0.003 kcal/mol), a
        # cliff that stalls the minimiser. Over a whole neutral molecule within the cutoff the shift sums to zero.
        at_cutoff = math.erfc(self.alpha * self.cutoff) / self.cutoff
        ewald = qq * (torch.erfc(self.alpha * r) / r - at_cutoff) * (r < self.cutoff)
        # The buffer's correction decays as 1/r² per pair but as a multipole sum between whole neutral molecules:
        # it is cut by the molecules' centroid distance, never splitting a molecule.
        weight = switch(centroid_distance, self.cutoff, self.switch_width)[molecule]
        buffer = qq * (1.0 / (r + CHARGE_BUFFER) - 1.0 / r) * weight
        return 0.5 * (vdw + ewald + buffer).sum()

    def reciprocal_sum(self, lattice: Tensor, images: Tensor) -> Tensor:
        """Ewald's reciprocal-space energy of the cell's point charges, per molecule."""
        cell = lattice.detach().cpu().numpy()
        k_max = 2.0 * self.alpha * math.sqrt(_RECIPROCAL_DECAY)
        reach = np.ceil(k_max * np.linalg.norm(cell, axis=1) / (2.0 * math.pi)).astype(int)
        grid = np.stack(np.meshgrid(*(np.arange(-n, n + 1) for n in reach), indexing="ij"), axis=-1).reshape(-1, 3)
        # One of each ±k pair: the first non-zero index positive.
        sign = np.where(grid[:, 0] != 0, grid[:, 0], np.where(grid[:, 1] != 0, grid[:, 1], grid[:, 2]))
        reciprocal = 2.0 * math.pi * np.linalg.inv(cell).T
        keep = (sign > 0) & (np.linalg.norm(grid @ reciprocal, axis=1) < k_max)
        h = torch.as_tensor(grid[keep], dtype=lattice.dtype, device=lattice.device)
        k = 2.0 * math.pi * h @ torch.linalg.inv(lattice).T  # [K, 3]
        positions = images.reshape(-1, 3)
        charge = self.charge.to(dtype=lattice.dtype, device=lattice.device).repeat(len(images))
        phase = positions @ k.T  # [N, K]
        structure = (charge[:, None] * torch.cos(phase)).sum(0) ** 2 + (charge[:, None] * torch.sin(phase)).sum(0) ** 2
        k2 = (k * k).sum(dim=1)
        volume = torch.linalg.det(lattice)
        total = 4.0 * math.pi / volume * (torch.exp(-k2 / (4.0 * self.alpha**2)) / k2 * structure).sum()
        return COULOMB * total / len(images)
