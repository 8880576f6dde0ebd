"""The names and defaults of crystalflow's settings, in plain Python: the objectives, the samplers, the fields of a
training run with their defaults, and the defaults of the relaxation and the crystal search.

This module imports nothing but the standard library, so that the command line can build every command's options
(``crystalflow train --help``, a bad option's message) without loading torch, RDKit or pyxtal. It is their one
declaration: the modules that use them (:mod:`~crystalflow_core.paths`, :mod:`~crystalflow_core.train`,
:mod:`~crystalflow_core.sampling`, ...) import them from here, and keep them under their own names too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

#: The training objectives, in the order of ``paths``' registry (which holds one class per name): LERP flow
#: matching, VE and VP diffusion, GNN-MD (a direct regression of the crystal) and the rigid-body flow.
PATHS = ("lerp", "ve", "vp", "gnn_md", "rigid")

#: How PaiNN lays out its neighbour sums in training (``TrainConfig.pair_layout``): ``timed`` times the layouts on
#: the first steps of each size of batch and keeps the fastest; the others force one (every layout is exact, but
#: each rounds differently, so runs to be compared bit for bit force one).
PAIR_LAYOUTS = ("timed", "dense", "edges", "compiled_edges")

#: What ``TrainConfig.training_split`` may be: the seeded train split, or every curated crystal (a shipped model).
TRAINING_SPLITS = ("train", "all")


@dataclass
class TrainConfigFields:
    """The fields of :class:`~crystalflow_core.train.TrainConfig` with their defaults, and nothing else: TrainConfig
    adds the checks and the objective's own defaults (for ``epochs`` and ``molecule_cutoff`` left ``None``), which
    need the objectives. A run's configuration is a TrainConfig, never one of this class.

    Defaults train on the bundled data in minutes on a laptop CPU. ``noise`` (a
    :class:`~crystalflow_core.data.noise.NoiseConfig` as a dict) is what ``augment`` redraws ``x_w`` with; ``None``
    takes the noise the data were curated with (their ``curation.json``) when training starts.
    """

    data: str
    out: str
    path: str = "lerp"
    seed: int = 0
    subset: int | None = None
    training_split: str = "train"
    epochs: int | None = None
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    hidden: int = 32
    layers: int = 2
    n_rbf: int = 20
    cutoff: float = 4.0
    molecule_cutoff: float | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    pair_layout: str = "timed"
    checkpoint_every: int = 200
    augment: bool = False
    noise: dict | None = None
    path_kwargs: dict = field(default_factory=dict)
    progress: bool = True


#: TrainConfig fields that notebook 03 and ``crystalflow train`` do not set under their own name: the data and run
#: directories (``data_dir`` and ``output_dir``; ``--data`` and ``--out``), the noise (the data's own, see
#: ``train.with_data_noise``), the objective's options (Python API only) and the progress bar.
NOT_TRAIN_SETTINGS = ("data", "out", "noise", "path_kwargs", "progress")


def train_settings() -> dict[str, object]:
    """Every other field of TrainConfig (:class:`TrainConfigFields`) with its default, in its order.

    These are the settings of a training run: notebook 03's parameters, ``crystalflow train``'s options and the
    report presets use these names and defaults, and tests hold them to it, so a setting is declared once, in
    :class:`TrainConfigFields`.
    """
    return {f.name: f.default for f in fields(TrainConfigFields) if f.name not in NOT_TRAIN_SETTINGS}


#: The ODE solvers of the samplers.
ODE_METHODS = ("euler", "rk4", "dopri5")
#: Every sampling method (``crystalflow sample --method``); ``auto`` takes the objective's own sampler.
METHODS = ("auto", *ODE_METHODS, "ddim", "sde", "direct", "rigid")

#: L-BFGS iterations of the MMFF94 stage of the rigid-body relaxation (:mod:`~crystalflow_core.relax`).
RELAX_ITERATIONS = 300

#: Candidates per crystal search: a small rigid molecule's search finishes in minutes on two CPU cores.
DEFAULT_CANDIDATES = 100
#: The space groups of most organic crystals, most frequent first (CSD statistics: P2₁/c alone a third, these
#: twelve about 90 %): P2₁/c, P-1, P2₁2₁2₁, C2/c, P2₁, Pbca, Pna2₁, Cc, Pca2₁, C2, Pbcn, P1.
DEFAULT_SPACE_GROUPS = (14, 2, 19, 15, 4, 61, 33, 9, 29, 5, 60, 1)
#: Candidates per cluster of ``crystalflow solve``: ``SOLVE_CANDIDATE_ATOMS / atoms`` within ``SOLVE_CANDIDATES``,
#: so that a cluster takes at most its 5-minute budget on two CPU cores (a search's time grows about as candidates
#: times atoms: 40 candidates took 26 s at 8 atoms, 45 s at 15, 100 s at 33 and 283 s at 55 with the dense pair sum;
#: the pair sum of only the pairs that add anything took 143 s for 52 at 62 atoms and 116 s at 70, where 40 had
#: taken 173 s and 158 s, so the budget grew by 1.3; on the 36 test clusters at that budget the slowest took 149 s
#: and the rest at most 141 s, so it grew again by 1.8, to at most 258 s and a median of 220 s there); and the
#: temperature (kcal/mol) of the lattice energy in its ranking, chosen on the validation split
#: (``benchmarks/solve_ranking.py``; record ``benchmarks/records/solve/ranking``).
SOLVE_CANDIDATE_ATOMS = 4700
SOLVE_CANDIDATES = (80, 280)
SOLVE_TEMPERATURE = 0.3
#: The most atoms (hydrogens included) the default search takes: its time grows with the square of the atoms.
MAX_ATOMS = 60
