"""Grimme's D3 dispersion with Becke–Johnson damping between rigid copies of a molecule, with the coefficients of
tad-dftd3 (``tad_dftd3``, a maintained torch implementation of DFT-D3).

Why a dispersion term on top of MMFF94: MMFF94's buffered 14-7 attraction falls off as r⁻⁷ and is fitted to
gas-phase pairs; relaxed in it alone, experimental crystals grow (train split: +6.7 % in the median) and some turn
into other packings (test crystal 7216950 keeps 5 of its 15 shell molecules; 14 with half of D3). A scaled D3 term
adds the r⁻⁶ attraction of the crystal's many distant pairs (``benchmarks/lattice_energy_fit.py`` chooses the
scale on the train split).

A rigid molecule keeps its coordination numbers, so every atom pair's C6 and C8 are computed once, from the isolated
molecule; the pair energy is then ``−(s6 C6 / (r⁶ + R0⁶) + s8 C8 / (r⁸ + R0⁸))`` with ``R0 = a1 √(C8/C6) + a2``
and a functional's damping parameters (PBE's by default). The three-body term is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tad_dftd3 import data, model, ncoord, reference
from tad_dftd3.param import get_functional_params
from tad_mctc.units import AU2AA, AU2KCALMOL
from torch import Tensor

#: The functional whose D3(BJ) damping parameters are used.
FUNCTIONAL = "pbe"


@dataclass(frozen=True)
class DispersionTerms:
    """D3(BJ) pair coefficients between an atom of one copy of a molecule and an atom of another: ``c6 [n, n]``
    (kcal/mol Å⁶) and ``c8 [n, n]`` (kcal/mol Å⁸), each with its weight ``s6``/``s8``, and the damping radius
    ``radius [n, n]`` (Å)."""

    c6: Tensor
    c8: Tensor
    radius: Tensor
    s6: float
    s8: float

    def energy(self, r: Tensor, pairs: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Pair energies (kcal/mol) at distances ``r [..., n, n]`` between the atoms of two copies, or, given
        ``pairs`` (atom indices ``i``, ``j`` of the two copies), at distances ``r [P]`` of those pairs."""
        c6, c8, radius = (t.to(dtype=r.dtype, device=r.device) for t in (self.c6, self.c8, self.radius))
        if pairs is not None:
            c6, c8, radius = c6[pairs], c8[pairs], radius[pairs]
        return -(self.s6 * c6 / (r**6 + radius**6) + self.s8 * c8 / (r**8 + radius**8))


def d3_terms(numbers: np.ndarray, positions: np.ndarray, functional: str = FUNCTIONAL) -> DispersionTerms:
    """The :class:`DispersionTerms` of a molecule of atoms ``numbers`` at ``positions [n, 3]`` (Å)."""
    z = torch.as_tensor(np.asarray(numbers), dtype=torch.long)
    bohr_positions = torch.as_tensor(np.asarray(positions), dtype=torch.float64) / AU2AA
    references = reference.Reference(dtype=torch.float64)
    weights = model.weight_references(z, ncoord.cn_d3(z, bohr_positions), references)
    c6 = model.atomic_c6(z, weights, references)
    r4r2 = data.R4R2(dtype=torch.float64)[z]
    c8 = 3.0 * c6 * r4r2[:, None] * r4r2[None, :]
    params = {key: float(value) for key, value in get_functional_params(functional).items()}
    radius = params["a1"] * torch.sqrt(c8 / c6) + params["a2"]
    return DispersionTerms(
        c6=c6 * AU2KCALMOL * AU2AA**6,
        c8=c8 * AU2KCALMOL * AU2AA**8,
        radius=radius * AU2AA,
        s6=params["s6"],
        s8=params["s8"],
    )
