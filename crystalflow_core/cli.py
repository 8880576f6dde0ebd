"""``crystalflow`` command line: curate, train, sample, evaluate. A stable contract for scripts and notebooks.

Other packages add subcommands through the ``crystalflow.commands`` entry point (:data:`COMMAND_GROUP`):
``crystalflow report`` comes that way from the notebook layer, ``crystalflow_reports``, which the core never
imports.

The library (torch, pandas, RDKit, ...) loads only when a command runs: each handler imports what it uses, and the
options take their choices and defaults from :mod:`~crystalflow_core.settings`, which needs none of it, so
``crystalflow --help``, ``--version``, every command's ``--help`` and a bad option's message answer at once. The
longer commands add their options only when they are used (:class:`CommandParser`), so that building one command's
options costs nothing to the others.

A bad option value stops a command at once with one line naming the option and exit status 2: argparse checks each
value on its own, :mod:`~crystalflow_core.checks` the values that depend on files (``--data``, ``--run``, ...).
Bad input found later (a corrupted checkpoint, a malformed cluster file) is reported the same way. Any other
exception is a bug: it keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, distributions, version
from pathlib import Path

from .data.shards import Shard
from .errors import CurationError, InputError, ParameterError
from .settings import (
    DEFAULT_CANDIDATES,
    DEFAULT_SPACE_GROUPS,
    MAX_ATOMS,
    METHODS,
    PATHS,
    RELAX_ITERATIONS,
    train_settings,
)

#: Errors that describe bad input and print as one line; everything else is unexpected and keeps its traceback.
EXPECTED_ERRORS = (InputError, CurationError)
#: Entry-point group of the subcommands other packages add: each names a function that takes the subparsers,
#: adds its own and sets its ``handler`` default, the function that runs it (returning an exit status or ``None``).
#: The subparsers make :class:`CommandParser` objects, so ``add_parser(..., configure=f)`` defers the options.
COMMAND_GROUP = "crystalflow.commands"

DESCRIPTION = """\
Learn how molecules pack in crystals: curate 17-molecule clusters from CIF files, train a flow-matching model,
sample and score its predictions; or predict ranked crystal structures (CIFs, powder patterns) of a molecule of
your own, and relax a crystal in the MMFF94 + D3 lattice energy.

Run 'crystalflow COMMAND --help' for the options of one command. A bad option or input stops a command with one
line naming it (exit status 2)."""

EXAMPLES = """\
examples:
  crystalflow predict --smiles 'O=C(O)c1ccccc1O' --out salicylic_acid
  crystalflow minimize known.cif --out relaxed.cif
  crystalflow curate --source default --out data/default
  crystalflow train --data data/default --path rigid --out runs/rigid
  crystalflow sample --run runs/rigid --data data/default --split test --samples 4 --out runs/rigid/test
  crystalflow evaluate --truth data/default --pred runs/rigid/test
  crystalflow report --scale smoke"""


class CommandParser(argparse.ArgumentParser):
    """The parser of one subcommand. ``configure(parser)``, when given, adds its options the first time it is
    used (parsing its arguments, or printing its help or usage), so that a command whose options need the library
    costs nothing to the others."""

    def __init__(self, *args, configure: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._configure = configure

    def configured(self) -> CommandParser:
        """This parser with its options added (``configure`` runs once)."""
        configure, self._configure = self._configure, None
        if configure is not None:
            configure(self)
        return self

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.configured()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.configured()
        return super().format_usage()

    def format_help(self) -> str:
        self.configured()
        return super().format_help()


def _bounded(kind: type, low: float, high: float = math.inf, *, above: bool = False, what: str) -> Callable:
    """An argparse ``type``: a finite ``kind`` number in ``[low, high]`` (``(low, high]`` with ``above``)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or not low <= value <= high or (above and value == low):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


POSITIVE_INT = _bounded(int, 0, above=True, what="a positive integer")
NON_NEGATIVE_INT = _bounded(int, 0, what="a non-negative integer")
POSITIVE_FLOAT = _bounded(float, 0, above=True, what="a positive number")
NON_NEGATIVE_FLOAT = _bounded(float, 0, what="a number >= 0")
ANGLE = _bounded(float, 0, 180, what="an angle in [0, 180] degrees")


def _add_curate(sub) -> None:
    p = sub.add_parser(
        "curate",
        help="CIFs → 17-molecule clusters in the COD-Cluster17 layout + manifest.csv",
        description="Select molecular crystals (Appendix C of the paper), build 17-molecule "
        "clusters and their weakly-correlated starts, write the COD-Cluster17 CSV layout and "
        "manifest.csv. Re-running on the same --out resumes. A large source can be split over processes or "
        "machines: run --shard 1/N ... N/N into one --out (manifest.csv is written when the last finishes), or "
        "into separate ones that are then copied together and finished with --merge.",
    )
    p.add_argument(
        "--source",
        default="default",
        help="'default' (bundled COD CIFs + pyxtal's CSD crystals), 'pyxtal', or a directory of "
        "*.cif / *.cif.gz files such as a COD mirror (default: %(default)s)",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument(
        "--inversion", action="store_true", help="also invert each molecule through its centroid with probability 0.5"
    )
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="seed of the rigid noise (default: %(default)s)")
    p.add_argument("--workers", type=POSITIVE_INT, default=None, help="worker processes (default: all cores)")
    p.add_argument(
        "--rotation-deg",
        type=ANGLE,
        default=180.0,
        help="largest rotation of a molecule about its centroid; 180 = uniform over SO(3) (default: %(default)s)",
    )
    p.add_argument(
        "--translation-sigma",
        type=NON_NEGATIVE_FLOAT,
        default=1.0,
        help="std. dev. (Å, per axis) of each centroid's random displacement (default: %(default)s)",
    )
    p.add_argument("--limit", type=POSITIVE_INT, default=None, help="curate only the first N input structures")
    split = p.add_mutually_exclusive_group()
    split.add_argument(
        "--shard",
        type=_shard,
        default="1/1",
        metavar="K/N",
        help="curate only shard K of N (the inputs whose id hashes to it; every shard walks the whole source) "
        "(default: %(default)s)",
    )
    split.add_argument(
        "--merge",
        action="store_true",
        help="only write manifest.csv from the finished shards in --out (shard directories copied into it); "
        "needs no --source",
    )
    p.set_defaults(handler=run_curate)


def _shard(text: str) -> Shard:
    """An argparse ``type``: ``K/N`` with 1 <= K <= N."""
    try:
        return Shard.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N with 1 <= K <= N") from None


#: ``train``'s option of each training setting but ``path`` (``settings.train_settings``): its value type and
#: help. The option is the setting's name with dashes, its default the setting's, so only these need declaring here.
TRAIN_OPTIONS: dict[str, tuple[Callable | type, str]] = {
    "seed": (NON_NEGATIVE_INT, "seed of split, init and noise"),
    "subset": (POSITIVE_INT, "use only the first N clusters (nested subsets; default: all)"),
    "training_split": (str, "crystals to train on: 'train' (the seeded split) or 'all' (every one, no validation)"),
    "epochs": (POSITIVE_INT, "passes over the training split (default: per objective, rigid 60, others 30)"),
    "batch_size": (POSITIVE_INT, "clusters per optimiser step"),
    "lr": (POSITIVE_FLOAT, "peak AdamW learning rate"),
    "weight_decay": (NON_NEGATIVE_FLOAT, "AdamW weight decay"),
    "grad_clip": (POSITIVE_FLOAT, "largest gradient norm"),
    "hidden": (POSITIVE_INT, "PaiNN feature width"),
    "layers": (POSITIVE_INT, "PaiNN layers"),
    "n_rbf": (POSITIVE_INT, "radial basis functions"),
    "cutoff": (POSITIVE_FLOAT, "neighbour cutoff in Å; the paper used 20–50"),
    "molecule_cutoff": (
        NON_NEGATIVE_FLOAT,
        "also pass messages between molecule centroids closer than this (Å; 0: off; default: per objective, "
        "rigid 20, others 0)",
    ),
    "device": (str, "'auto' (CUDA when present), 'cpu', 'cuda', ..."),
    "precision": (
        str,
        "arithmetic of the training step: 'fp32'; 'tf32' (CUDA's matrix units round float32 products); 'bf16' "
        "(atom-wise layers in bfloat16, geometry and neighbour sums in float32); 'auto': tf32 on CUDA, fp32 on CPU",
    ),
    "compile": (bool, "compile the network with torch.compile (dynamic shapes; pays off on GPUs and long runs)"),
    "pair_layout": (
        str,
        "neighbour sums: 'timed' (each layout timed on the first steps, the fastest kept), or force 'dense', "
        "'edges' or 'compiled_edges' (all exact; forcing one makes runs comparable bit for bit)",
    ),
    "checkpoint_every": (POSITIVE_INT, "optimiser steps between checkpoints"),
    "augment": (bool, "redraw x_w at every step with the rigid noise the data were curated with (their curation.json)"),
}


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one method (resumable)",
        description="Train a PaiNN velocity model with one objective. Re-running with the same "
        "--out resumes from the last checkpoint.",
        configure=_train_options,
    )
    p.set_defaults(handler=run_train)


def _train_options(p: argparse.ArgumentParser) -> None:
    """``train``'s options: ``--data``, ``--path`` and ``--out``, then one option per other training setting
    (:data:`TRAIN_OPTIONS`); ``run_train`` passes every setting on to TrainConfig by name."""
    p.add_argument("--data", required=True, type=Path, help="curated directory (crystalflow curate --out)")
    p.add_argument(
        "--path", required=True, choices=PATHS, help="objective: LERP flow, VE/VP diffusion, GNN-MD, rigid-body flow"
    )
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoint, config, history)")
    for name, default in train_settings().items():
        if name == "path":
            continue
        kind, text = TRAIN_OPTIONS[name]
        option, shown = "--" + name.replace("_", "-"), text if default is None else f"{text} (default: %(default)s)"
        if kind is bool:
            p.add_argument(option, action=argparse.BooleanOptionalAction, default=default, help=shown)
        else:
            p.add_argument(option, type=kind, default=default, help=shown)


def _add_data_and_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="curated directory")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="default: %(default)s")


def _add_sample(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="sample predictions for a split into the COD-Cluster17 layout",
        description="Writes OUT/PredictedPositions/{id}_cluster16_pred{k}.csv, OUT/sampling.json (the run, split "
        "and settings, so that crystalflow evaluate can record the run) and, with --trajectories, "
        "OUT/Trajectories/{id}_cluster16_pred{k}.npz.",
        configure=_sample_options,
    )
    p.set_defaults(handler=run_sample)


def _sample_options(p: argparse.ArgumentParser) -> None:
    """``sample``'s options."""
    p.add_argument("--run", required=True, type=Path, help="run directory written by crystalflow train")
    _add_data_and_split(p)
    p.add_argument("--samples", type=POSITIVE_INT, default=1, help="samples per cluster, K (default: %(default)s)")
    p.add_argument("--out", required=True, type=Path, help="output directory for predictions")
    p.add_argument(
        "--steps",
        type=POSITIVE_INT,
        default=None,
        help="solver steps (default with --method auto: one step, i.e. the model's conditional mean of x_s — "
        "an Euler step for lerp, a DDIM step for ve/vp; rigid 10; other methods: 20, sde 100); more steps draw "
        "whole trajectories",
    )
    p.add_argument(
        "--method",
        default="auto",
        choices=METHODS,
        help="auto: Euler ODE for lerp, deterministic DDIM for ve/vp, one step for gnn_md, geodesic SE(3) steps "
        "for rigid (its only sampler); sde: reverse SDE (ve/vp)",
    )
    p.add_argument("--trajectories", action="store_true", help="also store every sampled trajectory")
    p.add_argument(
        "--relax",
        action="store_true",
        help="polish every prediction by rigid-body relaxation in MMFF94 (the molecule typed on x_w; a steric wall "
        "alone where MMFF94 cannot type it): clashes removed, molecules kept exact",
    )
    p.add_argument("--batch-size", type=POSITIVE_INT, default=8, help="default: %(default)s")
    p.add_argument("--device", default="auto", help="default: %(default)s")
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="sampling seed (default: %(default)s)")


def _add_relax(sub) -> None:
    p = sub.add_parser(
        "relax",
        help="the classical baseline: relax every x_w of a split as rigid molecules in MMFF94",
        description="No model: each cluster's x_w is relaxed as rigid molecules (expanded until no molecules "
        "clash, then L-BFGS on the MMFF94 interaction energy with a steric wall). Writes "
        "OUT/PredictedPositions/{id}_cluster16_pred0.csv, OUT/Trajectories and OUT/sampling.json, so that "
        "crystalflow evaluate --pred OUT records it (OUT/record.json) as the method 'relax' of the benchmark.",
        configure=_relax_options,
    )
    p.set_defaults(handler=run_relax)


def _add_split_run(p: argparse.ArgumentParser, out_help: str, seed_help: str) -> None:
    """The options of a method run on one split of a curated directory without a model (relax, solve)."""
    _add_data_and_split(p)
    p.add_argument("--out", required=True, type=Path, help=out_help)
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help=f"{seed_help} (default: %(default)s)")
    p.add_argument("--subset", type=POSITIVE_INT, default=None, help="the split of the first N clusters, as in train")


def _relax_options(p: argparse.ArgumentParser) -> None:
    """``relax``'s options."""
    _add_split_run(p, "output directory for the relaxed clusters", "seed of the split")
    p.add_argument(
        "--iterations", type=POSITIVE_INT, default=RELAX_ITERATIONS, help="L-BFGS iterations (default: %(default)s)"
    )
    p.add_argument(
        "--starts",
        type=POSITIVE_INT,
        default=1,
        help="relaxed starts per cluster: x_w, then x_w with its molecules turned at random (default: %(default)s)",
    )


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="ranked crystal structures (CIF, powder pattern) of your own molecule (SMILES, SDF or CIF)",
        description="Crystal structure prediction of a rigid molecule: random crystals of it in the common space "
        "groups (pyxtal; special positions too for a molecule with its own symmetry), each minimised in the "
        "periodic MMFF94 + D3 lattice energy over its cell and pose with the space group kept, duplicates merged, "
        "ranked by lattice energy per molecule (or by agreement with a measured powder pattern, --pxrd). Writes "
        "OUT/ranking.csv (space group, Z, cell, density, energy, and matched/rmsd15 with --reference), one CIF "
        "and one simulated powder pattern per crystal under OUT/CIF/, the 17-molecule cluster cut from each in "
        "the COD-Cluster17 layout (OUT/PredictedPositions/) with PDB/ and XYZ/ copies, and predict.json.",
        configure=_predict_options,
    )
    p.set_defaults(handler=run_predict)


def _predict_options(p: argparse.ArgumentParser) -> None:
    """``predict``'s options."""
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--smiles", help="one molecule as a SMILES string (one species: no salts)")
    given.add_argument("--sdf", type=Path, help="SDF/MOL file; its first record (3D coordinates are kept)")
    given.add_argument("--cif", type=Path, help="CIF of a crystal of the molecule; its molecule as it sits there")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument(
        "--candidates", type=POSITIVE_INT, default=DEFAULT_CANDIDATES, help="random starts (default: %(default)s)"
    )
    p.add_argument(
        "--space-groups",
        default=",".join(str(g) for g in DEFAULT_SPACE_GROUPS),
        help="comma-separated numbers or names, e.g. 'P21/c,P-1,14' (default: the twelve most common in "
        "organic crystals, %(default)s)",
    )
    p.add_argument("--reference", type=Path, help="CIF of a known crystal of the molecule: adds matched, rmsd15")
    p.add_argument("--pxrd", type=Path, help="measured powder pattern (2θ and intensity columns): rank by agreement")
    p.add_argument("--keep", type=POSITIVE_INT, default=20, help="crystals written, best first (default: %(default)s)")
    p.add_argument(
        "--max-atoms",
        type=POSITIVE_INT,
        default=MAX_ATOMS,
        help="largest molecule searched, hydrogens included (default: %(default)s)",
    )
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="seed of the conformer and the candidates")
    p.add_argument("--workers", type=POSITIVE_INT, default=None, help="processes (default: every core)")
    p.add_argument(
        "--flow-samples",
        type=NON_NEGATIVE_INT,
        default=0,
        help="also sample this many 17-molecule packings with the learned rigid flow into OUT/flow/ (trajectories "
        "for crystalviz; not crystals) (default: %(default)s)",
    )
    p.add_argument("--run", type=Path, default=None, help="with --flow-samples: a trained rigid model's run directory")
    p.add_argument("--device", default="auto", help="with --flow-samples (default: %(default)s)")


def _add_minimize(sub) -> None:
    p = sub.add_parser(
        "minimize",
        help="relax a crystal (CIF) in the periodic MMFF94 + D3 lattice energy, its space group kept",
        description="L-BFGS over the cell (within the space group's constraints) and the pose of the molecule, "
        "taken as rigid, in the lattice energy (MMFF94's non-bonded terms with Ewald electrostatics, plus half of "
        "D3(BJ) dispersion). Prints the energy per molecule and the density before and after, and writes the "
        "relaxed crystal as a CIF.",
    )
    p.add_argument("cif", type=Path, help="CIF of a molecular crystal (one species, Z' <= 1)")
    p.add_argument("--out", required=True, type=Path, help="relaxed crystal, a CIF file")
    p.add_argument("--max-iterations", type=POSITIVE_INT, default=300, help="L-BFGS iterations (default: %(default)s)")
    p.set_defaults(handler=run_minimize)


def _add_solve(sub) -> None:
    p = sub.add_parser(
        "solve",
        help="structure solution: the crystal of every x_w of a split, found with x_w as data",
        description="No model: for each cluster, crystals of x_w's central molecule are searched in the space "
        "groups its neighbours' handedness allows (as crystalflow predict searches them), each found crystal's "
        "molecules are superposed on x_w's centroids, and the 17-molecule cut of the crystal that best explains x_w "
        "(centroid misfit plus lattice energy) is the prediction. Writes OUT/PredictedPositions/"
        "{id}_cluster16_pred0.csv, OUT/CIF/{id}.cif, OUT/Candidates/ (every crystal found) and OUT/sampling.json, "
        "so that crystalflow evaluate --pred OUT records it as the method 'solve'. A killed run restarted with the "
        "same command keeps its finished clusters.",
        configure=_solve_options,
    )
    p.set_defaults(handler=run_solve)


def _solve_options(p: argparse.ArgumentParser) -> None:
    """``solve``'s options."""
    from .settings import SOLVE_CANDIDATE_ATOMS, SOLVE_CANDIDATES, SOLVE_TEMPERATURE

    _add_split_run(p, "output directory", "seed of the split and the search")
    p.add_argument(
        "--candidates",
        type=POSITIVE_INT,
        default=None,
        help=f"random crystals searched per cluster (default: {SOLVE_CANDIDATE_ATOMS} / the molecule's atoms, within "
        f"{SOLVE_CANDIDATES[0]}-{SOLVE_CANDIDATES[1]}: the 5-minute budget of a cluster on two CPU cores)",
    )
    p.add_argument(
        "--temperature",
        type=POSITIVE_FLOAT,
        default=SOLVE_TEMPERATURE,
        help="kcal/mol: weight of the lattice energy against the misfit to x_w (default: %(default)s)",
    )
    p.add_argument("--workers", type=POSITIVE_INT, default=None, help="processes (default: every core)")


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predictions, the identity and collapse baselines and the crystal in the COD-Cluster17 layout",
        description="Mean metrics (every one of crystalflow_core.metrics.METRIC_KEYS: packing matching, "
        "geometry, MMFF94 interaction energy, packing similarity, RMSD, integrity) of any predictions in the "
        "COD-Cluster17 layout, beside the identity baseline (x_w unchanged), the collapse baseline (every molecule "
        "at its x_w centroid) and the crystal itself (x_s, the reference) on the same clusters; with K > 1 "
        "samples also the best of k (oracle) and the best chosen without the truth. "
        "Predictions written by crystalflow sample (their sampling.json names the run) also get the run record "
        "that notebook 03 writes: RUN/record.json, per_cluster.csv, identity.csv, collapse.csv and crystal.csv, so "
        "the run appears in notebook 04's benchmark tables.",
    )
    p.add_argument("--truth", required=True, type=Path, help="curated directory with the true clusters")
    p.add_argument("--pred", required=True, type=Path, help="directory with PredictedPositions/")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write per_cluster.csv (prediction), identity.csv, collapse.csv and summary.csv here",
    )
    p.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="leave the run record alone (e.g. when scoring another sampler setting of a run already recorded)",
    )
    p.set_defaults(handler=run_evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The ``crystalflow`` parser: a description with examples, ``--version``, and one subparser per command (a
    :class:`CommandParser`, so a command's options that need the library are added only when it is used)."""
    parser = argparse.ArgumentParser(
        prog="crystalflow",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('crystalflow')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    _add_curate(sub)
    _add_train(sub)
    _add_sample(sub)
    _add_evaluate(sub)
    _add_relax(sub)
    _add_solve(sub)
    _add_predict(sub)
    _add_minimize(sub)
    for entry in _added_commands():
        entry.load()(sub)
    return parser


def _added_commands() -> list[EntryPoint]:
    """The :data:`COMMAND_GROUP` entry points of every installed distribution, one per command name.

    Not ``importlib.metadata.entry_points``: it reads one copy of each distribution's metadata, the first on
    ``sys.path``, so a stale ``crystalflow.egg-info`` in a checkout's root would hide the installed commands.
    """
    found: dict[str, EntryPoint] = {}
    for distribution in distributions():
        for entry in distribution.entry_points.select(group=COMMAND_GROUP):
            found.setdefault(entry.name, entry)
    return list(found.values())


def run_curate(args: argparse.Namespace) -> None:
    from .checks import check_out_dir, check_source
    from .data.curate import CurationSettings, run_curation
    from .data.manifest import MANIFEST, unfinished_shards, write_manifest
    from .data.noise import NoiseConfig

    out = check_out_dir("--out", args.out)
    if args.merge:
        counts = write_manifest(out)
    else:
        refs = check_source("--source", args.source, args.limit)
        noise = NoiseConfig(args.rotation_deg, args.translation_sigma, args.inversion)
        settings = CurationSettings(seed=args.seed, noise=noise)
        counts = run_curation(refs, out, settings, workers=args.workers, shard=args.shard)
    if counts is None:
        waiting = ", ".join(map(str, unfinished_shards(out)))
        print(
            f"shard {args.shard} finished; manifest.csv is written when shard(s) {waiting} finish into {out} "
            f"(shards curated elsewhere: copy their directories into it, then crystalflow curate --merge --out {out})"
        )
        return
    statuses = Counter()
    for (status, _), n in counts.items():
        statuses[status] += n
    print(f"{statuses.total()} structures: " + ", ".join(f"{n} {status}" for status, n in statuses.most_common()))
    for (status, reason), n in sorted(counts.items()):
        if status != "curated":
            print(f"{status:10s} {reason:20s} {n:6d}")
    print(f"wrote {out / MANIFEST}")


def run_train(args: argparse.Namespace) -> None:
    from .allocator import loaded_allocator
    from .checks import check_data_dir, check_device, check_out_dir, check_subset
    from .distributed import World
    from .train import TrainConfig, train

    check_subset("--subset", args.subset, check_data_dir("--data", args.data))
    check_device("--device", args.device)
    check_out_dir("--out", args.out)
    settings = {name: getattr(args, name) for name in train_settings()}
    if World.from_environment().main:
        print(f"allocator: {loaded_allocator()}", file=sys.stderr)
    history = train(TrainConfig(data=str(args.data), out=str(args.out), **settings))
    if World.from_environment().main:  # under torchrun, rank 0 speaks for all
        print(history.tail(5).to_string(index=False))
        print(f"checkpoint: {args.out}/checkpoint.pt")


def run_sample(args: argparse.Namespace) -> None:
    from .checks import check_data_dir, check_device, check_out_dir, check_run_dir
    from .data.dataset import ClusterDataset
    from .inference import predict_dataset, write_predictions
    from .paths import get_path
    from .records import write_sampling
    from .sampling import check_sampler
    from .train import load_model, resolve_device

    run = check_run_dir("--run", args.run)
    data = check_data_dir("--data", args.data)
    check_out_dir("--out", args.out)
    model, config = load_model(run, resolve_device(check_device("--device", args.device)))
    path = get_path(config.path, **config.path_kwargs)
    check_sampler("--method", args.method, path)
    _check_run_data(run, config.subset, data)
    dataset = ClusterDataset(data, split=args.split, seed=config.seed, subset=config.subset)
    predictions = predict_dataset(
        model,
        path,
        dataset,
        samples=args.samples,
        steps=args.steps,
        method=args.method,
        batch_size=args.batch_size,
        seed=args.seed,
        keep_trajectories=args.trajectories,
        relax=args.relax,
    )
    write_predictions(args.out, dataset, predictions)
    settings = {"steps": args.steps, "method": args.method, "seed": args.seed, "relax": args.relax}
    write_sampling(args.out, run, config, args.split, args.samples, **settings)
    print(f"wrote {args.samples} sample(s) for {len(dataset)} {args.split} clusters to {args.out}")


def _check_run_data(run: Path, subset: int | None, data: Path) -> None:
    """``--data`` holds at least the ``subset`` of clusters that the run was trained on (its splits need them)."""
    from .data.codcluster17 import list_cluster_ids

    available = len(list_cluster_ids(data))
    if subset is not None and subset > available:
        raise ParameterError("--data", str(data), f"{available} clusters, fewer than the subset={subset} of {run}")


def run_relax(args: argparse.Namespace) -> None:
    from .checks import check_data_dir, check_out_dir
    from .data.dataset import ClusterDataset
    from .inference import relax_dataset, write_predictions
    from .records import relax_config, write_sampling

    data = check_data_dir("--data", args.data)
    check_out_dir("--out", args.out)
    _check_run_data(args.out, args.subset, data)
    dataset = ClusterDataset(data, split=args.split, seed=args.seed, subset=args.subset)
    predictions = relax_dataset(dataset, iterations=args.iterations, starts=args.starts, seed=args.seed)
    write_predictions(args.out, dataset, predictions)
    config = relax_config(data, args.seed, args.subset, args.iterations)
    write_sampling(args.out, args.out, config, args.split, args.starts, iterations=args.iterations)
    print(f"wrote {args.starts} relaxed start(s) for each of {len(dataset)} {args.split} clusters to {args.out}")


def run_solve(args: argparse.Namespace) -> None:
    from .checks import check_data_dir, check_out_dir
    from .data.codcluster17 import list_cluster_ids
    from .data.curate import curated_noise
    from .data.dataset import split_ids
    from .records import write_sampling
    from .solve import DEFAULT_SIGMA, SolveSettings, solve_clusters

    data = check_data_dir("--data", args.data)
    check_out_dir("--out", args.out)
    _check_run_data(args.out, args.subset, data)
    noise = curated_noise(data)
    settings = SolveSettings(
        candidates=args.candidates,
        seed=args.seed,
        temperature=args.temperature,
        sigma=DEFAULT_SIGMA if noise is None else noise.translation_sigma,
        inversion=bool(noise and noise.inversion),
        workers=args.workers,
    )
    ids = split_ids(list_cluster_ids(data), seed=args.seed, subset=args.subset)[args.split]
    config = {"path": "solve", "seed": args.seed, "subset": args.subset, "data": str(data), **settings.to_dict()}
    write_sampling(args.out, args.out, config, args.split, 1, **settings.to_dict())
    summary = solve_clusters(data, ids, args.out, settings)
    solved = int((summary["reason"] == "").sum()) if len(summary) else 0
    print(f"solved {solved} of {len(ids)} {args.split} clusters into {args.out} (x_w kept for the rest)")


def _molecule(args: argparse.Namespace, elements=None):
    from . import molecule_input

    if args.smiles is not None:
        return molecule_input.from_smiles(args.smiles, elements, seed=args.seed)
    if args.sdf is not None:
        return molecule_input.from_sdf(args.sdf, elements)
    return molecule_input.from_cif(args.cif, elements)


def run_predict(args: argparse.Namespace) -> None:
    from . import crystal_prediction as cp
    from .csp.search import SearchSettings
    from .params import check_space_groups

    cp.check_writable(args.out)
    groups = check_space_groups("--space-groups", [item for item in args.space_groups.split(",") if item.strip()])
    if args.flow_samples:
        run, device, elements = _flow_model(args)
    molecule = _molecule(args, elements if args.flow_samples else None)
    settings = SearchSettings(args.candidates, groups, args.seed)
    if args.workers:
        settings = SearchSettings(args.candidates, groups, args.seed, args.workers)
    prediction, ranking, cleared = cp.predict_into(
        args.out, molecule, settings, args.reference, args.pxrd, args.keep, args.max_atoms
    )
    if cleared:
        print(f"replaced the previous results for {prediction.name} in {args.out}: {', '.join(cleared)}")
    if args.flow_samples:
        from .predict import predict_packings, write_prediction

        packings = predict_packings(molecule, run, samples=args.flow_samples, seed=args.seed, device=device)
        write_prediction(args.out / "flow", packings)
    best = prediction.result.crystals[0]
    distinct, generated = len(prediction.result.crystals), prediction.result.generated
    print(
        f"wrote {min(args.keep, distinct)} of {distinct} distinct crystals of {prediction.name} ({generated} "
        f"candidates) to {args.out}: {ranking.name}, CIF/; best {best.candidate.symbol} Z={best.crystal.z}, "
        f"{best.energy:.1f} kcal/mol per molecule, {best.density:.3f} g/cm³; {prediction.settings['seconds']:.0f} s"
    )


def _flow_model(args: argparse.Namespace):
    """The learned model of ``--flow-samples``: refused unless its objective keeps molecules whole (rigid)."""
    from .checks import check_device, check_run_dir
    from .shipped import SHIPPED_MODEL, known_elements
    from .train import load_model

    run = check_run_dir("--run", SHIPPED_MODEL if args.run is None else args.run)
    objective = load_model(run, "cpu")[1].path
    if objective != "rigid":
        raise ParameterError("--run", str(run), f"its objective {objective!r} bends molecules; give a rigid model")
    return run, check_device("--device", args.device), known_elements(run)


def run_minimize(args: argparse.Namespace) -> None:
    from .csp import cif_writer
    from .csp.lattice_energy import LatticeEnergy
    from .csp.minimize import minimize_crystal
    from .csp.rigid_crystal import RigidCrystal
    from .forcefield import mmff_terms
    from .molecule_input import from_molecular_crystal, read_crystal

    out = Path(args.out)
    if out.is_dir() or not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise ParameterError("--out", str(out), "must be a file in an existing directory")
    crystal = read_crystal(args.cif)
    molecule = from_molecular_crystal(crystal, str(args.cif))
    rigid = RigidCrystal.from_molecular_crystal(crystal, name=Path(args.cif).stem)
    relaxed = minimize_crystal(rigid, LatticeEnergy(mmff_terms(molecule), rigid), max_iterations=args.max_iterations)
    extra = {"_crystalflow_lattice_energy_kcal_per_mol": f"{relaxed.energy:.4f}"}
    cif_writer.write_cif(out, rigid.to_molecular_crystal(relaxed.lattice, relaxed.molecule), out.stem, extra)
    volume = 100.0 * (relaxed.start_density / relaxed.density - 1.0)
    state = "converged" if relaxed.converged else "stopped at --max-iterations"
    print(f"energy per molecule: {relaxed.start_energy:.2f} -> {relaxed.energy:.2f} kcal/mol")
    print(f"density: {relaxed.start_density:.3f} -> {relaxed.density:.3f} g/cm³ (volume {volume:+.1f} %)")
    print(f"{relaxed.iterations} L-BFGS iterations, {state}; wrote {out}")


def run_evaluate(args: argparse.Namespace) -> None:
    import pandas as pd

    from .checks import check_data_dir, check_out_dir, check_predictions_dir
    from .files import atomic_open
    from .records import (
        METHOD_LABELS,
        coverage_lines,
        metric_coverage,
        metric_means,
        read_sampling,
        record_evaluation,
        score_evaluation,
        summary_rows,
        write_scores,
    )

    truth = check_data_dir("--truth", args.truth)
    pred = check_predictions_dir("--pred", args.pred)
    if args.out is not None:
        check_out_dir("--out", args.out)
    sampling = read_sampling(pred)
    scored = score_evaluation(truth, pred)
    per_cluster = scored["prediction"]
    means = {METHOD_LABELS.get(name, name): metric_means(frame) for name, frame in scored.items()}
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 200):
        print(f"{len(per_cluster)} clusters, {int(per_cluster['n_samples'].max())} sample(s) per cluster")
        print(summary_rows(means).to_string())
    for line in coverage_lines({name: metric_coverage(frame) for name, frame in scored.items()}):
        print(line)
    if args.out is not None:
        written = write_scores(args.out, scored)
        with atomic_open(args.out / "summary.csv") as handle:
            pd.DataFrame(means).T.to_csv(handle, index_label="method")
        print(f"wrote {', '.join(path.name for path in written.values())} and summary.csv to {args.out}")
    if sampling is not None and args.record:
        print(f"wrote the run record {record_evaluation(sampling, scored)}")


def _restart_training_under_jemalloc(args: argparse.Namespace) -> None:
    """``crystalflow train`` on the CPU restarts itself once under jemalloc where it is installed (see
    :mod:`crystalflow_core.allocator`); called as ``main(argv)`` from Python it never replaces the process."""
    from .allocator import restart_with_jemalloc
    from .checks import check_device
    from .train import resolve_device

    if resolve_device(check_device("--device", args.device)).type == "cpu":
        restart_with_jemalloc(sys.argv[1:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if argv is None and args.command == "train":
            _restart_training_under_jemalloc(args)
        status = args.handler(args)
    except EXPECTED_ERRORS as error:
        print(f"crystalflow {args.command}: error: {error}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
