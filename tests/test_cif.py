"""Tests for CIF reading: element inference, symmetry sources, data blocks, unit-cell expansion."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from crystalflow_core.data.cif import element_from_label, element_from_type_symbol, formula_elements, read_cif
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


def test_file_without_atoms_is_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.cif"
    path.write_text("data_x\n_cell_length_a 5\n")
    with pytest.raises(CurationError, match="parse_error"):
        read_cif(path)


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
