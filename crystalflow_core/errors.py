"""Errors that name the offending input and a machine-readable reason code."""

from __future__ import annotations

#: Reason codes recorded in ``manifest.csv`` for structures that are not curated.
REJECTION_REASONS = (
    "parse_error",
    "partial_occupancy",
    "multiple_species",
    "z_prime_gt_1",
    "polymeric",
    "no_carbon",
    "too_few_atoms",
    "bad_geometry",
)


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
