"""The periodic MMFF94 lattice energy against independent computations: a brute-force sum over a large block of
cells, RDKit's MMFF94 energy of a cluster cut from the crystal, Ewald's independence of its splitting, and
autograd's gradient against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

from crystalflow_core import molecule_input
from crystalflow_core.chemistry import cluster_to_rdkit
from crystalflow_core.csp.lattice_energy import LatticeEnergy
from crystalflow_core.csp.rigid_crystal import RigidCrystal
from crystalflow_core.data.cif import read_cif
from crystalflow_core.data.molecules import select_molecular_crystal
from crystalflow_core.data.sources import bundled_cod_directory
from crystalflow_core.forcefield import PairTerms, mmff_terms

#: Small bundled crystals: 2,2-difluoroacetamide-like P2₁/c (Z' = 1), oxalic acid on an inversion centre (P2₁/c,
#: Z' = 0.5) and a P-1 crystal.
P21C, INVERSION_CENTRE, TRICLINIC = "2105330", "4507991", "2012828"


def crystal(cod_id: str):
    mc = select_molecular_crystal(read_cif(bundled_cod_directory() / f"{cod_id}.cif.gz")[0])
    molecule = molecule_input.from_molecular_crystal(mc, cod_id)
    return mc, RigidCrystal.from_molecular_crystal(mc), mmff_terms(molecule), molecule


def start(rigid: RigidCrystal) -> tuple[torch.Tensor, torch.Tensor]:
    return rigid.geometry(torch.zeros(rigid.n_parameters, dtype=torch.float64))


def brute_force(rigid: RigidCrystal, terms: PairTerms, radius: float) -> tuple[float, float]:
    """Half the interaction of the reference molecule with every whole molecule whose centroid lies within
    ``radius``, unswitched and untruncated within it: ``(van der Waals, buffered Coulomb)`` in plain numpy."""
    lattice, molecule = (t.numpy() for t in start(rigid))
    images = rigid.images(torch.as_tensor(lattice), torch.as_tensor(molecule)).numpy()
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(lattice), axis=0)
    layers = np.ceil(radius / spacing).astype(int) + 1
    grid = np.stack(np.meshgrid(*(np.arange(-n, n + 1) for n in layers), indexing="ij"), -1).reshape(-1, 3)
    others = (images[None] + (grid @ lattice)[:, None, None, :]).reshape(-1, *images.shape[1:])
    distance = np.linalg.norm(others.mean(axis=1) - molecule.mean(axis=0), axis=1)
    others = others[(distance < radius) & (distance > 1e-6)]
    r = np.linalg.norm(molecule[None, :, None, :] - others[:, None, :, :], axis=-1)
    r_star, epsilon, q = terms.r_star.numpy(), terms.epsilon.numpy(), terms.charge.numpy()
    s7 = r_star**7
    vdw = epsilon * (1.07 * r_star / (r + 0.07 * r_star)) ** 7 * (1.12 * s7 / (r**7 + 0.12 * s7) - 2.0)
    coulomb = 332.0716 * q[:, None] * q[None, :] / (r + 0.05)
    return 0.5 * float(vdw.sum()), 0.5 * float(coulomb.sum())


def without_charges(terms: PairTerms) -> PairTerms:
    return PairTerms(torch.zeros_like(terms.charge), terms.r_star, terms.epsilon)


@pytest.mark.parametrize("cod_id", [P21C, INVERSION_CENTRE])
def test_energy_agrees_with_a_brute_force_sum_over_a_block_of_cells(cod_id):
    """Centrosymmetric crystals (no cell dipole), where a sum over whole molecules in a sphere converges to the
    Ewald (tin-foil) sum."""
    _, rigid, terms, _ = crystal(cod_id)
    lattice, molecule = start(rigid)
    brute_vdw, brute_coulomb = brute_force(rigid, terms, radius=60.0)
    vdw = float(LatticeEnergy(without_charges(terms), rigid, cutoff=20.0, dispersion_scale=0.0)(lattice, molecule))
    total = float(LatticeEnergy(terms, rigid, cutoff=20.0, dispersion_scale=0.0)(lattice, molecule))
    assert vdw == pytest.approx(brute_vdw, abs=0.015)
    assert total - vdw == pytest.approx(brute_coulomb, abs=0.02)
    # The default 12 Å cutoff: the van der Waals tail it drops stays small.
    default = float(LatticeEnergy(terms, rigid, dispersion_scale=0.0)(lattice, molecule))
    assert default == pytest.approx(brute_vdw + brute_coulomb, abs=0.15)


def test_van_der_waals_equals_rdkit_on_a_cluster_cut_from_the_crystal():
    """RDKit's MMFF94 energy of the reference molecule with its neighbours, electrostatics off and pairs beyond
    the cutoff left out (RDKit's non-bonded threshold), is twice the energy per molecule with a hard cutoff."""
    mc, rigid, terms, molecule = crystal(P21C)
    cutoff = 8.0
    lattice, reference = start(rigid)
    energy = LatticeEnergy(without_charges(terms), rigid, cutoff=cutoff, switch_width=0.0, dispersion_scale=0.0)
    ours = float(energy(lattice, reference))
    neighbours = energy.neighbours(lattice, rigid.images(lattice, reference)).numpy()
    n = len(mc.numbers)
    atoms = np.concatenate([reference.numpy(), neighbours.reshape(-1, 3)])
    numbers = np.tile(mc.numbers, len(neighbours) + 1)
    mol_index = np.repeat(np.arange(len(neighbours) + 1), n)
    cluster = cluster_to_rdkit(numbers, mol_index, atoms)
    Chem.SanitizeMol(cluster)

    def vdw_energy(mol: Chem.Mol) -> float:
        Chem.SanitizeMol(mol)
        properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
        properties.SetMMFFEleTerm(False)
        field = rdForceFieldHelpers.MMFFGetMoleculeForceField(
            mol, properties, nonBondedThresh=cutoff, ignoreInterfragInteractions=False
        )
        return field.CalcEnergy()

    rest = Chem.RWMol(cluster)
    for index in reversed(range(n)):
        rest.RemoveAtom(index)
    alone = Chem.RWMol(cluster)
    for index in reversed(range(n, cluster.GetNumAtoms())):
        alone.RemoveAtom(index)
    interaction = vdw_energy(cluster) - vdw_energy(rest.GetMol()) - vdw_energy(alone.GetMol())
    assert abs(interaction) > 1.0
    assert ours == pytest.approx(0.5 * interaction, abs=1e-3)


def test_ewald_sum_does_not_depend_on_its_splitting():
    """Real and reciprocal parts trade places as α changes; a wrong self, intramolecular or reciprocal term
    would show as a change of the total."""
    _, rigid, terms, _ = crystal(TRICLINIC)
    lattice, molecule = start(rigid)
    totals = [float(LatticeEnergy(terms, rigid, cutoff=16.0, alpha=alpha)(lattice, molecule)) for alpha in (0.22, 0.3)]
    parts = [LatticeEnergy(terms, rigid, cutoff=16.0, alpha=alpha).parts(lattice, molecule) for alpha in (0.22, 0.3)]
    assert abs(float(parts[0][1]) - float(parts[1][1])) > 0.1  # the split itself moves
    assert totals[0] == pytest.approx(totals[1], abs=2e-3)


def test_gradient_matches_finite_differences():
    _, rigid, terms, _ = crystal(TRICLINIC)
    energy = LatticeEnergy(terms, rigid)
    parameters = torch.full((rigid.n_parameters,), 0.01, dtype=torch.float64, requires_grad=True)
    value = energy(*rigid.geometry(parameters))
    (gradient,) = torch.autograd.grad(value, parameters)
    step = 1e-5
    for k in range(rigid.n_parameters):
        shift = torch.zeros_like(parameters)
        shift[k] = step
        with torch.no_grad():
            up = float(energy(*rigid.geometry(parameters + shift)))
            down = float(energy(*rigid.geometry(parameters - shift)))
        assert float(gradient[k]) == pytest.approx((up - down) / (2 * step), rel=1e-3, abs=1e-3)


def test_energy_is_continuous_where_a_lattice_vector_crosses_the_cutoff():
    """At a cutoff equal to a lattice vector's length every atom's pair with its own translate crosses it at once:
    the real-space Ewald term must not jump there (a jump is a cliff the minimiser stalls on)."""
    _, rigid, terms, _ = crystal(TRICLINIC)
    lattice, molecule = start(rigid)
    length = float(torch.linalg.vector_norm(lattice, dim=1).min())
    below, above = (
        float(LatticeEnergy(terms, rigid, cutoff=length * (1.0 + sign * 1e-9))(lattice, molecule)) for sign in (-1, 1)
    )
    assert above == pytest.approx(below, abs=1e-6)
