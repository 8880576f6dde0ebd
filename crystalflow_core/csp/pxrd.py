"""Simulated powder X-ray diffraction patterns of a :class:`MolecularCrystal`, and candidates ranked by how well
their pattern agrees with a measured one.

Peak positions and intensities come from pymatgen's ``XRDCalculator`` (Cu Kα by default) on every atom of the
unit cell; :func:`profile` broadens them into a curve on a 2θ grid, and :func:`similarity` compares two curves by
de Gelder's weighted cross-correlation, which forgives peaks shifted by less than its triangle width (a measured
cell differs from a predicted or relaxed one by a percent or so).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

from crystalflow_core.data.crystal import Crystal
from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.errors import InputError
from crystalflow_core.files import atomic_open

#: The 2θ range (degrees) that laboratory patterns of molecular crystals cover and that is simulated by default.
TWO_THETA_RANGE = (5.0, 50.0)
#: 2θ step (degrees) of the profiles compared and written.
GRID_STEP = 0.02
#: Full width at half maximum (degrees) of the Gaussian peaks of a simulated profile.
FWHM = 0.2
#: Half-width (degrees) of the triangle weight in :func:`similarity`: peaks closer than this still overlap.
SHIFT_WIDTH = 0.5
#: A measured pattern needs at least this many points to be compared.
MIN_POINTS = 10
#: Peaks broadened at once by :func:`profile`.
PEAK_CHUNK = 1024
_SEPARATOR = re.compile(r"[\s,]+")


def _unit_cell_structure(mc: MolecularCrystal) -> Structure:
    """Every atom of the unit cell: the molecule expanded by all operations, wrapped, coincident copies merged.

    Built from the molecule rather than ``mc.crystal``'s asymmetric unit, so a crystal made from a molecule and a
    space group (a CSP candidate) and one read from a CIF are treated alike.
    """
    crystal = mc.crystal
    molecule = Crystal(
        name=crystal.name,
        source=crystal.source,
        lattice=crystal.lattice,
        rotations=crystal.rotations,
        translations=crystal.translations,
        numbers=mc.numbers,
        frac=mc.frac,
        occupancies=np.ones(len(mc.numbers)),
    )
    numbers, frac = molecule.unit_cell()
    return Structure(Lattice(crystal.lattice), [int(z) for z in numbers], frac)


def powder_pattern(
    mc: MolecularCrystal, two_theta_range: tuple[float, float] = TWO_THETA_RANGE, wavelength: str | float = "CuKa"
) -> tuple[np.ndarray, np.ndarray]:
    """Peak positions 2θ [P] (degrees, increasing) and intensities [P] (strongest 100) of the powder pattern.

    ``wavelength`` is a pymatgen anode name (``"CuKa"``, ``"MoKa"`` …) or a wavelength in Å.
    """
    pattern = XRDCalculator(wavelength=wavelength).get_pattern(
        _unit_cell_structure(mc), scaled=True, two_theta_range=two_theta_range
    )
    return np.asarray(pattern.x, dtype=np.float64), np.asarray(pattern.y, dtype=np.float64)


def profile(two_theta: np.ndarray, intensity: np.ndarray, grid: np.ndarray, fwhm: float = FWHM) -> np.ndarray:
    """The peaks ``two_theta`` [P], ``intensity`` [P] as Gaussians of width ``fwhm`` summed on ``grid`` [G].

    Normalised to a maximum of 1 (all zeros when no peak reaches the grid).
    """
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    curve = np.zeros(len(grid))
    for start in range(0, len(two_theta), PEAK_CHUNK):  # a [G, chunk] matrix at a time: large cells have many peaks
        chunk = slice(start, start + PEAK_CHUNK)
        curve += np.exp(-0.5 * ((grid[:, None] - two_theta[None, chunk]) / sigma) ** 2) @ intensity[chunk]
    peak = curve.max(initial=0.0)
    return curve / peak if peak > 0 else curve


def grid(two_theta_range: tuple[float, float] = TWO_THETA_RANGE, step: float = GRID_STEP) -> np.ndarray:
    """The 2θ grid [G] from the start to the end of ``two_theta_range`` (both included) in steps of ``step``."""
    start, stop = two_theta_range
    return start + step * np.arange(int(np.floor((stop - start) / step + 1e-9)) + 1)


def similarity(
    profile_a: np.ndarray, profile_b: np.ndarray, width: float = SHIFT_WIDTH, step: float = GRID_STEP
) -> float:
    """de Gelder's weighted cross-correlation of two profiles on one grid of step ``step``, in [0, 1].

    S = Σ_r w(r) c_ab(r) / sqrt(Σ_r w(r) c_aa(r) · Σ_r w(r) c_bb(r)), where c_ab(r) = Σ_x a(x) b(x + r) and w is a
    triangle of half-width ``width`` (degrees): intensity shifted by less than ``width`` still counts, partly.
    The triangle's Fourier transform (a squared sinc) is non-negative, so the weighted correlation is an inner
    product and S ≤ 1 by Cauchy-Schwarz, with 1 for proportional profiles (de Gelder, Wehrens & Hageman,
    J. Comput. Chem. 22, 273, 2001).
    """
    a, b = np.asarray(profile_a, dtype=np.float64), np.asarray(profile_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"profiles must be 1-D on one grid, got shapes {a.shape} and {b.shape}")
    if not width > 0:
        raise ValueError(f"width={width!r}: the triangle weight needs a positive half-width")
    half = min(int(np.floor(width / step + 1e-9)), len(a) - 1)
    lags = np.arange(-half, half + 1)
    weight = 1.0 - np.abs(lags) * step / width
    norm = np.sqrt(_weighted_correlation(a, a, lags, weight) * _weighted_correlation(b, b, lags, weight))
    return float(np.clip(_weighted_correlation(a, b, lags, weight) / norm, 0.0, 1.0)) if norm > 0 else 0.0


def _weighted_correlation(x: np.ndarray, y: np.ndarray, lags: np.ndarray, weight: np.ndarray) -> float:
    """Σ_r w(r) Σ_i x(i) y(i + r) over the grid shifts ``lags``."""
    n = len(x)
    return sum(w * (x[: n - r] @ y[r:] if r >= 0 else x[-r:] @ y[: n + r]) for r, w in zip(lags, weight, strict=True))


def rank_by_pattern(
    measured: tuple[np.ndarray, np.ndarray],
    candidates: list[MolecularCrystal],
    fwhm: float = FWHM,
    width: float = SHIFT_WIDTH,
    wavelength: str | float = "CuKa",
) -> np.ndarray:
    """Similarity [C] of each candidate's simulated profile to the measured pattern ``(two_theta, intensity)``.

    The measured pattern is interpolated onto a ``GRID_STEP`` grid over its own 2θ range, where the candidates'
    patterns are simulated and broadened by ``fwhm``. Sort descending for the best agreement first.
    """
    two_theta, intensity = (np.asarray(v, dtype=np.float64) for v in measured)
    common = grid((float(two_theta[0]), float(two_theta[-1])))
    target = np.interp(common, two_theta, intensity)
    return np.array(
        [
            similarity(target, profile(*powder_pattern(mc, (common[0], common[-1]), wavelength), common, fwhm), width)
            for mc in candidates
        ]
    )


def write_pattern(
    path: str | Path,
    two_theta: np.ndarray,
    intensity: np.ndarray,
    two_theta_range: tuple[float, float] = TWO_THETA_RANGE,
    fwhm: float = FWHM,
) -> Path:
    """Write the peaks ``two_theta``, ``intensity`` as a profile (maximum 100) on a ``GRID_STEP`` grid over
    ``two_theta_range``: a comment line, then ``2theta intensity`` per line, as :func:`read_pattern` reads.

    Written to a temporary file beside ``path`` and renamed, so an interrupted write leaves no partial file.
    """
    path = Path(path)
    points = grid(two_theta_range)
    curve = 100.0 * profile(np.asarray(two_theta), np.asarray(intensity), points, fwhm)
    lines = [f"# simulated powder pattern, Gaussian FWHM {fwhm:g} deg; columns: 2theta (deg) intensity"]
    lines += [f"{x:.3f} {y:.4f}" for x, y in zip(points, curve, strict=True)]
    with atomic_open(path) as stream:
        stream.write("\n".join(lines) + "\n")
    return path


def read_pattern(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A measured pattern: 2θ [N] (degrees, increasing) and intensity [N] (non-negative).

    The file holds two numeric columns separated by whitespace or a comma; blank lines and lines starting with
    ``#`` are skipped. Raises :class:`InputError` naming the file (and line) and what is wrong with it.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such powder pattern file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the powder pattern as text: {exc}") from None
    rows, line_numbers = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = _SEPARATOR.split(stripped)
        try:
            values = [float(field) for field in fields]
        except ValueError:
            values = []
        if len(values) != 2 or not np.isfinite(values).all():
            raise InputError(f"{path}, line {number}: expected two numbers (2theta intensity), got {stripped[:60]!r}")
        rows.append(values)
        line_numbers.append(number)
    if len(rows) < MIN_POINTS:
        raise InputError(f"{path}: {len(rows)} data points; a powder pattern needs at least {MIN_POINTS}")
    two_theta, intensity = np.array(rows).T
    if not (np.diff(two_theta) > 0).all():
        at = int(np.argmax(np.diff(two_theta) <= 0)) + 1
        detail = f"2theta must increase, but {two_theta[at]:g} follows {two_theta[at - 1]:g}"
        raise InputError(f"{path}, line {line_numbers[at]}: {detail}")
    if not (0 < two_theta[0] and two_theta[-1] < 180):
        detail = f"2theta runs from {two_theta[0]:g} to {two_theta[-1]:g}, not within (0, 180) degrees"
        raise InputError(f"{path}: {detail}")
    if (intensity < 0).any():
        at = int(np.argmax(intensity < 0))
        raise InputError(f"{path}, line {line_numbers[at]}: negative intensity {intensity[at]:g}")
    if not intensity.any():
        raise InputError(f"{path}: every intensity is zero")
    return two_theta, intensity
