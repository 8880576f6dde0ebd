"""Read CIF data blocks into :class:`Crystal` objects with gemmi (symmetry, cell, asymmetric unit)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import gemmi
import numpy as np

from crystalflow_core.data.crystal import Crystal
from crystalflow_core.errors import CurationError

_SYMOP_TAGS = (
    "_space_group_symop_operation_xyz",
    "_space_group_symop.operation_xyz",
    "_symmetry_equiv_pos_as_xyz",
    "_symmetry_equiv.pos_as_xyz",
)
_HALL_TAGS = ("_space_group_name_Hall", "_symmetry_space_group_name_Hall", "_space_group.name_Hall")
_HM_TAGS = ("_space_group_name_H-M_alt", "_symmetry_space_group_name_H-M", "_space_group.name_H-M_alt")
_NUMBER_TAGS = ("_space_group_IT_number", "_symmetry_Int_Tables_number", "_space_group.IT_number")
_CELL_TAGS = tuple(
    f"_cell_{name}" for name in ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")
)
_ELEMENT_START = re.compile(r"[A-Za-z]+")


def _element_number(symbol: str) -> int:
    """Atomic number of a (case-insensitive) element symbol; deuterium and tritium count as H; 0 if unknown."""
    symbol = symbol.capitalize()
    if symbol in ("D", "T"):
        return 1
    element = gemmi.Element(symbol)
    return element.atomic_number if element.name.lower() == symbol.lower() else 0


def element_from_type_symbol(type_symbol: str) -> int:
    """Atomic number from an ``_atom_site_type_symbol`` such as ``C``, ``CL``, ``O2-``, ``Fe3+``; 0 if none."""
    match = _ELEMENT_START.match(type_symbol.strip())
    if match is None:
        return 0
    letters = match.group(0)
    for length in (2, 1):
        if len(letters) >= length and (number := _element_number(letters[:length])):
            return number
    return 0


def element_from_label(label: str, formula_numbers: frozenset[int] = frozenset()) -> int:
    """Atomic number from an atom label: ``C12A`` → 6, ``Cl1`` → 17, ``H1A`` → 1; 0 if it cannot be told.

    When the elements of ``_chemical_formula_sum`` are known (``formula_numbers``), a two-letter symbol in
    the formula wins over a one-letter one (``CO(1)`` is cobalt in a cobalt complex, ``HO1`` is hydrogen
    where there is no holmium). Otherwise a lower-case second letter belongs to the symbol (``Cl1``) and an
    upper-case letter or digit after a one-letter symbol does not (``C12A``, ``CA1`` is carbon).
    """
    match = _ELEMENT_START.match(label.strip())
    if match is None:
        return 0
    letters = match.group(0)
    candidates = [_element_number(letters[:n]) for n in (2, 1) if len(letters) >= n]
    for number in candidates:
        if number and number in formula_numbers:
            return number
    if len(letters) >= 2 and letters[1].islower():
        if candidates[0] and (len(letters) == 2 or not letters[2].islower()):
            return candidates[0]
        return 0
    return candidates[-1]


def formula_elements(formula: str) -> frozenset[int]:
    """Atomic numbers named in a formula such as ``'C28 H10 Co4 O12'``."""
    return frozenset(n for symbol in re.findall(r"[A-Z][a-z]?", formula) if (n := _element_number(symbol)))


def _first_value(block: gemmi.cif.Block, tags: tuple[str, ...]) -> str | None:
    """First defined (not ``?``/``.``) value among ``tags``."""
    for tag in tags:
        value = block.find_value(tag)
        if value is not None:
            text = gemmi.cif.as_string(value).strip()
            if text and text not in ("?", "."):
                return text
    return None


def _column(block: gemmi.cif.Block, tag: str, length: int | None = None) -> list[str] | None:
    """Values of a looped or single-valued tag; None when absent or not ``length`` long."""
    column = block.find_values(tag)
    if len(column) == 0 or (length is not None and len(column) != length):
        return None
    return [column[i] for i in range(len(column))]


def _symmetry_operations(block: gemmi.cif.Block, source: str) -> tuple[list[gemmi.Op], str]:
    """Space-group operations (centring included) from the symop list, else Hall, H-M or IT number."""
    hm = _first_value(block, _HM_TAGS) or ""
    for tag in _SYMOP_TAGS:
        triplets = _column(block, tag)
        if triplets:
            try:
                ops = [gemmi.Op(gemmi.cif.as_string(t).replace(" ", "").lower()) for t in triplets]
            except (RuntimeError, ValueError) as exc:
                raise CurationError("parse_error", f"bad symmetry operation in {tag}: {exc}", source) from exc
            return ops, hm
    hall = _first_value(block, _HALL_TAGS)
    if hall is not None:
        try:
            return list(gemmi.symops_from_hall(hall)), hm
        except (RuntimeError, ValueError):
            pass
    spacegroup = gemmi.find_spacegroup_by_name(hm) if hm else None
    if spacegroup is None and (number := _first_value(block, _NUMBER_TAGS)) is not None:
        try:
            spacegroup = gemmi.find_spacegroup_by_number(int(float(number)))
        except (RuntimeError, ValueError):
            spacegroup = None
    if spacegroup is None:
        raise CurationError("parse_error", "no symmetry operations, Hall or H-M symbol", source)
    return list(spacegroup.operations()), hm or spacegroup.hm


def _operations_to_arrays(ops: list[gemmi.Op]) -> tuple[np.ndarray, np.ndarray]:
    """Rotations [K, 3, 3] and translations [K, 3] in [0, 1), identity first, duplicates removed."""
    rotations = np.array([op.rot for op in ops], dtype=np.float64) / gemmi.Op.DEN
    translations = np.array([op.tran for op in ops], dtype=np.float64) / gemmi.Op.DEN
    translations -= np.floor(translations)
    keys = np.concatenate([rotations.reshape(-1, 9), np.round(translations * 24) % 24], axis=1)
    _, first = np.unique(np.round(keys, 6), axis=0, return_index=True)
    order = np.sort(first)
    rotations, translations = rotations[order], translations[order]
    is_identity = np.all(np.isclose(rotations, np.eye(3)), axis=(1, 2)) & np.all(np.isclose(translations, 0.0), axis=1)
    if is_identity.any():
        front = int(np.argmax(is_identity))
        perm = [front] + [k for k in range(len(order)) if k != front]
        rotations, translations = rotations[perm], translations[perm]
    return rotations, translations


def _lattice(block: gemmi.cif.Block, source: str) -> np.ndarray:
    """Lattice [3, 3] with a, b, c as rows (a along x, b in the xy plane); absent angles are 90° (CIF default)."""
    values = [gemmi.cif.as_number(block.find_value(tag)) if block.find_value(tag) else math.nan for tag in _CELL_TAGS]
    values[3:] = [90.0 if math.isnan(angle) else angle for angle in values[3:]]
    if any(math.isnan(v) or v <= 0 for v in values):
        raise CurationError("parse_error", "missing or invalid cell parameters", source)
    cell = gemmi.UnitCell(*values)
    if not cell.volume > 0 or math.isnan(cell.volume):
        raise CurationError("parse_error", "cell parameters give no volume", source)
    return np.array(cell.orth.mat.tolist(), dtype=np.float64).T


def _crystal_from_block(block: gemmi.cif.Block, name: str, source: str, where: str) -> Crystal:
    """Build one Crystal from a data block that has ``_atom_site_fract_*``; errors name ``where``."""
    labels = _column(block, "_atom_site_label")
    coords = [_column(block, f"_atom_site_fract_{axis}") for axis in "xyz"]
    if labels is None or any(c is None for c in coords) or not all(len(c) == len(labels) for c in coords):
        raise CurationError("parse_error", "no complete _atom_site_label/_atom_site_fract_* loop", where)
    n_atoms = len(labels)
    frac = np.array([[gemmi.cif.as_number(c[i]) for c in coords] for i in range(n_atoms)], dtype=np.float64)
    keep = ~np.isnan(frac).any(axis=1)
    if not keep.any():
        raise CurationError("parse_error", "no atom with known fractional coordinates", where)
    labels = [gemmi.cif.as_string(label) for label in labels]

    type_symbols = _column(block, "_atom_site_type_symbol", n_atoms)
    in_formula = formula_elements(_first_value(block, ("_chemical_formula_sum",)) or "")
    numbers = np.zeros(n_atoms, dtype=np.int64)
    for i, label in enumerate(labels):
        symbol = gemmi.cif.as_string(type_symbols[i]) if type_symbols is not None else "?"
        numbers[i] = element_from_type_symbol(symbol) if symbol not in ("?", ".") else 0
        if numbers[i] == 0:
            numbers[i] = element_from_label(label, in_formula)

    occupancy_column = _column(block, "_atom_site_occupancy", n_atoms)
    occupancies = np.ones(n_atoms)
    if occupancy_column is not None:
        parsed = np.array([gemmi.cif.as_number(v) for v in occupancy_column], dtype=np.float64)
        occupancies = np.where(np.isnan(parsed), 1.0, parsed)

    calc_flags = _column(block, "_atom_site_calc_flag", n_atoms)
    if calc_flags is not None:
        keep &= np.array([gemmi.cif.as_string(f).lower() != "dum" for f in calc_flags])

    ops, hm = _symmetry_operations(block, where)
    rotations, translations = _operations_to_arrays(ops)
    return Crystal(
        name=name,
        source=source,
        lattice=_lattice(block, where),
        rotations=rotations,
        translations=translations,
        numbers=numbers[keep],
        frac=frac[keep],
        occupancies=occupancies[keep],
        labels=[label for label, k in zip(labels, keep, strict=True) if k],
        spacegroup=hm,
    )


def read_cif(path: str | Path) -> list[Crystal]:
    """Read every data block of a CIF file that has atom sites, one :class:`Crystal` each.

    Crystal names are the file stem (``1000034``), or ``stem/block`` when the file has several blocks
    with atom sites. Atoms without coordinates are left out; atoms whose element cannot be told from the
    type symbol or the label get atomic number 0 (the selection rejects them). Raises
    ``CurationError("parse_error")`` naming the file when it cannot be read or holds no atom sites.
    """
    path = Path(path)
    try:
        document = gemmi.cif.read_file(str(path))
    except (RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise CurationError("parse_error", f"unreadable CIF: {exc}", source=str(path)) from exc
    blocks = [block for block in document if len(block.find_values("_atom_site_fract_x")) > 0]
    if not blocks:
        raise CurationError("parse_error", "no data block with atom sites", source=str(path))
    crystals = []
    for block in blocks:
        name = path.stem if len(blocks) == 1 else f"{path.stem}/{block.name}"
        where = str(path) if len(blocks) == 1 else f"{path} (data_{block.name})"
        crystals.append(_crystal_from_block(block, name, str(path), where))
    return crystals
