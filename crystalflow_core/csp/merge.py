"""Candidates that relaxed to the same crystal are one: a ranking lists distinct crystals.

Two minimised crystals are the same when their energies and densities agree closely and their 17-molecule
clusters match (at least :data:`SAME_MATCHED` of the 15 shell molecules, OXtalign, inversion allowed): random
starts in different space groups or cells often relax to one structure, which the energy alone cannot tell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crystalflow_core.data.molecules import MolecularCrystal

from .compare import CrystalReference, IncomparableCrystalError

#: Energies (kcal/mol per molecule) and densities (relative) closer than these are compared by structure.
SAME_ENERGY = 0.5
SAME_DENSITY = 0.03
#: Shell molecules (of 15) that must match for two crystals to be one.
SAME_MATCHED = 14


def duplicate_of(
    crystals: Sequence[MolecularCrystal], energies: Sequence[float], densities: Sequence[float]
) -> np.ndarray:
    """``[C]`` for every crystal the index of the crystal it is a copy of: itself when distinct, else the
    lowest-energy crystal it matches. Crystals are visited by energy, each compared with the distinct ones
    already kept; one that cannot be compared (:class:`~.compare.IncomparableCrystalError`) stays distinct."""
    energies, densities = np.asarray(energies, dtype=float), np.asarray(densities, dtype=float)
    representative = np.arange(len(crystals))
    kept: list[tuple[int, CrystalReference | None]] = []
    for i in np.argsort(energies, kind="stable"):
        for j, reference in kept:
            close = abs(energies[i] - energies[j]) < SAME_ENERGY and abs(densities[i] / densities[j] - 1) < SAME_DENSITY
            if close and reference is not None and reference.compare(crystals[i])["matched"] >= SAME_MATCHED:
                representative[i] = j
                break
        else:
            kept.append((int(i), _reference(crystals[i])))
    return representative


def _reference(crystal: MolecularCrystal) -> CrystalReference | None:
    try:
        return CrystalReference.of(crystal)
    except IncomparableCrystalError:
        return None
