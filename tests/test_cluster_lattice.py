"""Reading the weak cluster (csp/cluster_lattice.py): handedness cues, cell comparison, cell and space-group
guesses on synthetic crystal clusters."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crystalflow_core.csp import cluster_lattice as cl

#: A chiral rigid molecule (no improper symmetry): six carbons, centred, Å.
CHIRAL = np.array(
    [[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 1.4, 0.2], [-0.3, -0.4, 1.3], [2.1, 1.1, 0.6], [0.9, -1.2, -0.8]]
)
CARBONS = np.full(len(CHIRAL), 6)

#: P 1 21/c 1: rotations and translations acting on fractional column vectors.
P21C = (
    np.array([np.eye(3), np.diag([-1, 1, -1]), -np.eye(3), np.diag([1, -1, 1])], dtype=np.float64),
    np.array([[0, 0, 0], [0, 0.5, 0.5], [0, 0, 0], [0, 0.5, 0.5]], dtype=np.float64),
)


def monoclinic(a: float, b: float, c: float, beta: float) -> np.ndarray:
    beta = np.radians(beta)
    return np.array([[a, 0.0, 0.0], [0.0, b, 0.0], [c * np.cos(beta), 0.0, c * np.sin(beta)]])


def crystal_cut(lattice, rotations, translations, molecule, n_molecules=17):
    """The 17-molecule cut (``[17, n, 3]`` Cartesian, central molecule first) of a Z' = 1 crystal of ``molecule``
    (Cartesian, centred) placed at fractional centroid (0.23, 0.17, 0.31)."""
    frac = (molecule + np.array([0.23, 0.17, 0.31]) @ lattice) @ np.linalg.inv(lattice)
    images = np.einsum("kij,nj->kni", rotations, frac) + translations[:, None, :]
    images -= np.floor(images.mean(axis=1, keepdims=True))
    shifts = np.array(list(itertools.product(range(-3, 4), repeat=3)), dtype=np.float64)
    every = (images[None] + shifts[:, None, None, :]).reshape(-1, len(molecule), 3) @ lattice
    centre = frac.mean(axis=0) @ lattice
    distance = np.linalg.norm(every.mean(axis=1) - centre, axis=1)
    return every[np.argsort(distance, kind="stable")[:n_molecules]]


def weak(cut, sigma, seed):
    """``x_w`` of a cut: every molecule rotated at random about its centroid, the centroid displaced by
    ``sigma``."""
    rng = np.random.default_rng(seed)
    centroids = cut.mean(axis=1, keepdims=True)
    rotations = Rotation.random(len(cut), random_state=seed).as_matrix()
    moved = np.einsum("mij,mnj->mni", rotations, cut - centroids) + centroids
    return moved + sigma * rng.normal(size=(len(cut), 1, 3))


def cues_of(x):
    n_molecules, n_atoms = x.shape[:2]
    numbers = np.tile(CARBONS[:n_atoms], n_molecules)
    mol_index = np.repeat(np.arange(n_molecules), n_atoms)
    return cl.read_weak_cluster(numbers, mol_index, x.reshape(-1, 3))


# --- handedness ---------------------------------------------------------------------------------------------


def test_kabsch_fits_a_rotated_copy_properly_and_a_mirror_image_improperly():
    rotation = Rotation.from_euler("xyz", [0.3, 1.1, -2.0]).as_matrix()
    copies = np.stack([CHIRAL @ rotation.T, -CHIRAL @ rotation.T])
    proper = cl.kabsch_rmsd(copies, CHIRAL)
    improper = cl.kabsch_rmsd(copies, CHIRAL, improper=True)
    assert proper[0] < 1e-6 and improper[1] < 1e-6
    assert proper[1] > 0.1 and improper[0] > 0.1


def test_handedness_separates_proper_from_improper_images_of_a_chiral_molecule():
    lattice = monoclinic(5.5, 7.0, 9.0, 100.0)
    cut = crystal_cut(lattice, *P21C, CHIRAL)
    cues = cues_of(weak(cut, 0.5, seed=1))
    # the truth: which of the cut's molecules an improper operation made
    truth = np.where(cl.kabsch_rmsd(cut, cut[0]) < 1e-6, 1, -1)
    assert not cues.planar and not cues.achiral and cues.chirality_informative
    np.testing.assert_array_equal(cues.handedness, truth)
    assert (truth == -1).sum() >= 4 and (truth == 1).sum() >= 4


def test_a_planar_molecule_has_no_handedness():
    planar = CHIRAL.copy()
    planar[:, 2] = 0.0
    rotation = Rotation.from_euler("xyz", [0.3, 1.1, -2.0]).as_matrix()
    x = np.stack([planar, planar @ rotation.T + 5.0, -planar @ rotation.T - 5.0])
    cues = cues_of(x)
    assert cues.planar and not cues.chirality_informative
    np.testing.assert_array_equal(cues.handedness, [0, 0, 0])


def test_a_molecule_with_a_mirror_plane_is_achiral():
    # a bent four-carbon chain, mirror-symmetric about the plane x = 0 (not planar)
    chain = np.array([[-1.9, 0.0, 0.8], [-0.75, 0.0, -0.2], [0.75, 0.0, -0.2], [1.9, 0.0, 0.8]])
    chain[:, 1] = [0.6, 0.0, 0.0, 0.6]
    assert cl.is_achiral(np.full(4, 6), chain)
    assert not cl.is_achiral(CARBONS, CHIRAL)


# --- cells --------------------------------------------------------------------------------------------------


def test_same_cell_ignores_the_basis_and_the_reduction_boundary_but_not_a_stretch():
    lattice = monoclinic(5.5, 7.0, 9.0, 100.0)
    other_basis = np.array([[1, 0, 0], [1, 1, 0], [-1, 2, 1]]) @ lattice
    assert cl.same_cell(other_basis, lattice, 1e-6, 1e-4)
    assert cl.same_cell(lattice * np.array([[1.04], [1.0], [0.97]]), lattice)
    assert not cl.same_cell(lattice * np.array([[1.07], [1.0], [1.0]]), lattice)
    assert not cl.same_cell(lattice * np.array([[2.0], [1.0], [1.0]]), lattice)  # a supercell
    near_right = monoclinic(5.5, 7.0, 9.0, 90.5)
    mirrored = monoclinic(5.5, 7.0, 9.0, 89.5)
    assert cl.same_cell(near_right, mirrored, 1e-6, 1e-4)  # beta and 180° - beta: one lattice


def test_primitive_lattice_of_a_centred_cell_has_its_volume_halved():
    lattice = np.diag([6.0, 8.0, 10.0])
    rotations = np.array([np.eye(3), np.eye(3)])
    translations = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    primitive = cl.primitive_lattice(lattice, rotations, translations)
    assert abs(np.linalg.det(primitive)) == pytest.approx(240.0)
    assert sorted(np.round(np.linalg.norm(primitive, axis=1), 6)) == [5.0, 5.0, 10.0]


def p21c_cell() -> np.ndarray:
    """A P 1 21/c 1 cell whose volume per molecule is the volume estimated from :data:`CHIRAL`'s six carbons."""
    lattice = monoclinic(5.5, 7.0, 9.0, 100.0)
    return lattice * (4 * cl.molecule_volume(CARBONS) / abs(np.linalg.det(lattice))) ** (1 / 3)


#: The molecule of the P 1 21/c 1 tests, shrunk so that its images in the small cell keep apart.
SMALL = CHIRAL * 0.6


def test_a_noiseless_crystal_cluster_gives_back_its_own_reduced_cell():
    lattice = p21c_cell()
    cut = crystal_cut(lattice, *P21C, SMALL)
    guesses = cl.guess_cells(cues_of(weak(cut, 0.0, seed=2)), k=3, scoring=cl.CellScoring(sigma=0.05))
    best = guesses[0]
    assert cl.same_cell(best.lattice, lattice, 1e-6, 1e-4)
    assert best.z == 4 and best.rms < 1e-6
    assert [number for number, _ in best.space_groups[:3]].count(14) == 1


@pytest.mark.parametrize("seed", [3, 4])
def test_with_moderate_centroid_noise_the_true_cell_is_among_the_top_guesses(seed):
    lattice = p21c_cell()
    cut = crystal_cut(lattice, *P21C, SMALL)
    # the default search (12 shortest difference vectors) misses the true cell for seed 3; 16 finds it
    cues = cues_of(weak(cut, 0.3, seed=seed))
    guesses = cl.guess_cells(cues, k=3, scoring=cl.CellScoring(sigma=0.3), n_shortest=16)
    assert any(cl.same_cell(g.lattice, lattice) for g in guesses)


def test_a_wrong_lattice_scores_below_the_true_one():
    lattice = p21c_cell()
    cues = cues_of(weak(crystal_cut(lattice, *P21C, SMALL), 0.3, seed=5))
    scoring = cl.CellScoring(sigma=0.3)
    true_score = max(cl.score_fit(cues, fit, scoring) for fit in cl.fit_lattice(cues, lattice))
    skewed = lattice @ Rotation.from_euler("xyz", [0.5, -0.3, 0.4]).as_matrix().T * 1.1
    wrong_score = max(cl.score_fit(cues, fit, scoring) for fit in cl.fit_lattice(cues, skewed))
    assert true_score > wrong_score
