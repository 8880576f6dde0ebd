"""The pull towards the weak cluster: the pool's images and translations against the crystal's own cut, the
restraint's value against a direct sum, and a start that relaxes to another crystal on its own but to the
experimental one when pulled towards that crystal's cut."""

from __future__ import annotations

import numpy as np
import torch
from test_csp_energy import P21C, TRICLINIC, crystal

from crystalflow_core.csp.cluster_lattice import read_weak_cluster
from crystalflow_core.csp.compare import CrystalReference
from crystalflow_core.csp.restraint import CentroidRestraint, pool_images, pulled_minimize
from crystalflow_core.csp.rigid_crystal import RigidCrystal
from crystalflow_core.csp.search import relax
from crystalflow_core.data.cluster import crystal_cluster


def _start(rigid: RigidCrystal, parameters: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    p = torch.zeros(rigid.n_parameters, dtype=torch.float64) if parameters is None else torch.tensor(parameters)
    lattice, molecule = rigid.geometry(p)
    return lattice.numpy(), molecule.numpy()


def test_the_pool_is_the_crystals_own_nearest_molecules_with_their_handedness():
    for cod_id in (P21C, TRICLINIC):
        mc, rigid, _, _ = crystal(cod_id)
        lattice, molecule = _start(rigid)
        pool = pool_images(rigid, lattice, molecule, 27)
        cut = crystal_cluster(mc, 27)
        # the same distances about the reference (the cut is in the CIF's frame, the pool in the standard one)
        np.testing.assert_allclose(
            np.linalg.norm(pool.centroids - pool.centroids[0], axis=1),
            np.linalg.norm(cut.mean(axis=1) - cut[0].mean(axis=0), axis=1),
            atol=1e-6,
        )
        # each pool molecule, rebuilt from its operation and translation, is a molecule of the crystal there
        frac = molecule @ np.linalg.inv(lattice)
        ops = rigid.image_ops[pool.ops]
        rebuilt = (
            np.einsum("pij,nj->pni", rigid.rotations[ops], frac) + (rigid.translations[ops] + pool.shifts)[:, None]
        )
        np.testing.assert_allclose((rebuilt @ lattice).mean(axis=1), pool.centroids, atol=1e-9)
        np.testing.assert_allclose(pool.shifts, np.rint(pool.shifts), atol=1e-12)
        # proper images keep the reference's handedness, as the weak cluster reads it off the atoms
        atoms = rebuilt @ lattice
        cues = read_weak_cluster(np.tile(mc.numbers, 27), np.repeat(np.arange(27), len(mc.numbers)), atoms)
        np.testing.assert_array_equal(np.where(pool.proper(rigid), 1, -1), cues.handedness)


def test_the_restraint_sums_squared_centroid_distances_and_has_a_gradient():
    _, rigid, _, _ = crystal(P21C)
    lattice, molecule = _start(rigid)
    pool = pool_images(rigid, lattice, molecule, 17)
    rng = np.random.default_rng(0)
    targets = pool.centroids + rng.normal(size=pool.centroids.shape)
    restraint = CentroidRestraint(rigid, pool.ops, pool.shifts, targets)
    parameters = torch.zeros(rigid.n_parameters, dtype=torch.float64, requires_grad=True)
    value = restraint(*rigid.geometry(parameters))
    np.testing.assert_allclose(float(value.detach()), ((pool.centroids - targets) ** 2).sum(), rtol=1e-12)
    (gradient,) = torch.autograd.grad(value, parameters)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    at_targets = CentroidRestraint(rigid, pool.ops, pool.shifts, pool.centroids)
    assert float(at_targets(*map(torch.as_tensor, (lattice, molecule)))) < 1e-18


def test_a_start_pulled_towards_the_crystals_cut_relaxes_to_the_crystal():
    mc, rigid, terms, _ = crystal(P21C)
    cut = crystal_cluster(mc, 17)
    weak = read_weak_cluster(np.tile(mc.numbers, 17), np.repeat(np.arange(17), len(mc.numbers)), cut)
    parameters = np.zeros(rigid.n_parameters)
    parameters[0], parameters[-2], parameters[-1] = 0.3, 0.3, 0.6  # the cell stretched, the molecule turned
    start = RigidCrystal.from_molecular_crystal(rigid.to_molecular_crystal(*_start(rigid, parameters)))
    reference = CrystalReference.of(mc)
    alone, pulled = relax(start, terms), pulled_minimize(start, terms, weak, use_handedness=True)
    assert reference.compare(alone.crystal.to_molecular_crystal(alone.lattice, alone.molecule))["matched"] < 8
    found = reference.compare(pulled.crystal.to_molecular_crystal(pulled.lattice, pulled.molecule))
    assert found["matched"] == 15
    # it ends at a minimum of the lattice energy alone, and starts where the start does
    minimum = pulled.crystal.to_molecular_crystal(pulled.lattice, pulled.molecule)
    again = relax(RigidCrystal.from_molecular_crystal(minimum), terms)
    np.testing.assert_allclose(again.energy, pulled.energy, atol=1e-3)
    np.testing.assert_allclose(pulled.start_energy, alone.start_energy, rtol=1e-12)
