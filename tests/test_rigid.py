"""Rigid-body objective: SO(3) maps against SciPy, geodesic paths, the loss, the SE(3) sampler, equivariance."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from crystalflow_core import so3
from crystalflow_core.data.noise import molecule_centroids, random_rotations
from crystalflow_core.data.symmetry import proper_symmetries
from crystalflow_core.nn import PaiNNVelocity
from crystalflow_core.paths import get_path
from crystalflow_core.paths.rigid import closest_relabelling
from crystalflow_core.sampling import sample, sample_rigid


def _rigid_cluster(seed: int = 0, n_molecules: int = 4, n_atoms: int = 5, n_graphs: int = 2, shape=None):
    """Graphs of rigid molecules: x_s, and x_w made of each molecule randomly turned and shifted (float64)."""
    gen = torch.Generator().manual_seed(seed)
    if shape is None:
        shape = 1.5 * torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64)
    n_atoms = len(shape)
    per_graph = n_molecules * n_atoms
    molecule = torch.arange(n_graphs * n_molecules).repeat_interleave(n_atoms)
    batch = torch.arange(n_graphs).repeat_interleave(per_graph)
    centres = 6.0 * torch.randn(n_graphs * n_molecules, 3, generator=gen, dtype=torch.float64)
    turns = random_rotations(n_graphs * n_molecules, 180.0, gen)
    body = shape.repeat(n_graphs * n_molecules, 1)
    x_s = so3.place(centres, turns, body, molecule)
    noise = random_rotations(n_graphs * n_molecules, 180.0, gen)
    shift = torch.randn(n_graphs * n_molecules, 3, generator=gen, dtype=torch.float64)
    x_w = so3.place(centres + shift, noise @ turns, body, molecule)
    numbers = torch.randint(1, 9, (n_atoms,), generator=gen).repeat(n_graphs * n_molecules)
    return numbers, x_w, x_s, batch, molecule


def _max_shape_change(x: torch.Tensor, reference: torch.Tensor, molecule: torch.Tensor) -> float:
    """Largest change of an intramolecular distance between two poses of the same molecules."""
    worst = 0.0
    for m in range(int(molecule.max()) + 1):
        atoms = molecule == m
        change = torch.cdist(x[atoms], x[atoms]) - torch.cdist(reference[atoms], reference[atoms])
        worst = max(worst, float(change.abs().max()))
    return worst


def test_exp_and_log_agree_with_scipy_at_every_angle_including_pi():
    rotations = random_rotations(500, 180.0, torch.Generator().manual_seed(0))
    w = so3.log_map(rotations)
    torch.testing.assert_close(w, torch.as_tensor(Rotation.from_matrix(rotations.numpy()).as_rotvec()))
    vectors = torch.tensor([[math.pi, 0.0, 0.0], [0.0, 0.0, 1e-9], [0.3, -2.0, 1.1], [0.0, 0.0, 0.0]])
    expected = torch.as_tensor(Rotation.from_rotvec(vectors.numpy()).as_matrix(), dtype=torch.float32)
    torch.testing.assert_close(so3.exp_map(vectors), expected)
    back = so3.log_map(so3.exp_map(vectors.double()))
    torch.testing.assert_close(back[1:], vectors[1:].double(), atol=1e-7, rtol=0)
    # at π the axis is defined up to its sign; the rotation and the angle are not
    assert float(back[0].norm()) == pytest.approx(math.pi)
    torch.testing.assert_close(so3.exp_map(back[:1]), so3.exp_map(vectors[:1].double()))


def test_kabsch_recovers_a_rotation_and_never_returns_a_reflection():
    numbers, x_w, x_s, batch, molecule = _rigid_cluster()
    n = int(molecule.max()) + 1
    body = x_w - molecule_centroids(x_w, molecule, n)[molecule]
    rotation, centre = so3.kabsch(body, x_s, molecule, n)
    torch.testing.assert_close(so3.place(centre, rotation, body, molecule), x_s)
    mirrored, _ = so3.kabsch(body, -x_s, molecule, n)
    torch.testing.assert_close(torch.linalg.det(mirrored), torch.ones(n, dtype=torch.float64))


def test_path_is_the_geodesic_from_start_to_crystal_with_exact_molecules():
    numbers, x_w, x_s, batch, molecule = _rigid_cluster(1)
    path = get_path("rigid")
    n = int(molecule.max()) + 1
    for t in (0.0, 0.3, 1.0):
        x_t, end = path.interpolate(x_w, x_s, torch.full((len(x_w),), t, dtype=torch.float64), molecule)
        torch.testing.assert_close(end, x_s)
        assert _max_shape_change(x_t, x_s, molecule) < 1e-10
        centroid = molecule_centroids(x_t, molecule, n)
        expected = (1 - t) * molecule_centroids(x_w, molecule, n) + t * molecule_centroids(x_s, molecule, n)
        torch.testing.assert_close(centroid, expected)
        # angle from the start grows linearly: t times the full turn (SciPy's independent fit as reference)
        for m in range(n):
            atoms = molecule == m
            done = Rotation.align_vectors(
                (x_t[atoms] - x_t[atoms].mean(0)).numpy(), (x_w[atoms] - x_w[atoms].mean(0)).numpy()
            )[0]
            whole = Rotation.align_vectors(
                (x_s[atoms] - x_s[atoms].mean(0)).numpy(), (x_w[atoms] - x_w[atoms].mean(0)).numpy()
            )[0]
            assert done.magnitude() == pytest.approx(t * whole.magnitude(), abs=1e-7)


def test_loss_vanishes_for_the_crystal_oracle_even_when_relabelled_by_an_automorphism():
    swap = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]])
    # atoms 0 and 1 equivalent under a C2 axis along z (a rotation, which a rigid molecule can make)
    shape = torch.tensor([[1.0, 0.5, 0.2], [-1.0, -0.5, 0.2], [0.0, 0.0, 1.0], [0.0, 0.0, -1.3]], dtype=torch.float64)
    assert proper_symmetries(shape, swap).shape == (2, 4)
    numbers, x_w, x_s, batch, molecule = _rigid_cluster(2, shape=shape)
    numbers = torch.tensor([6, 6, 7, 8]).repeat(int(molecule.max()) + 1)
    relabelled = x_s.reshape(-1, 4, 3)[:, [1, 0, 2, 3]].reshape(-1, 3)
    path = get_path("rigid")

    def oracle(numbers, x, condition, t, batch, molecule):
        return x_s - x

    def relabelling_oracle(numbers, x, condition, t, batch, molecule):
        return relabelled - x

    def zero(numbers, x, condition, t, batch, molecule):
        return torch.zeros_like(x)

    kwargs = {"molecule": molecule, "automorphisms": [swap, swap]}
    for model in (oracle, relabelling_oracle):
        loss = path.loss(model, numbers, x_w, x_s, batch, generator=torch.Generator().manual_seed(0), **kwargs)
        assert float(loss) < 1e-12
    without_symmetry = path.loss(
        relabelling_oracle, numbers, x_w, x_s, batch, generator=torch.Generator().manual_seed(0), molecule=molecule
    )
    assert float(without_symmetry) > 0.1
    assert float(path.loss(zero, numbers, x_w, x_s, batch, molecule=molecule)) > 0.1


def test_proper_symmetries_keep_rotations_and_drop_mirror_images():
    swap = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]])
    mirror = torch.tensor([[1.0, 0.5, 0.0], [-1.0, 0.5, 0.0], [0.0, -0.7, 0.3], [0.0, 0.2, -1.4]])  # plane x = 0
    torch.testing.assert_close(proper_symmetries(mirror, swap), swap[:1])
    planar = mirror * torch.tensor([1.0, 1.0, 0.0])  # flat: the same swap is a C2 rotation about y
    torch.testing.assert_close(proper_symmetries(planar, swap), swap)


def test_closest_relabelling_picks_the_permutation_nearest_the_reference():
    target = torch.arange(24, dtype=torch.float64).reshape(8, 3)  # one graph, two molecules of four atoms
    reference = target.reshape(2, 4, 3)[:, [2, 1, 0, 3]].reshape(8, 3) + 0.01
    perms = torch.tensor([[0, 1, 2, 3], [2, 1, 0, 3], [0, 3, 2, 1]])
    torch.testing.assert_close(closest_relabelling(reference, target, [0, 8], [2], [perms]), reference - 0.01)


def test_sampler_with_the_crystal_oracle_keeps_molecules_exact_and_lands_on_the_crystal():
    numbers, x_w, x_s, batch, molecule = _rigid_cluster(4)
    path = get_path("rigid")

    def oracle(numbers, x, condition, t, batch, molecule):
        return x_s - x

    trajectory = sample(oracle, path, numbers, x_w, batch, steps=7, molecule=molecule, x_0=x_w)
    assert trajectory.shape == (8, *x_w.shape)
    torch.testing.assert_close(trajectory[0], x_w)
    torch.testing.assert_close(trajectory[-1], x_s)
    for frame in trajectory:
        assert _max_shape_change(frame, x_s, molecule) < 1e-9
    with pytest.raises(ValueError, match="rigid"):
        sample(oracle, path, numbers, x_w, batch, method="euler", molecule=molecule)


def test_random_start_keeps_centroids_and_shapes_and_forgets_orientations():
    numbers, x_w, x_s, batch, molecule = _rigid_cluster(5)
    path = get_path("rigid")
    n = int(molecule.max()) + 1
    start = path.prior(x_w, molecule, torch.Generator().manual_seed(0))
    torch.testing.assert_close(molecule_centroids(start, molecule, n), molecule_centroids(x_w, molecule, n))
    assert _max_shape_change(start, x_w, molecule) < 1e-10
    assert not torch.allclose(start, x_w, atol=0.1)


def _angular_velocity(model, path, numbers, x, x_w, batch, molecule):
    t = torch.full((int(batch.max()) + 1,), 0.25, dtype=x.dtype)
    return path.velocities(model, numbers, x, x_w, t, batch, molecule)


def test_angular_velocity_is_an_axial_vector_of_an_equivariant_network():
    torch.manual_seed(0)
    numbers, x_w, x_s, batch, molecule = _rigid_cluster(6)
    model = PaiNNVelocity(hidden=16, layers=2, cutoff=4.0, molecular_frame=True).double()
    with torch.no_grad():  # large random weights: an untrained network's output is nearly radial (no turn)
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    path = get_path("rigid")
    x = path.prior(x_w, molecule, torch.Generator().manual_seed(1))
    v, omega = _angular_velocity(model, path, numbers, x, x_w, batch, molecule)
    assert omega.abs().max() > 0.05
    rotation = random_rotations(1, 180.0, torch.Generator().manual_seed(2))[0]
    reflection = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)) @ rotation
    for q in (rotation, reflection):
        v_q, omega_q = _angular_velocity(model, path, numbers, x @ q.T, x_w @ q.T, batch, molecule)
        torch.testing.assert_close(v_q, v @ q.T, atol=1e-8, rtol=1e-6)
        torch.testing.assert_close(omega_q, torch.linalg.det(q) * omega @ q.T, atol=1e-8, rtol=1e-6)


def test_untrained_network_samples_keep_every_molecule_exact():
    torch.manual_seed(0)
    numbers, x_w, x_s, batch, molecule = _rigid_cluster(7)
    model = PaiNNVelocity(hidden=16, layers=2, cutoff=4.0, molecular_frame=True)
    trajectory = sample_rigid(model, get_path("rigid"), numbers, x_w.float(), batch, molecule, steps=5)
    assert trajectory.dtype == torch.float32
    for frame in trajectory:
        assert _max_shape_change(frame.double(), x_s, molecule) < 1e-3
    assert np.isfinite(trajectory.numpy()).all()


def test_inertial_axes_are_polar_vectors_and_fade_out_where_undefined():
    gen = torch.Generator().manual_seed(8)
    body = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    molecule = torch.arange(3).repeat_interleave(4)
    body = body - molecule_centroids(body, molecule, 3)[molecule]
    axes = so3.inertial_axes(body, molecule, 3)
    eigenvectors = torch.linalg.eigh(torch.stack([body[molecule == m].T @ body[molecule == m] for m in range(3)]))[1]
    torch.testing.assert_close(axes.abs().sum(dim=1) > 0, torch.ones(3, 3, dtype=torch.bool))
    torch.testing.assert_close(  # each axis is ± an eigenvector of the second-moment matrix
        torch.einsum("mik,mik->mk", axes, eigenvectors).abs(), axes.norm(dim=1), atol=1e-10, rtol=0
    )
    rotation = random_rotations(1, 180.0, gen)[0]
    for q in (rotation, -rotation):
        torch.testing.assert_close(so3.inertial_axes(body @ q.T, molecule, 3), q @ axes)
    centrosymmetric = torch.cat([body[:2], -body[:2]])  # third moments vanish: no signed axis exists
    assert so3.inertial_axes(centrosymmetric, torch.zeros(4, dtype=torch.long), 1).abs().max() < 1e-8


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_start_fraction_sets_how_many_clusters_are_trained_at_the_random_start(fraction):
    numbers, x_w, x_s, batch, molecule = _rigid_cluster(5, n_graphs=64)
    seen = {}

    def recorder(numbers, x, condition, t, batch, molecule):
        seen.update(x=x, t=t)
        return torch.zeros_like(x)

    path = get_path("rigid", start_fraction=fraction)
    path.loss(recorder, numbers, x_w, x_s, batch, generator=torch.Generator().manual_seed(3), molecule=molecule)
    at_start = seen["t"] == 0
    assert abs(float(at_start.double().mean()) - fraction) < 0.2
    if fraction == 1.0:
        assert bool(at_start.all())
    # at t = 0 every molecule sits at its x_w centroid in some orientation; later it has moved towards x_s
    n_molecules = int(molecule.max()) + 1
    drift = (
        molecule_centroids(seen["x"], molecule, n_molecules) - molecule_centroids(x_w, molecule, n_molecules)
    ).norm(dim=-1)
    molecule_graph = torch.zeros(n_molecules, dtype=torch.long).index_copy_(0, molecule, batch)
    assert float(torch.cat([drift[at_start[molecule_graph]], torch.zeros(1)]).max()) < 1e-9
    if fraction < 1.0:
        assert float(drift[~at_start[molecule_graph]].max()) > 1e-3
    with pytest.raises(ValueError, match="start_fraction"):
        get_path("rigid", start_fraction=1.5)
