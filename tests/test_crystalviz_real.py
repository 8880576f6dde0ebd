"""crystalviz on real data: a cluster curated from a bundled COD CIF and a tiny trained model's trajectories."""

import numpy as np
import pytest
from ase.io import read

from crystalflow_core.export import write_cluster_sdf, write_trajectory_xyz
from crystalflow_core.train import TrainConfig, train
from crystalviz.figures import overlay_figure, trajectory_figure
from crystalviz.overlay import build_overlay
from crystalviz.runs import cluster_views
from crystalviz.widgets import ClusterBrowser, OverlayViewer, TrajectoryViewer


@pytest.fixture(scope="module")
def views(small_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(
        TrainConfig(
            data=str(small_data),
            out=str(run),
            path="lerp",
            epochs=3,
            batch_size=2,
            hidden=16,
            layers=1,
            cutoff=3.5,
            progress=False,
        )
    )
    return cluster_views(run, n_clusters=2, samples=2, steps=8, split="train", device="cpu", frames=5)


def test_viewers_build_from_a_curated_cluster_and_a_trained_trajectory(views):
    cluster_id, view = next(iter(views.items()))
    n_atoms = len(view.numbers)
    assert view.n_molecules == 17 and n_atoms % 17 == 0
    times, frames = view.trajectory(0)
    assert frames.shape == (5, n_atoms, 3) and times[0] == 0.0 and times[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(frames[-1], view.samples[0], atol=1e-6)  # the trajectory ends at the sample
    player = TrajectoryViewer(view.numbers, view.mol_index, frames, times, highlight_central=True)
    assert player.n_frames == 5 and player.n_atoms == n_atoms
    assert len(set(player.colors)) == 17 and player.slider.max == 4
    overlay = OverlayViewer(view.numbers, view.mol_index, view.samples[0], view.x_s)
    assert len(set(overlay.colors)) == 17
    browser = ClusterBrowser({"lerp": views})
    assert isinstance(browser.viewer, TrajectoryViewer)
    browser.cluster_picker.value = list(views)[1]
    browser.mode_picker.value = "overlay"
    assert isinstance(browser.viewer, OverlayViewer)
    figure = trajectory_figure(view.numbers, view.mol_index, frames, times)
    assert len(figure.frames) == 5
    assert overlay_figure(view.numbers, view.mol_index, view.samples[0], view.x_s).data


def test_overlay_undoes_a_rigid_motion_of_the_real_crystal_cluster(views):
    view = next(iter(views.values()))
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.linalg.det(q))
    moved = view.x_s @ rotation.T + np.array([3.0, -1.0, 2.0])
    overlay = build_overlay(view.mol_index, moved, view.x_s)
    np.testing.assert_allclose(overlay.x_aligned, view.x_s, atol=1e-8)
    assert overlay.atom_error.max() < 1e-8 and overlay.center_error.max() < 1e-8


def test_exports_of_real_data_round_trip(views, tmp_path):
    view = next(iter(views.values()))
    times, frames = view.trajectory(1)
    path = write_trajectory_xyz(tmp_path / "traj.xyz", view.numbers, frames, times)
    back = read(path, index=":")
    assert len(back) == len(frames)
    for atoms, frame in zip(back, frames, strict=True):
        assert list(atoms.numbers) == list(view.numbers)
        np.testing.assert_allclose(atoms.positions, frame, atol=1e-6)
    from rdkit import Chem

    sdf = write_cluster_sdf(tmp_path / "cluster.sdf", view.numbers, view.mol_index, view.x_s)
    molecule = next(Chem.SDMolSupplier(str(sdf), removeHs=False, sanitize=False))
    np.testing.assert_allclose(molecule.GetConformer().GetPositions(), view.x_s, atol=1e-4)
