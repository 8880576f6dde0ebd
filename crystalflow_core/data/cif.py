"""Read CIF data blocks into :class:`Crystal` objects with gemmi (symmetry, cell, asymmetric unit).

A value that cannot be trusted rejects its data block with a :class:`CurationError` naming the file, the block
and the value: an unknown or non-finite coordinate is never dropped, defaulted or wrapped into the cell, and a set
of symmetry operations that is not a space group of the cell is never expanded.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from pathlib import Path

import gemmi
import numpy as np

from crystalflow_core.data.crystal import Crystal, check_lattice
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
_LENGTH_TAGS = ("_cell_length_a", "_cell_length_b", "_cell_length_c")
_ANGLE_TAGS = ("_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
#: Columns of the atom-site loop, in the order :func:`_atom_sites` reads them; ``?`` marks optional ones.
_ATOM_SITE_COLUMNS = ("label", "fract_x", "fract_y", "fract_z", "?type_symbol", "?occupancy", "?calc_flag")
_ELEMENT_START = re.compile(r"[A-Za-z]+")
_FORMULA_TERM = re.compile(r"([A-Z][a-z]?)(\d+(?:\.\d*)?|\.\d+)?")
_UTF8_BOM = b"\xef\xbb\xbf"
_UNKNOWN = ("?", ".")
#: A fractional coordinate further than this from the cell is a corrupt value, not an unwrapped position
#: (the 575 reference files stay within 2.4).
MAX_FRACTIONAL = 10.0
#: The most distinct operations a space group has (Fm-3m with its centring translations).
MAX_OPERATIONS = 192
#: An operation must map the cell's metric onto itself within this (relative, per metric entry).
METRIC_TOLERANCE = 0.01
#: Longest text quoted from a file in an error message.
_QUOTE_LIMIT = 40


def _quote(text: str) -> str:
    """``text`` for an error message, shortened: a hostile file may hold megabytes in one value."""
    return repr(text if len(text) <= _QUOTE_LIMIT else text[:_QUOTE_LIMIT] + "…")


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


def formula_counts(formula: str) -> dict[int, float] | None:
    """Atom counts ``{atomic number: count}`` of a ``_chemical_formula_sum`` such as ``'C10.5 H12 N O2'``.

    None when the text is not a plain sum of element symbols with optional counts (``?``, moiety notation with
    brackets, unknown symbols): such a formula cannot be checked.
    """
    counts: dict[int, float] = {}
    for term in formula.split():
        match = _FORMULA_TERM.fullmatch(term)
        number = _element_number(match.group(1)) if match else 0
        if not number:
            return None
        counts[number] = counts.get(number, 0.0) + float(match.group(2) or 1)
    return counts or None


def _first_value(block: gemmi.cif.Block, tags: tuple[str, ...]) -> str | None:
    """First defined (not ``?``/``.``) value among ``tags``."""
    for tag in tags:
        value = block.find_value(tag)
        if value is not None:
            text = gemmi.cif.as_string(value).strip()
            if text and text not in _UNKNOWN:
                return text
    return None


def _parse_operation(triplet: str, tag: str, where: str) -> gemmi.Op:
    text = gemmi.cif.as_string(triplet).replace(" ", "").lower()
    try:
        return gemmi.Op(text)
    except (RuntimeError, ValueError) as exc:
        raise CurationError("bad_symmetry", f"{tag} {_quote(text)}: {exc}", where) from exc


def _named_group(block: gemmi.cif.Block) -> tuple[int, str] | None:
    """Order of the space group that the Hall, else the H-M symbol names, and that symbol; None if neither."""
    hall = _first_value(block, _HALL_TAGS)
    if hall is not None:
        try:
            return len(gemmi.symops_from_hall(hall)), f"Hall symbol {_quote(hall)}"
        except (RuntimeError, ValueError):
            pass
    hm = _first_value(block, _HM_TAGS)
    spacegroup = gemmi.find_spacegroup_by_name(hm) if hm else None
    return None if spacegroup is None else (len(spacegroup.operations()), f"H-M symbol {_quote(hm)}")


def _symmetry_operations(block: gemmi.cif.Block, where: str) -> tuple[list[gemmi.Op], str]:
    """Distinct space-group operations (centring included) from the symop list, else Hall, H-M or IT number.

    A symop list must have as many operations as the group its Hall or H-M symbol names: a shorter list has
    lost lines (a dropped centring translation, a list of identities), which a group check alone cannot see.
    """
    hm = _first_value(block, _HM_TAGS) or ""
    for tag in _SYMOP_TAGS:
        triplets = block.find_values(tag)
        if len(triplets):
            ops = _distinct([_parse_operation(t, tag, where) for t in triplets])
            named = _named_group(block)
            if named is not None and named[0] != len(ops):
                detail = f"{tag} lists {len(ops)} distinct operations, the {named[1]} has {named[0]}"
                raise CurationError("bad_symmetry", detail, where)
            return ops, hm
    hall = _first_value(block, _HALL_TAGS)
    if hall is not None:
        try:
            return _distinct(list(gemmi.symops_from_hall(hall))), hm
        except (RuntimeError, ValueError):
            pass
    spacegroup = gemmi.find_spacegroup_by_name(hm) if hm else None
    if spacegroup is None and (number := _first_value(block, _NUMBER_TAGS)) is not None:
        try:
            spacegroup = gemmi.find_spacegroup_by_number(int(float(number)))
        except (RuntimeError, ValueError, OverflowError):
            spacegroup = None
    if spacegroup is None:
        raise CurationError("bad_symmetry", "no symmetry operations, Hall or H-M symbol", where)
    return _distinct(list(spacegroup.operations())), hm or spacegroup.hm


def _operation_key(op: gemmi.Op) -> tuple:
    wrapped = op.wrap()
    return tuple(map(tuple, wrapped.rot)), tuple(wrapped.tran)


def _check_group(ops: list[gemmi.Op], lattice: np.ndarray, where: str) -> None:
    """Refuse operations that are not a space group of this cell: an operation with a rotation part that is not
    an integer matrix of determinant ±1, a product of two operations missing from the list (a dropped or
    mistyped line), or an operation that distorts the cell's metric."""
    if len(ops) > MAX_OPERATIONS:
        detail = f"{len(ops)} distinct operations; a space group has at most {MAX_OPERATIONS}"
        raise CurationError("bad_symmetry", detail, where)
    for op in ops:
        if any(v % gemmi.Op.DEN for row in op.rot for v in row) or abs(op.det_rot()) != gemmi.Op.DEN**3:
            raise CurationError("bad_symmetry", f"{op.triplet()} is not a crystallographic operation", where)
    keys = {_operation_key(op) for op in ops}
    for first in ops:
        for second in ops:
            if _operation_key(first * second) not in keys:
                product = (first * second).wrap().triplet()
                detail = f"not a group: {first.triplet()} times {second.triplet()} gives {product}, not listed"
                raise CurationError("bad_symmetry", detail, where)
    metric = lattice @ lattice.T
    scale = np.sqrt(np.outer(np.diag(metric), np.diag(metric)))
    for op in ops:
        rotation = np.array(op.rot, dtype=np.float64) / gemmi.Op.DEN
        if np.abs((rotation.T @ metric @ rotation - metric) / scale).max() > METRIC_TOLERANCE:
            raise CurationError("bad_symmetry", f"{op.triplet()} does not map the cell onto itself", where)


def _operations_to_arrays(ops: list[gemmi.Op]) -> tuple[np.ndarray, np.ndarray]:
    """Rotations [K, 3, 3] and translations [K, 3] in [0, 1) of a group's operations, identity first."""
    identity = _operation_key(gemmi.Op())
    ops = sorted(ops, key=lambda op: _operation_key(op) != identity)  # stable: the file's order otherwise
    rotations = np.array([op.rot for op in ops], dtype=np.float64) / gemmi.Op.DEN
    translations = np.array([op.wrap().tran for op in ops], dtype=np.float64) / gemmi.Op.DEN
    return rotations, translations


def _distinct(ops: list[gemmi.Op]) -> list[gemmi.Op]:
    """The operations without repeats (equal up to lattice translations), in the order they first appear."""
    first: dict[tuple, gemmi.Op] = {}
    for op in ops:
        first.setdefault(_operation_key(op), op)
    return list(first.values())


def _cell_value(block: gemmi.cif.Block, tag: str, where: str) -> float:
    """One cell parameter; an absent or unknown angle is 90° (the CIF default), an absent length is an error."""
    raw = block.find_value(tag)
    if raw is None or raw in _UNKNOWN:
        if tag in _ANGLE_TAGS:
            return 90.0
        raise CurationError("bad_cell", f"no {tag}", where)
    value = gemmi.cif.as_number(raw)
    if not math.isfinite(value):
        raise CurationError("bad_cell", f"{tag} {_quote(raw)} is not a number", where)
    return value


def _lattice(block: gemmi.cif.Block, where: str) -> np.ndarray:
    """Lattice [3, 3] with a, b, c as rows (a along x, b in the xy plane)."""
    lengths = [_cell_value(block, tag, where) for tag in _LENGTH_TAGS]
    angles = [_cell_value(block, tag, where) for tag in _ANGLE_TAGS]
    if not all(v > 0 for v in lengths):
        raise CurationError("bad_cell", f"cell lengths {lengths} must be positive", where)
    if not all(0 < v < 180 for v in angles):
        raise CurationError("bad_cell", f"cell angles {angles} must lie strictly between 0 and 180 degrees", where)
    cell = gemmi.UnitCell(*lengths, *angles)
    if not cell.volume > 0:
        raise CurationError("bad_cell", f"cell angles {angles} give no cell (volume {cell.volume:g})", where)
    lattice = np.array(cell.orth.mat.tolist(), dtype=np.float64).T
    check_lattice(lattice, where)
    return lattice


def _coordinate(raw: str, label: str, axis: str, where: str) -> float:
    value = gemmi.cif.as_number(raw)
    if not math.isfinite(value):
        problem = "is not a number"
    elif abs(value) > MAX_FRACTIONAL:
        problem = f"is more than {MAX_FRACTIONAL:g} cells away"
    else:
        return value
    raise CurationError("bad_coordinate", f"atom {_quote(label)}: fract_{axis} {_quote(raw)} {problem}", where)


def _element(row: gemmi.cif.Table.Row, label: str, in_formula: frozenset[int]) -> int:
    """Atomic number from the type symbol, else the label; 0 when neither tells."""
    symbol = gemmi.cif.as_string(row[4]) if row.has(4) else "?"
    number = element_from_type_symbol(symbol) if symbol not in _UNKNOWN else 0
    return number or element_from_label(label, in_formula)


def _atom_sites(block: gemmi.cif.Block, where: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Labels, atomic numbers [M], fractional coordinates [M, 3] and occupancies [M] of the atom-site loop.

    Dummy sites (``_atom_site_calc_flag dum``) are not atoms and are left out; every other site must have finite
    coordinates. An atom whose element cannot be told gets atomic number 0, which the selection rejects
    (``unknown_element``) unless an earlier rule already does; an unknown occupancy is 1 (the CIF default).
    """
    table = block.find("_atom_site_", list(_ATOM_SITE_COLUMNS))
    if len(table) == 0:
        raise CurationError("parse_error", "no complete _atom_site_label/_atom_site_fract_* loop", where)
    in_formula = formula_elements(_first_value(block, ("_chemical_formula_sum",)) or "")
    labels, numbers, frac, occupancies = [], [], [], []
    for row in table:
        if row.has(6) and gemmi.cif.as_string(row[6]).lower() == "dum":
            continue
        label = gemmi.cif.as_string(row[0])
        labels.append(label)
        frac.append([_coordinate(row[k], label, axis, where) for k, axis in zip((1, 2, 3), "xyz", strict=True)])
        numbers.append(_element(row, label, in_formula))
        occupancy = gemmi.cif.as_number(row[5]) if row.has(5) else math.nan
        occupancies.append(1.0 if math.isnan(occupancy) else occupancy)
    if not labels:
        raise CurationError("no_atoms", "only dummy atom sites", where)
    return labels, np.array(numbers, dtype=np.int64), np.array(frac, dtype=np.float64), np.array(occupancies)


def _crystal_from_block(block: gemmi.cif.Block, name: str, source: str, where: str) -> Crystal:
    """Build one Crystal from a data block with atom sites; errors name ``where``."""
    lattice = _lattice(block, where)
    ops, hm = _symmetry_operations(block, where)
    _check_group(ops, lattice, where)
    rotations, translations = _operations_to_arrays(ops)
    labels, numbers, frac, occupancies = _atom_sites(block, where)
    return Crystal(
        name=name,
        source=source,
        lattice=lattice,
        rotations=rotations,
        translations=translations,
        numbers=numbers,
        frac=frac,
        occupancies=occupancies,
        labels=labels,
        spacegroup=hm,
        formula_sum=_first_value(block, ("_chemical_formula_sum",)) or "",
    )


def _read_document(path: Path) -> gemmi.cif.Document:
    """Parse a CIF, gzip-compressed or not; a leading UTF-8 byte-order mark (Windows editors write one) is skipped."""
    try:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        return gemmi.cif.read_string(data.removeprefix(_UTF8_BOM))
    except (OSError, EOFError, zlib.error, RuntimeError, ValueError) as exc:
        raise CurationError("parse_error", f"unreadable CIF: {exc}", source=str(path)) from exc


def _has_atom_sites(block: gemmi.cif.Block) -> bool:
    return len(block.find_values("_atom_site_label")) > 0 or len(block.find_values("_atom_site_fract_x")) > 0


def read_cif_blocks(path: str | Path) -> list[Crystal | CurationError]:
    """One :class:`Crystal`, or the :class:`CurationError` that rejects it, per data block with atom sites.

    Crystal names are the file stem (``1000034``), or ``stem/block`` when the file has several blocks with atom
    sites; a broken block costs only itself. Raises ``CurationError`` naming the file when the file itself
    cannot be read (``parse_error``) or no block has atom sites (``no_atoms``).
    """
    path = Path(path)
    document = _read_document(path)
    if len(document) == 0:
        raise CurationError("parse_error", "no CIF data block", source=str(path))
    blocks = [block for block in document if _has_atom_sites(block)]
    if not blocks:
        raise CurationError("no_atoms", "no data block with atom sites", source=str(path))
    outcomes: list[Crystal | CurationError] = []
    for block in blocks:
        name = path.stem if len(blocks) == 1 else f"{path.stem}/{block.name}"
        where = str(path) if len(blocks) == 1 else f"{path} (data_{block.name})"
        try:
            outcomes.append(_crystal_from_block(block, name, str(path), where))
        except CurationError as error:
            outcomes.append(error)
    return outcomes


def read_cif(path: str | Path) -> list[Crystal]:
    """Every data block of a CIF file that has atom sites, one :class:`Crystal` each (see :func:`read_cif_blocks`).

    Raises the first block's ``CurationError`` when any block is rejected.
    """
    outcomes = read_cif_blocks(path)
    for outcome in outcomes:
        if isinstance(outcome, CurationError):
            raise outcome
    return outcomes
