"""nglview/ipywidgets viewers of crystalviz, checked on their Python-side state (no kernel needed)."""

import html

import ase.io
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation

from crystalflow_core.csp.cif_writer import write_cif
from crystalflow_core.data.sources import bundled_cod_directory
from crystalflow_core.data.symmetry import cluster_bonds
from crystalflow_core.molecule_input import read_crystal
from crystalviz.colors import molecule_colors
from crystalviz.demo import demo_cluster_view
from crystalviz.views import ClusterView
from crystalviz.widgets import (
    LIVE_ONLY,
    ClusterBrowser,
    CrystalViewer,
    OverlayViewer,
    TrajectoryViewer,
    crystal_viewer,
)

METRICS = {"pm_atom": 0.5, "pm_center": 0.25, "collision": 1.5, "clash": 0.0, "separation": 0.0}


@pytest.fixture
def cluster() -> ClusterView:
    """A 17-molecule cluster (swap for a curated cluster when available)."""
    return demo_cluster_view(n_samples=3, n_frames=9, seed=4)


@pytest.fixture
def trajectory(cluster):
    """(times [T], frames [T, N, 3]) of one sample."""
    return cluster.trajectory(1)


def _calls(view, method: str) -> list[dict]:
    return [message for message in view._ngl_msg_archive if message.get("methodName") == method]


def test_trajectory_viewer_state(cluster, trajectory):
    times, frames = trajectory
    viewer = TrajectoryViewer(cluster.numbers, cluster.mol_index, frames, times)
    assert viewer.n_frames == 9 and viewer.n_atoms == len(cluster.numbers)
    assert (viewer.slider.min, viewer.slider.max) == (0, 8)
    assert viewer.play.max == 8 and viewer.view.max_frame == 8
    assert viewer.counter.value == "frame 1/9 · t = 0.000"
    assert viewer.colors == molecule_colors(17) and len(set(viewer.colors)) == 17
    representations = viewer.view.representations
    assert len(representations) == 17
    for molecule, representation in enumerate(representations):
        assert representation["params"]["sele"] == str(molecule + 1)
        assert representation["params"]["color"] == viewer.colors[molecule]
        assert representation["params"]["opacity"] == 1.0
    assert len(_calls(viewer.view, "loadFile")) == 1
    # an explicit stage size: inside a box the stage would otherwise measure zero width (a 1-pixel canvas)
    assert [call["args"] for call in _calls(viewer.view, "setSize")] == [["100%", "420px"]]


def test_trajectory_viewer_moves_frames_and_speed(cluster, trajectory):
    times, frames = trajectory
    viewer = TrajectoryViewer(cluster.numbers, cluster.mol_index, frames, times, interval_ms=200)
    viewer.frame = 4
    assert viewer.view.frame == 4 and viewer.play.value == 4
    assert viewer.counter.value == f"frame 5/9 · t = {times[4]:.3f}"
    source = viewer.view._trajlist[0]
    assert source.n_frames == 9
    np.testing.assert_allclose(source.get_coordinates(4), frames[4], atol=1e-5)
    viewer.speed.value = 2.0
    assert viewer.play.interval == 100
    viewer.speed.value = 0.5
    assert viewer.play.interval == 400


def test_trajectory_viewer_highlights_central_molecule(cluster, trajectory):
    _, frames = trajectory
    viewer = TrajectoryViewer(cluster.numbers, cluster.mol_index, frames, highlight_central=True)
    representations = viewer.view.representations
    assert representations[0]["type"] == "ball+stick" and representations[0]["params"]["opacity"] == 1.0
    assert all(r["type"] == "licorice" and r["params"]["opacity"] < 1.0 for r in representations[1:])


def test_trajectory_viewer_bonds_come_from_first_frame(cluster, trajectory):
    _, frames = trajectory
    stretched = frames.copy()
    stretched[1:] *= 1.7
    viewer = TrajectoryViewer(cluster.numbers, cluster.mol_index, stretched)
    expected = cluster_bonds(cluster.numbers, cluster.mol_index, frames[0])
    np.testing.assert_array_equal(viewer.bonds, expected)
    topology = viewer.view._trajlist[0].get_structure_string()
    conect = [line for line in topology.splitlines() if line.startswith("CONECT")]
    assert sum(len(line[11:]) // 5 for line in conect) == 2 * len(expected)


def test_trajectory_viewer_rejects_mismatched_input(cluster, trajectory):
    times, frames = trajectory
    with pytest.raises(ValueError, match="trajectory"):
        TrajectoryViewer(cluster.numbers, cluster.mol_index, frames[:, :-1])
    with pytest.raises(ValueError, match="times"):
        TrajectoryViewer(cluster.numbers, cluster.mol_index, frames, times[:-1])


def test_overlay_viewer_aligns_and_draws(cluster):
    rotation = Rotation.from_euler("zxz", [15.0, 80.0, -60.0], degrees=True).as_matrix()
    x_pred = cluster.x_s @ rotation.T - 2.0
    viewer = OverlayViewer(cluster.numbers, cluster.mol_index, x_pred, cluster.x_s, metrics=METRICS)
    assert viewer.n_atoms == len(cluster.numbers)
    assert viewer.overlay.atom_error.max() < 1e-9
    assert viewer.caption.startswith("PM(atom) 0.500 Å") and viewer.caption in viewer.label.value
    assert len(_calls(viewer.view, "loadFile")) == 2
    assert [call["args"] for call in _calls(viewer.view, "setSize")] == [["100%", "420px"]]
    representations = _calls(viewer.view, "addRepresentation")
    assert len(representations) == 1 + 17
    assert {r["kwargs"]["color"] for r in representations[1:]} == set(molecule_colors(17))
    (arrows,) = _calls(viewer.view, "addBuffer")
    assert arrows["args"] == ["arrow"] and len(arrows["kwargs"]["position1"]) == 3 * 17
    np.testing.assert_allclose(np.reshape(arrows["kwargs"]["position2"], (17, 3)), viewer.overlay.center_pred)


def test_overlay_viewer_colours_by_error(cluster):
    viewer = OverlayViewer(
        cluster.numbers, cluster.mol_index, cluster.samples[0], cluster.x_s, METRICS, color_by="error", arrows=False
    )
    representations = _calls(viewer.view, "addRepresentation")
    assert [r["kwargs"]["color"] for r in representations] == ["#8c8c8c", "bfactor"]
    assert representations[1]["kwargs"]["colorDomain"][1] == pytest.approx(viewer.overlay.atom_error.max())
    assert not _calls(viewer.view, "addBuffer")
    prediction_pdb = _calls(viewer.view, "loadFile")[1]["args"][0]["data"]
    b_factors = [float(line[60:66]) for line in prediction_pdb.splitlines() if line.startswith("HETATM")]
    np.testing.assert_allclose(b_factors, viewer.overlay.atom_error, atol=0.005 + 1e-9)


def test_overlay_viewer_computes_metrics_when_missing(cluster):
    from crystalflow_core.metrics import cluster_metrics

    viewer = OverlayViewer(cluster.numbers, cluster.mol_index, cluster.samples[2], cluster.x_s)
    expected = cluster_metrics(cluster.samples[2], cluster.x_s, cluster.numbers, cluster.mol_index)
    assert viewer.metrics == expected


def test_cluster_browser_switches_run_cluster_sample_and_mode(cluster):
    other = demo_cluster_view(n_samples=1, n_frames=4, seed=9)
    direct = ClusterView(other.numbers, other.mol_index, other.x_w, other.x_s, other.samples, metrics=[METRICS])
    entries = {"lerp": {"c1": cluster, "c2": other}, "gnn-md": {"c2": direct}}
    browser = ClusterBrowser(entries)
    assert list(browser.run_picker.options) == ["lerp", "gnn-md"]
    assert list(browser.cluster_picker.options) == ["c1", "c2"]
    assert isinstance(browser.viewer, TrajectoryViewer) and browser.display_box.children == (browser.viewer,)
    assert browser.sample_picker.max == 2 and browser.viewer.n_frames == 9
    browser.sample_picker.value = 2
    np.testing.assert_allclose(browser.viewer.trajectory[-1], cluster.samples[2])
    browser.cluster_picker.value = "c2"
    assert browser.sample_picker.value == 0 and browser.sample_picker.max == 0
    assert browser.viewer.n_frames == 4
    browser.run_picker.value = "gnn-md"
    assert list(browser.cluster_picker.options) == ["c2"] and browser.cluster is direct
    assert browser.viewer.n_frames == 2
    browser.mode_picker.value = "overlay"
    assert isinstance(browser.viewer, OverlayViewer) and browser.viewer.metrics is METRICS
    assert browser.display_box.children == (browser.viewer,)


def test_cluster_browser_rejects_empty_entries():
    with pytest.raises(ValueError, match="entries"):
        ClusterBrowser({})
    with pytest.raises(ValueError, match="entries"):
        ClusterBrowser({"lerp": {}})


def test_each_viewer_displays_a_note_beside_the_widget_for_pages_without_a_kernel(cluster, trajectory):
    times, frames = trajectory
    notes = {
        "Trajectory viewer: 9 frames of 17 molecules, t = 0.00 → 1.00": TrajectoryViewer(
            cluster.numbers, cluster.mol_index, frames, times
        ),
        "Overlay viewer: prediction on the ground truth, PM(atom) 0.500 Å · PM(center) 0.250 Å": OverlayViewer(
            cluster.numbers, cluster.mol_index, cluster.samples[0], cluster.x_s, metrics=METRICS
        ),
        "Cluster browser: 3 cluster(s) of 2 run(s)": ClusterBrowser(
            {"a": {"c1": cluster, "c2": cluster}, "b": {"c": cluster}}
        ),
    }
    for note, viewer in notes.items():
        bundle = viewer._repr_mimebundle_()
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == viewer.model_id
        assert bundle["text/plain"].startswith(note) and bundle["text/plain"].endswith(f"{LIVE_ONLY}.")
        assert bundle["text/html"] == f"<p><em>{html.escape(bundle['text/plain'])}</em></p>"


#: β-oxalic acid (P2₁/c, Z = 2, 8 atoms per molecule), bundled with crystalflow.
OXALIC_ACID = bundled_cod_directory() / "4507991.cif.gz"


@pytest.fixture(params=["bundled", "written"])
def crystal_cif(request, tmp_path):
    """The bundled CIF, and the same crystal as ``crystalflow predict`` writes its CIFs."""
    if request.param == "bundled":
        return OXALIC_ACID
    return write_cif(tmp_path / "oxalic_acid.cif", read_crystal(OXALIC_ACID), "oxalic_acid")


def test_crystal_viewer_holds_the_cif_s_cell_and_its_molecules_whole(crystal_cif):
    viewer = crystal_viewer(crystal_cif)
    expected = ase.io.read(crystal_cif)  # ASE's own reading: the unit cell's atoms, wrapped into the cell
    assert isinstance(viewer, CrystalViewer)
    np.testing.assert_allclose(viewer.atoms.cell.cellpar(), expected.cell.cellpar(), atol=1e-3)
    assert sorted(viewer.atoms.numbers) == sorted(expected.numbers) and len(viewer.atoms) == 16
    molecule = read_crystal(crystal_cif)
    own = pdist(molecule.frac @ molecule.crystal.lattice)
    for copy in viewer.atoms.positions.reshape(2, 8, 3):  # each copy whole: the molecule's own distances
        np.testing.assert_allclose(np.sort(pdist(copy)), np.sort(own), atol=1e-6)
        centre = viewer.atoms.cell.scaled_positions(copy.mean(axis=0, keepdims=True))
        assert ((centre >= -1e-9) & (centre < 1.0)).all()


def test_crystal_viewer_draws_the_unit_cell_and_says_what_it_shows():
    viewer = crystal_viewer(OXALIC_ACID)
    (load,) = _calls(viewer.view, "loadFile")
    assert load["args"][0]["data"].startswith("CRYST1    5.327    6.013    5.")  # the cell travels with the atoms
    assert [call["args"][0] for call in _calls(viewer.view, "addRepresentation")] == ["ball+stick", "unitcell"]
    assert [call["args"] for call in _calls(viewer.view, "setSize")] == [["100%", "420px"]]
    bundle = viewer._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Crystal viewer: 4507991.cif.gz: P 1 21/c 1 (No. 14), Z = 2; a, b, c = 5.33")
    assert bundle["text/plain"].endswith(f"with its unit cell — {LIVE_ONLY}.")
    assert viewer.label.value == f"<b>{html.escape(viewer.caption)}</b>"
