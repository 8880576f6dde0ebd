"""Tests for CIF reading: element inference, symmetry sources, data blocks, unit-cell expansion."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from crystalflow_core.data.cif import (
    element_from_label,
    element_from_type_symbol,
    formula_counts,
    formula_elements,
    read_cif,
    read_cif_blocks,
)
from crystalflow_core.errors import CurationError

COD = Path(__file__).parents[1].parent / "shared" / "cod"

TWO_BLOCKS = """
data_first
_cell_length_a 10.0(1)
_cell_length_b 6.0
_cell_length_c 8.0
_cell_angle_alpha 90
_cell_angle_beta 100.0(2)
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 21/c'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
C12A ? 0.1000(3) 0.2000(4) 0.3000(5) 1
Cl1 ? 0.2 0.3 0.4 0.533(8)
H1A ? 0.0 0.0 0.0 1.0
data_second
_cell_length_a 5.0
_cell_length_b 5.0
_cell_length_c 5.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_symmetry_equiv_pos_as_xyz
'-x,-y,-z'
'x,y,z'
loop_
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
N1 0.1 0.2 0.3
O1 0.5 0.5 0.5
"""


@pytest.mark.parametrize(
    ("label", "expected"),
    [("C12A", 6), ("Cl1", 17), ("H1A", 1), ("CA1", 6), ("O(1)", 8), ("Br", 35), ("D3", 1), ("Wat1", 0)],
)
def test_element_from_label(label: str, expected: int) -> None:
    assert element_from_label(label) == expected


def test_element_from_label_uses_formula_to_resolve_upper_case() -> None:
    cobalt_complex = formula_elements("C28 H10 Co4 O12")
    assert element_from_label("CO(1)", cobalt_complex) == 27
    assert element_from_label("C(1)", cobalt_complex) == 6
    assert element_from_label("HO1", formula_elements("C6 H6 O")) == 1


@pytest.mark.parametrize(("symbol", "expected"), [("C", 6), ("CL", 17), ("O2-", 8), ("Fe3+", 26), ("?", 0)])
def test_element_from_type_symbol(symbol: str, expected: int) -> None:
    assert element_from_type_symbol(symbol) == expected


def test_read_two_blocks_symbols_and_uncertainties(tmp_path: Path) -> None:
    path = tmp_path / "tiny.cif"
    path.write_text(TWO_BLOCKS)
    first, second = read_cif(path)
    assert (first.name, second.name) == ("tiny/first", "tiny/second")
    np.testing.assert_array_equal(first.numbers, [6, 17, 1])
    np.testing.assert_allclose(first.occupancies, [1.0, 0.533, 1.0])
    np.testing.assert_allclose(first.frac[0], [0.1, 0.2, 0.3])
    # P 21/c from its H-M symbol alone: 4 operations, identity first.
    assert len(first.rotations) == 4
    np.testing.assert_array_equal(first.rotations[0], np.eye(3))
    # lattice rows reproduce the cell lengths and beta
    lengths = np.linalg.norm(first.lattice, axis=1)
    np.testing.assert_allclose(lengths, [10.0, 6.0, 8.0])
    cos_beta = first.lattice[0] @ first.lattice[2] / (10.0 * 8.0)
    assert cos_beta == pytest.approx(np.cos(np.radians(100.0)))
    # explicit symop list, identity moved to the front
    assert len(second.rotations) == 2
    np.testing.assert_array_equal(second.rotations[0], np.eye(3))
    np.testing.assert_array_equal(second.rotations[1], -np.eye(3))


def test_unit_cell_merges_special_positions(tmp_path: Path) -> None:
    path = tmp_path / "tiny.cif"
    path.write_text(TWO_BLOCKS)
    second = read_cif(path)[1]
    numbers, frac = second.unit_cell()
    # N1 in a general position gives two atoms; O1 on the inversion centre stays one.
    np.testing.assert_array_equal(np.sort(numbers), [7, 7, 8])
    assert np.all((frac >= 0) & (frac < 1))
    np.testing.assert_allclose(frac[numbers == 7], [[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]])


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.cif"
    path.write_text("data_x\nloop_\n_atom_site_label\n_atom_site_fract_x\nC1\n'unterminated\n")
    with pytest.raises(CurationError) as info:
        read_cif(path)
    assert info.value.reason == "parse_error"
    assert "broken.cif" in str(info.value)


def test_file_without_atoms_is_no_atoms(tmp_path: Path) -> None:
    path = tmp_path / "empty.cif"
    path.write_text("data_x\n_cell_length_a 5\n")
    with pytest.raises(CurationError) as info:
        read_cif(path)
    assert info.value.reason == "no_atoms" and "empty.cif" in str(info.value)


@pytest.mark.skipif(not COD.is_dir(), reason="COD test files not present")
@pytest.mark.parametrize("cod_id", ["0000102", "2010787", "2104634", "1100811"])
def test_unit_cell_matches_gemmi_expansion(cod_id: str) -> None:
    """Unit-cell contents agree with gemmi's own symmetry expansion of the same file."""
    path = COD / f"{cod_id}.cif"
    if not path.exists():
        pytest.skip(f"{cod_id}.cif not present")
    crystal = read_cif(path)[0]
    numbers, frac = crystal.unit_cell()
    small = gemmi.read_small_structure(str(path))
    sites = small.get_all_unit_cell_sites()
    assert len(numbers) == len(sites)
    expected = np.array([[s.fract.x, s.fract.y, s.fract.z] for s in sites]) % 1.0
    delta = frac[:, None, :] - expected[None, :, :]
    delta -= np.round(delta)
    distance = np.linalg.norm(delta @ crystal.lattice, axis=-1)
    assert np.all(distance.min(axis=1) < 0.05)
    assert abs(np.linalg.det(crystal.lattice) - small.cell.volume) < 1e-6 * small.cell.volume


@pytest.mark.skipif(not COD.is_dir(), reason="COD test files not present")
def test_multi_block_file_gives_one_crystal_per_block() -> None:
    crystals = read_cif(COD / "1523050.cif")
    assert len(crystals) == 4
    assert len({c.name for c in crystals}) == 4
    assert all(c.name.startswith("1523050/") for c in crystals)


CUBIC_P1 = """data_cubic
_chemical_formula_sum 'C2 H2'
_cell_length_a 6.0
_cell_length_b 6.0
_cell_length_c 6.0
loop_
_symmetry_equiv_pos_as_xyz
{ops}
loop_
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
C1 0.1 0.0 0.0
H1 {h_x} 0.0 0.0
"""

ANGLES = "_cell_length_c 6.0\n_cell_angle_alpha {}\n_cell_angle_beta {}\n_cell_angle_gamma {}"


def _cubic(tmp_path: Path, ops: str = "x,y,z", h_x: str = "0.28", **replace: str) -> Path:
    text = CUBIC_P1.format(ops=ops, h_x=h_x)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "cubic.cif"
    path.write_text(text)
    return path


def _reason(path: Path) -> str:
    with pytest.raises(CurationError) as info:
        read_cif(path)
    assert str(path) in str(info.value)
    return info.value.reason


def test_byte_order_mark_and_crlf_read_as_the_plain_file(tmp_path: Path) -> None:
    plain = read_cif(_cubic(tmp_path))[0]
    path = tmp_path / "windows.cif"
    path.write_bytes(b"\xef\xbb\xbf" + _cubic(tmp_path).read_bytes().replace(b"\n", b"\r\n"))
    windows = read_cif(path)[0]
    for field in ("lattice", "rotations", "translations", "numbers", "frac", "occupancies"):
        np.testing.assert_array_equal(getattr(windows, field), getattr(plain, field))
    assert windows.formula_sum == "C2 H2"


@pytest.mark.parametrize("h_x", ["nan", "inf", "?", ".", "1e30", "abc", "-11"])
def test_bad_coordinate_rejects_the_block_instead_of_dropping_the_atom(tmp_path: Path, h_x: str) -> None:
    assert _reason(_cubic(tmp_path, h_x=h_x)) == "bad_coordinate"


def test_unwrapped_coordinates_are_kept(tmp_path: Path) -> None:
    assert read_cif(_cubic(tmp_path, h_x="2.28"))[0].frac[1, 0] == 2.28


def test_dummy_sites_are_left_out_and_a_block_of_dummies_has_no_atoms(tmp_path: Path) -> None:
    flagged = {"_atom_site_fract_z\n": "_atom_site_fract_z\n_atom_site_calc_flag\n", "0.0 0.0\n": "0.0 0.0 d\n"}
    dummy = flagged | {"H1 . 0.0 0.0 d": "Q1 . . . dum"}
    assert len(read_cif(_cubic(tmp_path, h_x=".", **dummy))[0].numbers) == 1
    no_atoms = dummy | {"C1 0.1 0.0 0.0 d": "Q2 . . . dum"}
    assert _reason(_cubic(tmp_path, h_x=".", **no_atoms)) == "no_atoms"


@pytest.mark.parametrize(
    "cell",
    [
        {"_cell_length_a 6.0\n": ""},
        {"_cell_length_b 6.0": "_cell_length_b 0"},
        {"_cell_length_b 6.0": "_cell_length_b -6.0"},
        {"_cell_length_b 6.0": "_cell_length_b abc"},
        {"_cell_length_b 6.0": "_cell_length_b ?"},
        {"_cell_length_c 6.0": ANGLES.format(90, 180, 90)},
        {"_cell_length_c 6.0": ANGLES.format(120, 120, 120)},
        {"_cell_length_c 6.0": ANGLES.format(60, 60, 150)},
        {"_cell_length_c 6.0": "_cell_length_c 6e-4"},
        {"_cell_length_c 6.0": "_cell_length_c 6e4"},
    ],
    ids=["missing", "zero", "negative", "text", "unknown", "flat_angle", "angles_sum_360", "no_cell", "tiny", "huge"],
)
def test_bad_cell(tmp_path: Path, cell: dict[str, str]) -> None:
    assert _reason(_cubic(tmp_path, **cell)) == "bad_cell"


@pytest.mark.parametrize(
    ("ops", "problem"),
    [
        ("x/0,y,z", "Wrong denominator"),
        ("'x,y'", "two commas"),
        ("x/2,y,z", "not a crystallographic operation"),
        ("-x,-y,-z", "not a group"),  # no identity
        ("x,y,z\n-x,-y,-z\n-x,y,-z", "not a group"),  # a line of P 2/m lost
        ("x,y,z\n-y,x,z\n-x,-y,z\n" + "y,-x,z", None),  # a 4-fold axis fits the cubic cell
    ],
)
def test_symmetry_operations_must_be_a_space_group(tmp_path: Path, ops: str, problem: str | None) -> None:
    path = _cubic(tmp_path, ops=ops)
    if problem is None:
        assert len(read_cif(path)[0].rotations) == 4
        return
    with pytest.raises(CurationError, match=problem) as info:
        read_cif(path)
    assert info.value.reason == "bad_symmetry"


def test_symmetry_must_fit_the_cell_and_the_named_group(tmp_path: Path) -> None:
    four_fold = "x,y,z\n-y,x,z\n-x,-y,z\ny,-x,z"
    stretched = _cubic(tmp_path, ops=four_fold, **{"_cell_length_b 6.0": "_cell_length_b 7.0"})
    with pytest.raises(CurationError, match="does not map the cell onto itself"):
        read_cif(stretched)
    named = {"loop_\n_symmetry_equiv": "_symmetry_space_group_name_Hall '-P 1'\nloop_\n_symmetry_equiv"}
    with pytest.raises(CurationError, match="lists 1 distinct operations, the Hall symbol '-P 1' has 2"):
        read_cif(_cubic(tmp_path, **named))
    assert _reason(_cubic(tmp_path, **{"loop_\n_symmetry_equiv_pos_as_xyz\nx,y,z\n": ""})) == "bad_symmetry"


def test_short_row_is_a_parse_error(tmp_path: Path) -> None:
    assert _reason(_cubic(tmp_path, **{"H1 0.28 0.0 0.0": "H1 0.28 0.0"})) == "parse_error"


@pytest.mark.parametrize("content", [b"", b"\n\n", bytes(range(256)) * 4, b"data_x\n_a 'unterminated\n"])
def test_empty_binary_or_broken_file_is_a_parse_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.cif"
    path.write_bytes(content)
    assert _reason(path) == "parse_error"


def test_broken_block_is_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "two.cif"
    good = _cubic(tmp_path).read_text()
    path.write_text(good + good.replace("data_cubic", "data_broken").replace("_cell_length_a 6.0", "_cell_length_a 0"))
    first, second = read_cif_blocks(path)
    assert first.name == "two/cubic" and len(first.numbers) == 2
    assert second.reason == "bad_cell" and "data_broken" in str(second)
    with pytest.raises(CurationError, match="bad_cell"):
        read_cif(path)


def test_formula_counts() -> None:
    assert formula_counts("C10.5 H12 N O2") == {6: 10.5, 1: 12.0, 7: 1.0, 8: 2.0}
    assert formula_counts("C6 D6") == {6: 6.0, 1: 6.0}
    assert formula_counts("C H2 Cl2 C") == {6: 2.0, 1: 2.0, 17: 2.0}
    for unreadable in ("?", "", "C6 H6 . 2(H2 O)", "C6 H6 Xx2", "c6h6"):
        assert formula_counts(unreadable) is None
