"""Interactive nglview/ipywidgets viewers: trajectory player, prediction/truth overlay, cluster browser, crystal.

A viewer is drawn by a Jupyter front end talking to a live kernel. Where there is none, as in the static HTML of
an executed notebook, it shows a one-line note of what it holds instead of its Python repr.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import ase
import ipywidgets as widgets
import nglview
import numpy as np

from crystalflow_core.csp.cif_writer import space_group
from crystalflow_core.data.cluster import cell_molecules
from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.data.symmetry import cluster_bonds
from crystalflow_core.export import pdb_string
from crystalflow_core.molecule_input import read_crystal
from crystalflow_core.predict import read_packing
from crystalviz.colors import hex_to_rgb, molecule_colors, molecule_opacities
from crystalviz.overlay import build_overlay, metrics_caption, resolve_metrics
from crystalviz.views import ClusterView

TRUTH_COLOR = "#8c8c8c"
ARROW_COLOR = "#d62728"
LIVE_ONLY = "interactive (nglview), drawn only with a live Jupyter kernel"


class _StaticNote:
    """Mixed into every viewer, which defines ``static_note()``: its display also carries that note as HTML and
    text. Jupyter front ends rank the widget view first and draw it; nbconvert's HTML of an executed notebook,
    which keeps no widget state, shows the note where it would print the repr (``TrajectoryViewer(children=...``).
    """

    def _repr_mimebundle_(self, **kwargs) -> dict:
        note = f"{self.static_note()} — {LIVE_ONLY}."
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        return {**bundle, "text/plain": note, "text/html": f"<p><em>{html.escape(note)}</em></p>"}


class ClusterTrajectory(nglview.Structure, nglview.Trajectory):
    """nglview data source: topology (PDB of frame 0 with CONECT bonds) plus per-frame coordinates [T, N, 3]."""

    def __init__(self, topology_pdb: str, frames: np.ndarray) -> None:
        nglview.Structure.__init__(self)
        nglview.Trajectory.__init__(self)
        self.ext = "pdb"
        self.params = {}
        self._topology_pdb = topology_pdb
        self._frames = np.asarray(frames, dtype=np.float32)

    def get_structure_string(self) -> str:
        return self._topology_pdb

    def get_coordinates(self, index: int) -> np.ndarray:
        return self._frames[index]

    @property
    def n_frames(self) -> int:
        return len(self._frames)


def _molecule_representations(n_molecules: int, highlight_central: bool) -> list[dict]:
    """One nglview representation per molecule (residue mol_index + 1), in the molecule's colour."""
    colors = molecule_colors(n_molecules)
    opacities = molecule_opacities(n_molecules, highlight_central)
    representations = []
    for molecule in range(n_molecules):
        central = highlight_central and molecule == 0
        representations.append(
            {
                "type": "ball+stick" if central else "licorice",
                "params": {
                    "sele": str(molecule + 1),
                    "color": colors[molecule],
                    "opacity": opacities[molecule],
                    "radius": 0.25 if central else 0.15,
                },
            }
        )
    return representations


def _size_view(view: nglview.NGLWidget, width: str = "100%", height: str = "420px") -> None:
    """Size the NGL stage explicitly: created inside a box, it would otherwise measure a zero-width parent and draw
    into a 1-pixel canvas. The call is queued until the front end has displayed the view."""
    view._set_size(width, height)


class TrajectoryViewer(_StaticNote, widgets.VBox):
    """Play a trajectory [T, N, 3] in nglview with play/pause, time slider, speed control and frame counter.

    Molecules are coloured individually; bonds follow the curation's rule on frame 0 (fixed for the whole
    trajectory); `highlight_central` draws molecule 0 as ball+stick and dims the others.
    """

    def __init__(
        self,
        numbers: np.ndarray,
        mol_index: np.ndarray,
        trajectory: np.ndarray,
        times: Sequence[float] | None = None,
        highlight_central: bool = False,
        interval_ms: int = 150,
    ) -> None:
        self.numbers = np.asarray(numbers, dtype=int)
        self.mol_index = np.asarray(mol_index, dtype=int)
        self.trajectory = np.asarray(trajectory, dtype=float)
        if self.trajectory.ndim != 3 or self.trajectory.shape[1:] != (len(self.numbers), 3):
            raise ValueError(f"trajectory must be [T, {len(self.numbers)}, 3], got {self.trajectory.shape}")
        self.times = np.linspace(0.0, 1.0, self.n_frames) if times is None else np.asarray(times, dtype=float)
        if self.times.shape != (self.n_frames,):
            raise ValueError(f"{len(self.times)} times for {self.n_frames} frames")
        self.n_molecules = int(self.mol_index.max()) + 1
        self.colors = molecule_colors(self.n_molecules)
        self.highlight_central = highlight_central
        self.bonds = cluster_bonds(self.numbers, self.mol_index, self.trajectory[0])
        self.representations = _molecule_representations(self.n_molecules, highlight_central)
        self.base_interval_ms = interval_ms

        topology = pdb_string(self.numbers, self.mol_index, self.trajectory[0], self.bonds)
        self.view = nglview.NGLWidget(ClusterTrajectory(topology, self.trajectory), default_representation=False)
        _size_view(self.view)
        self.view.representations = self.representations
        self.play = widgets.Play(value=0, min=0, max=self.n_frames - 1, interval=interval_ms, description="play")
        self.slider = widgets.IntSlider(value=0, min=0, max=self.n_frames - 1, description="frame")
        self.speed = widgets.FloatLogSlider(value=1.0, base=2, min=-2, max=2, step=0.5, description="speed")
        self.counter = widgets.Label()
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.slider.observe(self._on_frame, names="value")
        self.speed.observe(self._on_speed, names="value")
        self._update_counter(0)
        controls = widgets.HBox([self.play, self.slider, self.speed, self.counter])
        super().__init__([self.view, controls])

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return len(self.trajectory)

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return len(self.numbers)

    @property
    def frame(self) -> int:
        """Frame currently shown."""
        return self.slider.value

    @frame.setter
    def frame(self, index: int) -> None:
        self.slider.value = index

    def static_note(self) -> str:
        """What the player holds, for pages without a kernel."""
        first, last = self.times[0], self.times[-1]
        return (
            f"Trajectory viewer: {self.n_frames} frames of {self.n_molecules} molecules, t = {first:.2f} → {last:.2f}"
        )

    def _on_frame(self, change: dict) -> None:
        self.play.value = change["new"]
        self.view.frame = change["new"]
        self._update_counter(change["new"])

    def _on_speed(self, change: dict) -> None:
        self.play.interval = max(1, round(self.base_interval_ms / change["new"]))

    def _update_counter(self, index: int) -> None:
        self.counter.value = f"frame {index + 1}/{self.n_frames} · t = {self.times[index]:.3f}"


class OverlayViewer(_StaticNote, widgets.VBox):
    """Prediction x_pred [N, 3] Kabsch-aligned onto the truth x_true [N, 3] in nglview, with a metrics caption.

    The truth is drawn as thin grey translucent sticks, the prediction as ball+stick coloured by molecule or by
    per-atom error (color_by='error', through the B-factor column), and with `arrows` one arrow per molecule
    from the true to the predicted centroid. `metrics` default to `crystalflow_core.metrics.cluster_metrics`.
    """

    def __init__(
        self,
        numbers: np.ndarray,
        mol_index: np.ndarray,
        x_pred: np.ndarray,
        x_true: np.ndarray,
        metrics: Mapping[str, float] | None = None,
        color_by: str = "molecule",
        arrows: bool = True,
    ) -> None:
        if color_by not in ("error", "molecule"):
            raise ValueError(f"color_by must be 'error' or 'molecule', got {color_by!r}")
        self.numbers = np.asarray(numbers, dtype=int)
        self.mol_index = np.asarray(mol_index, dtype=int)
        self.n_molecules = int(self.mol_index.max()) + 1
        self.colors = molecule_colors(self.n_molecules)
        self.metrics = resolve_metrics(self.numbers, self.mol_index, x_pred, x_true, metrics)
        self.overlay = build_overlay(self.mol_index, x_pred, x_true)
        self.bonds = cluster_bonds(self.numbers, self.mol_index, self.overlay.x_true)
        self.caption = metrics_caption(self.metrics)

        truth = nglview.TextStructure(pdb_string(self.numbers, self.mol_index, self.overlay.x_true, self.bonds))
        prediction = nglview.TextStructure(
            pdb_string(self.numbers, self.mol_index, self.overlay.x_aligned, self.bonds, self.overlay.atom_error)
        )
        self.view = nglview.NGLWidget(default_representation=False)
        _size_view(self.view)
        self.view.add_structure(truth, default_representation=False)
        self.view.add_structure(prediction, default_representation=False)
        self.view.add_representation("licorice", color=TRUTH_COLOR, opacity=0.4, radius=0.12, component=0)
        if color_by == "error":
            self.view.add_representation(
                "ball+stick",
                color="bfactor",
                colorScale="rwb",
                colorReverse=True,
                colorDomain=[0.0, float(max(self.overlay.atom_error.max(), 1e-3))],
                component=1,
            )
        else:
            for molecule, color in enumerate(self.colors):
                self.view.add_representation("ball+stick", selection=str(molecule + 1), color=color, component=1)
        if arrows:
            n = self.n_molecules
            self.view.shape.add_buffer(
                "arrow",
                position1=self.overlay.center_true.ravel().tolist(),
                position2=self.overlay.center_pred.ravel().tolist(),
                color=list(hex_to_rgb(ARROW_COLOR)) * n,
                radius=[0.12] * n,
            )
        self.label = widgets.HTML(f"<b>{self.caption}</b>")
        super().__init__([self.view, self.label])

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return len(self.numbers)

    def static_note(self) -> str:
        """The overlay's metrics, for pages without a kernel."""
        return f"Overlay viewer: prediction on the ground truth, {self.caption or 'no metrics'}"


class ClusterBrowser(_StaticNote, widgets.VBox):
    """Dashboard over entries[run][cluster_id] -> ClusterView: pick run, cluster and sample, and switch
    between the trajectory player and the overlay on the ground truth."""

    MODES = ("trajectory", "overlay")

    def __init__(self, entries: Mapping[str, Mapping[str, ClusterView]], highlight_central: bool = True) -> None:
        if not entries or not all(entries.values()):
            raise ValueError("entries must hold at least one run with at least one cluster")
        self.entries = entries
        self.highlight_central = highlight_central
        runs = list(entries)
        self.run_picker = widgets.Dropdown(options=runs, value=runs[0], description="run")
        clusters = list(entries[runs[0]])
        self.cluster_picker = widgets.Dropdown(options=clusters, value=clusters[0], description="cluster")
        self.sample_picker = widgets.BoundedIntText(value=0, min=0, max=0, description="sample")
        self.mode_picker = widgets.ToggleButtons(options=self.MODES, value="trajectory")
        self.display_box = widgets.Box()
        self.viewer: TrajectoryViewer | OverlayViewer | None = None
        self._refresh_samples()
        self._render()
        self.run_picker.observe(self._on_run, names="value")
        self.cluster_picker.observe(self._on_cluster, names="value")
        self.sample_picker.observe(self._on_change, names="value")
        self.mode_picker.observe(self._on_change, names="value")
        pickers = widgets.HBox([self.run_picker, self.cluster_picker, self.sample_picker, self.mode_picker])
        super().__init__([pickers, self.display_box])

    def static_note(self) -> str:
        """What can be browsed, for pages without a kernel."""
        clusters = sum(len(clusters) for clusters in self.entries.values())
        return f"Cluster browser: {clusters} cluster(s) of {len(self.entries)} run(s)"

    @property
    def cluster(self) -> ClusterView:
        """ClusterView currently selected."""
        return self.entries[self.run_picker.value][self.cluster_picker.value]

    def _on_run(self, change: dict) -> None:
        clusters = list(self.entries[change["new"]])
        current = self.cluster_picker.value
        with self.cluster_picker.hold_trait_notifications():
            self.cluster_picker.options = clusters
            self.cluster_picker.value = current if current in clusters else clusters[0]
        self._refresh_samples()
        self._render()

    def _on_cluster(self, change: dict) -> None:
        if change["new"] is None:
            return
        self._refresh_samples()
        self._render()

    def _on_change(self, change: dict) -> None:
        self._render()

    def _refresh_samples(self) -> None:
        self.sample_picker.max = self.cluster.n_samples - 1
        self.sample_picker.value = min(self.sample_picker.value, self.sample_picker.max)

    def _render(self) -> None:
        cluster = self.cluster
        sample = self.sample_picker.value
        if self.mode_picker.value == "trajectory":
            times, frames = cluster.trajectory(sample)
            self.viewer = TrajectoryViewer(
                cluster.numbers, cluster.mol_index, frames, times, highlight_central=self.highlight_central
            )
        else:
            self.viewer = OverlayViewer(
                cluster.numbers,
                cluster.mol_index,
                cluster.samples[sample],
                cluster.x_s,
                metrics=cluster.sample_metrics(sample),
            )
        self.display_box.children = [self.viewer]


def predicted_packing_viewer(out_dir: str | Path, rank: int = 1, highlight_central: bool = True) -> TrajectoryViewer:
    """Animate the packing of ``rank`` (1: the best) of a ``crystalflow predict --out`` directory: the model's
    steps from the loose start, then the MMFF94-relaxed packing as the last frame."""
    packing = read_packing(out_dir, rank)
    return TrajectoryViewer(
        packing.numbers, packing.mol_index, packing.trajectory, packing.times, highlight_central=highlight_central
    )


class CrystalViewer(_StaticNote, widgets.VBox):
    """A periodic structure ``atoms`` (ase.Atoms with its cell) in nglview, ball+stick in element colours, with
    the edges of its unit cell, and a caption: ``title`` and the cell's parameters."""

    def __init__(self, atoms: ase.Atoms, title: str) -> None:
        self.atoms = atoms
        a, b, c, alpha, beta, gamma = atoms.cell.cellpar()
        self.caption = (
            f"{title}; a, b, c = {a:.2f}, {b:.2f}, {c:.2f} Å; α, β, γ = {alpha:.1f}, {beta:.1f}, {gamma:.1f}°"
        )
        self.view = nglview.NGLWidget(nglview.ASEStructure(atoms), default_representation=False)
        _size_view(self.view)
        self.view.add_representation("ball+stick")
        self.view.add_representation("unitcell")
        self.label = widgets.HTML(f"<b>{html.escape(self.caption)}</b>")
        super().__init__([self.view, self.label])

    def static_note(self) -> str:
        """The crystal and its cell, for pages without a kernel."""
        return f"Crystal viewer: {self.caption}, with its unit cell"


def cell_atoms(crystal: MolecularCrystal) -> ase.Atoms:
    """The unit cell's Z molecules, each whole (not cut at the cell's faces), as periodic ase.Atoms [Z·n]."""
    molecules = cell_molecules(crystal)  # [Z, n, 3] fractional
    lattice = crystal.crystal.lattice
    return ase.Atoms(
        numbers=np.tile(crystal.numbers, len(molecules)),
        positions=molecules.reshape(-1, 3) @ lattice,
        cell=lattice,
        pbc=True,
    )


def crystal_viewer(cif: str | Path) -> CrystalViewer:
    """The crystal of a CIF (e.g. one ``crystalflow predict`` wrote) with its unit cell, titled by the file, its
    space group and Z."""
    crystal = read_crystal(cif)
    number, symbol = space_group(crystal)
    return CrystalViewer(cell_atoms(crystal), f"{Path(cif).name}: {symbol} (No. {number}), Z = {crystal.z}")
