"""Still pictures of a cluster (matplotlib, no browser or kernel): ball-and-stick in 3D, one colour per molecule,
for READMEs and papers.

``python3 -m crystalviz.snapshot PACKINGS PICTURE.png`` draws the best of the packings that ``crystalflow predict
--flow-samples K`` writes (``OUT/flow``); bad input stops it with one line naming it (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crystalflow_core.checks import check_path, check_positive  # noqa: E402
from crystalflow_core.data.symmetry import cluster_bonds  # noqa: E402
from crystalflow_core.errors import InputError, ParameterError  # noqa: E402
from crystalviz.colors import molecule_colors  # noqa: E402

#: Marker areas (points²) of hydrogen and of heavier atoms.
_HYDROGEN_SIZE, _HEAVY_SIZE = 12.0, 40.0


def cluster_png(
    path: str | Path,
    numbers: np.ndarray,
    mol_index: np.ndarray,
    positions: np.ndarray,
    title: str = "",
    elevation: float = 20.0,
    azimuth: float = 35.0,
) -> Path:
    """Write a ball-and-stick PNG of one cluster ``positions [N, 3]`` to ``path`` (its folder must exist); bonds
    by the curation's rule."""
    numbers, mol_index = np.asarray(numbers), np.asarray(mol_index)
    positions = np.asarray(positions, dtype=float)
    colors = molecule_colors(int(mol_index.max()) + 1)
    figure = plt.figure(figsize=(6, 6), dpi=120)
    axes = figure.add_subplot(projection="3d")
    for i, j in cluster_bonds(numbers, mol_index, positions):
        axes.plot(*positions[[i, j]].T, color=colors[mol_index[i]], linewidth=1.6)
    sizes = np.where(numbers == 1, _HYDROGEN_SIZE, _HEAVY_SIZE)
    axes.scatter(*positions.T, s=sizes, c=[colors[m] for m in mol_index], edgecolors="black", linewidths=0.3)
    span = (positions.max(axis=0) - positions.min(axis=0)).max() / 2
    for centre, setter in zip(positions.mean(axis=0), (axes.set_xlim, axes.set_ylim, axes.set_zlim), strict=True):
        setter(centre - span, centre + span)
    axes.view_init(elev=elevation, azim=azimuth)
    axes.set_box_aspect(None, zoom=1.35)
    axes.set_axis_off()
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    plt.close(figure)
    return path


def predicted_packing_png(out_dir: str | Path, path: str | Path, rank: int = 1) -> Path:
    """Write a PNG of the packing of ``rank`` (1: the best) of a ``crystalflow predict --out`` directory, titled
    with its ranking scores."""
    from crystalflow_core.predict import read_packing

    packing = read_packing(out_dir, rank)
    scores = packing.scores
    title = (
        f"rank {rank}: {scores['energy']:.1f} kcal/mol per molecule, {scores['density']:.2f} g/cm³, "
        f"{scores['clash']:.0f} % clashes"
    )
    return cluster_png(path, packing.numbers, packing.mol_index, packing.trajectory[-1], title=title)


PROG = "python3 -m crystalviz.snapshot"


def check_picture(name: str, value: object) -> Path:
    """``value`` as the path of a PNG to write: a name ending in ``.png`` in a folder that exists."""
    path = check_path(name, value)
    if path.suffix.lower() != ".png":
        raise ParameterError(name, str(value), "a picture's name must end in .png")
    if not path.parent.is_dir():
        raise ParameterError(name, str(value), f"no folder {str(path.parent)!r} to write it in")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Draw one of the packings of crystalflow predict --flow-samples as a PNG (ball and stick, one "
        "colour per molecule, titled with its scores) and print the file written.",
        epilog=f"example: {PROG} salicylic_acid/flow best.png",
    )
    parser.add_argument(
        "out_dir", metavar="PACKINGS", type=Path, help="the packings' directory: OUT/flow of crystalflow predict"
    )
    parser.add_argument("picture", metavar="PICTURE.png", help="the PNG to write, in a folder that exists")
    parser.add_argument("--rank", type=int, default=1, help="which packing: 1 is the best (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command: exit status 0, or 2 with one line naming the bad input."""
    args = _parser().parse_args(argv)
    try:
        check_positive("--rank", args.rank)
        picture = check_picture("PICTURE.png", args.picture)
        print(predicted_packing_png(args.out_dir, picture, args.rank))
    except InputError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
