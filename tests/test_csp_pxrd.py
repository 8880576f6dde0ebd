"""Simulated powder patterns (``csp.pxrd``): agreement with an independent simulation, self-similarity, ranking of
crystals by a written and re-read pattern (also after a 1 % cell expansion), and refusal of unusable files."""

import gzip
import warnings
from dataclasses import replace

import ase.io
import numpy as np
import pytest
from pyxtal.XRD import XRD

from crystalflow_core.csp import pxrd
from crystalflow_core.data.cif import read_cif
from crystalflow_core.data.molecules import MolecularCrystal, select_molecular_crystal
from crystalflow_core.data.sources import bundled_cod_directory
from crystalflow_core.errors import InputError

#: Bundled COD crystals: naphthalene (P 1 21/a 1, Z' = 0.5) and three other small organic molecules (Z' = 1).
NAPHTHALENE = "2100603"
OTHERS = ["2018597", "1100651", "2004431"]


def load(cod_id: str) -> MolecularCrystal:
    return select_molecular_crystal(read_cif(bundled_cod_directory() / f"{cod_id}.cif.gz")[0])


def expanded(mc: MolecularCrystal, factor: float) -> MolecularCrystal:
    """The crystal with every cell edge scaled by ``factor`` (same fractional coordinates)."""
    return replace(mc, crystal=replace(mc.crystal, lattice=mc.crystal.lattice * factor))


@pytest.fixture(scope="module")
def crystals() -> dict[str, MolecularCrystal]:
    return {cod_id: load(cod_id) for cod_id in [NAPHTHALENE, *OTHERS]}


@pytest.mark.parametrize("cod_id", [NAPHTHALENE, "2018597"])
def test_peaks_agree_with_pyxtal_on_the_original_cif(cod_id, tmp_path):
    """pyxtal's own XRD code on the CIF as ASE reads it (another parser, another symmetry expansion)."""
    cif = tmp_path / f"{cod_id}.cif"
    cif.write_bytes(gzip.decompress((bundled_cod_directory() / f"{cod_id}.cif.gz").read_bytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ASE's notes on the CIF's loops
        atoms = ase.io.read(cif)
    reference = XRD(atoms, thetas=[5, 50])
    ref_two_theta = np.asarray(reference.theta2)
    ref_intensity = 100.0 * np.asarray(reference.xrd_intensity) / np.max(reference.xrd_intensity)

    two_theta, intensity = pxrd.powder_pattern(load(cod_id))
    assert 5 <= two_theta.min() and two_theta.max() <= 50 and (np.diff(two_theta) > 0).all()
    for peak in np.argsort(intensity)[::-1][:10]:
        nearest = np.argmin(np.abs(ref_two_theta - two_theta[peak]))
        assert abs(ref_two_theta[nearest] - two_theta[peak]) < 0.05
        assert abs(ref_intensity[nearest] - intensity[peak]) < 2.0
    assert np.abs(two_theta - ref_two_theta[np.argmax(ref_intensity)]).min() < 0.05


def test_pattern_matches_itself_and_not_another(crystals):
    grid = pxrd.grid()
    profiles = {cod_id: pxrd.profile(*pxrd.powder_pattern(mc), grid) for cod_id, mc in crystals.items()}
    own = profiles[NAPHTHALENE]
    assert own.max() == pytest.approx(1.0)
    assert pxrd.similarity(own, own) == pytest.approx(1.0)
    for cod_id in OTHERS:
        other = pxrd.similarity(own, profiles[cod_id])
        assert 0.0 <= other < 0.8
        assert other == pytest.approx(pxrd.similarity(profiles[cod_id], own))


def test_similarity_tolerates_small_shifts():
    grid = pxrd.grid()
    peaks = np.array([10.0, 17.0, 25.0]), np.array([100.0, 60.0, 30.0])
    reference = pxrd.profile(*peaks, grid)
    by_shift = [pxrd.similarity(reference, pxrd.profile(peaks[0] + shift, peaks[1], grid)) for shift in (0.1, 0.3, 1)]
    assert 0.7 < by_shift[0] < 1.0 and by_shift[0] > by_shift[1] > by_shift[2]
    assert by_shift[2] == pytest.approx(0.0, abs=1e-3)  # beyond the triangle's reach


def test_written_pattern_ranks_its_crystal_first(crystals, tmp_path):
    naphthalene = crystals[NAPHTHALENE]
    path = pxrd.write_pattern(tmp_path / "measured.xy", *pxrd.powder_pattern(naphthalene))
    assert path.read_text().startswith("#")
    two_theta, intensity = pxrd.read_pattern(path)
    np.testing.assert_allclose(np.diff(two_theta), pxrd.GRID_STEP, atol=1e-6)
    assert intensity.max() == pytest.approx(100.0)

    others = [crystals[cod_id] for cod_id in OTHERS]
    scores = pxrd.rank_by_pattern((two_theta, intensity), [*others, naphthalene])
    assert np.argmax(scores) == len(others) and scores[-1] == pytest.approx(1.0, abs=1e-3)
    shifted = pxrd.rank_by_pattern((two_theta, intensity), [*others, expanded(naphthalene, 1.01)])
    assert np.argmax(shifted) == len(others) and shifted[-1] < scores[-1]


def test_comma_separated_pattern_with_comments(tmp_path):
    path = tmp_path / "pattern.csv"
    rows = [f"{5 + 0.5 * i:.2f},{(i % 4) * 10.0:.1f}" for i in range(12)]
    path.write_text("# 2theta,intensity\n\n" + "\r\n".join(rows) + "\n")
    two_theta, intensity = pxrd.read_pattern(path)
    assert len(two_theta) == 12 and two_theta[1] == 5.5 and intensity[3] == 30.0


def _rows(n: int = 12) -> list[str]:
    return [f"{5 + 0.1 * i:.2f} {1.0 + i}" for i in range(n)]


BAD_FILES = {
    "three_columns": ("\n".join(r + " 0.5" for r in _rows()), "line 1: expected two numbers"),
    "text": ("\n".join([*_rows(), "12.0 strong"]), "line 13: expected two numbers"),
    "not_finite": ("\n".join([*_rows(), "12.0 nan"]), "line 13: expected two numbers"),
    "too_few": ("\n".join(_rows(9)), "9 data points"),
    "empty": ("# nothing measured\n", "0 data points"),
    "not_increasing": ("\n".join([*_rows(), "5.5 3"]), "line 13: 2theta must increase"),
    "negative": ("\n".join([*_rows(), "7.0 -2"]), "line 13: negative intensity"),
    "all_zero": ("\n".join(f"{5 + i} 0" for i in range(12)), "every intensity is zero"),
    "beyond_180": ("\n".join(f"{100 + 10 * i} 1" for i in range(12)), "not within"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_read_pattern_refuses_bad_files(case, tmp_path):
    text, reason = BAD_FILES[case]
    path = tmp_path / f"{case}.xy"
    path.write_text(text)
    with pytest.raises(InputError, match=reason) as error:
        pxrd.read_pattern(path)
    assert str(path) in str(error.value)


def test_read_pattern_refuses_missing_and_binary_files(tmp_path):
    with pytest.raises(InputError, match="no such powder pattern file") as error:
        pxrd.read_pattern(tmp_path / "absent.xy")
    assert "absent.xy" in str(error.value)
    binary = tmp_path / "pattern.raw"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 50)
    with pytest.raises(InputError, match="cannot read the powder pattern as text") as error:
        pxrd.read_pattern(binary)
    assert "pattern.raw" in str(error.value)
