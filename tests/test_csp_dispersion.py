"""The D3(BJ) dispersion term against independent computations: tad-dftd3's own D3 energy of a dimer, and a
brute-force sum over a large block of cells for the lattice energy's share of it."""

from __future__ import annotations

import numpy as np
import pytest
import tad_dftd3
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from tad_dftd3.param import get_functional_params
from tad_mctc.units import AU2AA, AU2KCALMOL
from test_csp_energy import P21C, crystal, start

from crystalflow_core.csp.dispersion import d3_terms
from crystalflow_core.csp.lattice_energy import LatticeEnergy
from crystalflow_core.forcefield import PairTerms


def two_body_d3(numbers: np.ndarray, positions: np.ndarray) -> float:
    """tad-dftd3's D3(BJ) energy (kcal/mol) with PBE's damping and without the three-body term."""
    params = {key: value.to(torch.float64) for key, value in get_functional_params("pbe").items()}
    params["s9"] = torch.tensor(0.0, dtype=torch.float64)
    energy = tad_dftd3.dftd3(torch.as_tensor(numbers), torch.as_tensor(positions, dtype=torch.float64) / AU2AA, params)
    return float(energy.sum()) * AU2KCALMOL


def test_pair_terms_give_tad_dftd3s_interaction_energy_of_a_dimer():
    """A stacked benzene dimer: the pair sum with the isolated molecule's coefficients against D3's interaction
    energy (dimer minus monomers), which lets coordination numbers change across the pair (a small effect)."""
    molecule = Chem.AddHs(Chem.MolFromSmiles("c1ccccc1"))
    AllChem.EmbedMolecule(molecule, randomSeed=7)
    x = molecule.GetConformer().GetPositions()
    numbers = np.array([atom.GetAtomicNum() for atom in molecule.GetAtoms()])
    y = x + np.array([0.4, 0.3, 3.6])
    reference = two_body_d3(np.r_[numbers, numbers], np.r_[x, y]) - 2.0 * two_body_d3(numbers, x)
    terms = d3_terms(numbers, x)
    ours = float(terms.energy(torch.cdist(torch.as_tensor(x), torch.as_tensor(y))).sum())
    assert reference < -2.0
    assert ours == pytest.approx(reference, rel=0.01)


def test_lattice_dispersion_agrees_with_a_brute_force_sum_over_a_block_of_cells():
    _, rigid, terms, _ = crystal(P21C)
    lattice, molecule = start(rigid)
    silent = PairTerms(torch.zeros_like(terms.charge), terms.r_star, torch.zeros_like(terms.epsilon))
    ours = float(LatticeEnergy(silent, rigid, cutoff=40.0, dispersion_scale=1.0)(lattice, molecule))

    images = rigid.images(lattice, molecule).numpy()
    grid = np.stack(np.meshgrid(*[np.arange(-12, 13)] * 3, indexing="ij"), -1).reshape(-1, 3)
    others = (images[None] + (grid @ lattice.numpy())[:, None, None, :]).reshape(-1, *images.shape[1:])
    distance = np.linalg.norm(others.mean(axis=1) - molecule.numpy().mean(axis=0), axis=1)
    others = others[(distance < 60.0) & (distance > 1e-6)]
    r = np.linalg.norm(molecule.numpy()[None, :, None, :] - others[:, None, :, :], axis=-1)
    d3 = d3_terms(rigid.numbers, rigid.body)
    c6, c8, r0 = d3.c6.numpy(), d3.c8.numpy(), d3.radius.numpy()
    brute = -0.5 * float((d3.s6 * c6 / (r**6 + r0**6) + d3.s8 * c8 / (r**8 + r0**8)).sum())
    assert brute < -3.0
    # The r⁻⁶ tail between 40 and 60 Å: 0.003 kcal/mol for this crystal.
    assert ours == pytest.approx(brute, abs=0.01)
