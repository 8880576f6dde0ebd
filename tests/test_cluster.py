"""Tests for the 17-molecule cluster: hand-computed shells and an independent supercell enumeration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crystalflow_core.data.cif import read_cif
from crystalflow_core.data.cluster import crystal_cluster
from crystalflow_core.data.crystal import Crystal
from crystalflow_core.data.molecules import find_bonds, periodic_components, select_molecular_crystal

COD = Path(__file__).parents[1].parent / "shared" / "cod"


def _crystal(lattice: np.ndarray, numbers: list[int], frac: list[list[float]], n_inversion: bool) -> Crystal:
    rotations = np.stack([np.eye(3), -np.eye(3)]) if n_inversion else np.eye(3)[None]
    return Crystal(
        name="handmade",
        source="test",
        lattice=lattice,
        rotations=rotations,
        translations=np.zeros((len(rotations), 3)),
        numbers=np.asarray(numbers),
        frac=np.asarray(frac, float),
        occupancies=np.ones(len(numbers)),
        labels=[str(i) for i in range(len(numbers))],
    )


def test_single_atom_cubic_shells() -> None:
    """One carbon per 4 Å cubic cell: 6 neighbours at 4 Å then 10 of the 12 at 4√2 Å."""
    mc = select_molecular_crystal(_crystal(4.0 * np.eye(3), [6], [[0.25, 0.25, 0.25]], n_inversion=False))
    x_s = crystal_cluster(mc)
    assert x_s.shape == (17, 1, 3)
    distance = np.linalg.norm(x_s[:, 0] - x_s[0, 0], axis=1)
    np.testing.assert_allclose(distance, [0.0] + [4.0] * 6 + [4.0 * np.sqrt(2.0)] * 10)
    np.testing.assert_allclose(x_s[0, 0], [1.0, 1.0, 1.0])
    assert len({tuple(np.round(p, 6)) for p in x_s[:, 0]}) == 17
    np.testing.assert_array_equal(crystal_cluster(mc), x_s)


def test_special_position_molecule_counted_once() -> None:
    """Acetylene on the P-1 inversion centre: the inverted image is the same molecule, not a neighbour."""
    lattice = np.diag([6.0, 7.0, 8.0])
    mc = select_molecular_crystal(_crystal(lattice, [6, 1], [[0.1, 0.0, 0.0], [1.66 / 6, 0.0, 0.0]], True))
    x_s = crystal_cluster(mc)
    centroids = x_s.mean(axis=1)
    distance = np.linalg.norm(centroids - centroids[0], axis=1)
    np.testing.assert_allclose(distance[:7], [0.0, 6.0, 6.0, 7.0, 7.0, 8.0, 8.0])
    assert np.all(distance[1:] > 1.0)
    for molecule in x_s:
        carbons = molecule[mc.numbers == 6]
        assert np.linalg.norm(carbons[0] - carbons[1]) == pytest.approx(1.2)


def test_skewed_cell_finds_true_nearest() -> None:
    """A strongly oblique cell: compare with brute-force enumeration of lattice points."""
    lattice = np.array([[7.0, 0.0, 0.0], [6.4, 2.2, 0.0], [2.0, 0.8, 18.0]])
    mc = select_molecular_crystal(_crystal(lattice, [6], [[0.0, 0.0, 0.0]], n_inversion=False))
    x_s = crystal_cluster(mc)
    grid = np.stack(np.meshgrid(*[np.arange(-8, 9)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) @ lattice
    expected = np.sort(np.linalg.norm(grid, axis=1))[:17]
    np.testing.assert_allclose(np.linalg.norm(x_s[:, 0] - x_s[0, 0], axis=1), expected)


def _brute_force_centroid_distances(mc, n_molecules: int = 17) -> np.ndarray:
    """Distances of the nearest molecule centroids from bond-graph molecules of a 9×9×9 supercell."""
    crystal = mc.crystal
    sites = crystal.unit_cell_sites()
    bonds = find_bonds(sites.numbers, sites.frac, crystal.lattice)
    component, offset, _ = periodic_components(len(sites.numbers), bonds)
    whole = sites.frac + offset
    centroids = np.stack([whole[component == c].mean(axis=0) for c in range(component.max() + 1)])
    centroids -= np.floor(centroids)
    grid = np.stack(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    all_centroids = (centroids[None] + grid[:, None]).reshape(-1, 3) @ crystal.lattice
    reference = mc.frac.mean(axis=0) @ crystal.lattice
    return np.sort(np.linalg.norm(all_centroids - reference, axis=1))[:n_molecules]


@pytest.mark.skipif(not COD.is_dir(), reason="COD test files not present")
@pytest.mark.parametrize("cod_id", ["0000102", "2010787", "2104634", "1100811", "1517337"])
def test_real_cluster_against_supercell_enumeration(cod_id: str) -> None:
    path = COD / f"{cod_id}.cif"
    if not path.exists():
        pytest.skip(f"{cod_id}.cif not present")
    mc = select_molecular_crystal(read_cif(path)[0])
    x_s = crystal_cluster(mc)
    assert x_s.shape == (17, len(mc.numbers), 3)
    np.testing.assert_allclose(x_s[0], mc.frac @ mc.crystal.lattice)
    centroids = x_s.mean(axis=1)
    distance = np.linalg.norm(centroids - centroids[0], axis=1)
    assert np.all(np.diff(distance) >= -1e-6)
    np.testing.assert_allclose(distance, _brute_force_centroid_distances(mc), atol=1e-6)
    # every molecule is a rigid copy of the reference: same sorted interatomic distances
    reference = np.sort(np.linalg.norm(x_s[0][:, None] - x_s[0][None], axis=-1).ravel())
    for molecule in x_s[1:]:
        pairs = np.sort(np.linalg.norm(molecule[:, None] - molecule[None], axis=-1).ravel())
        np.testing.assert_allclose(pairs, reference, atol=1e-6)
