"""Errors that name the offending input and a machine-readable reason code."""

from __future__ import annotations

#: Reason codes recorded in ``manifest.csv`` for structures that are not curated, and what each means.
REJECTION_REASONS = {
    # the file or data block cannot be read, or trusted, as a crystal structure
    "parse_error": "not a readable CIF: empty, binary, truncated, a malformed loop or short row, no data block",
    "no_atoms": "no data block with atom sites (or only dummy sites)",
    "bad_cell": "cell missing, non-numeric or non-positive, angles that give no cell, or a cell too small, too "
    "large or too oblique to search for neighbours",
    "bad_symmetry": "symmetry operations missing, unreadable (e.g. x/0), not a group, not compatible with the cell, "
    "or fewer than the Hall or H-M symbol names",
    "bad_coordinate": "a fractional coordinate that is unknown (?), not a finite number, or absurdly large",
    "unknown_element": "an atom whose element neither its type symbol nor its label tells",
    "duplicate_site": "two atom sites of the asymmetric unit at one position",
    "too_large": "too large to curate: a neighbour search over too many periodic images, or more memory than a "
    "worker may use",
    "formula_mismatch": "the restored molecule is not a multiple of the file's _chemical_formula_sum",
    # the selection: the paper's Appendix C, and hydrogen_only
    "hydrogen_only": "every atom is hydrogen",
    "partial_occupancy": "an atom with occupancy < 0.99 (disorder)",
    "multiple_species": "more than one molecular formula in the cell (salts, solvates, co-crystals)",
    "z_prime_gt_1": "more molecules than symmetry operations, or molecules not all images of one",
    "polymeric": "a molecule bonded to its own periodic image",
    "no_carbon": "no carbon atom in the molecule",
    "bad_geometry": "two atoms closer than 0.7 Å or half their covalent radii sum (unmarked disorder)",
    # the worker that curated the file
    "timeout": "no result within the per-file time limit; the worker was killed",
    "worker_died": "the worker process died (killed, out of memory, crashed in native code)",
}


class CurationError(ValueError):
    """A structure that the paper's selection (Appendix C) rejects, or that cannot be read.

    ``reason`` is one of :data:`REJECTION_REASONS`; ``source`` names the file (and data block).
    """

    def __init__(self, reason: str, detail: str, source: str = "") -> None:
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        self.reason = reason
        self.detail = detail
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{reason}: {detail}")


class InputError(ValueError):
    """A file, directory or value given by the user that cannot be used; the message names it and says why.

    The command line prints such errors (and :class:`CurationError`) as one line; any other exception is a bug and
    keeps its traceback.
    """


class ParameterError(InputError):
    """A parameter or command-line option value that cannot work; the message starts with ``name=value``."""

    def __init__(self, name: str, value: object, problem: str) -> None:
        super().__init__(f"{name}={value!r}: {problem}")
        self.name = name


class ClusterFileError(InputError):
    """A cluster CSV that does not follow the COD-Cluster17 layout; the message names the file."""


class CheckpointError(InputError):
    """A checkpoint that cannot be used: missing, truncated, corrupted, or written for other settings."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
