"""Hostile and benign variants of real CIFs, for the curation robustness tests.

A :class:`Mutation` turns the text of a CIF into the bytes of a variant file, drawing every choice (which atom,
which value, where to cut) from a seeded ``random.Random``. A benign mutation (``reasons=None``) must curate
exactly as the original; any other must be rejected with one of its ``reasons``. The source files are bundled
COD CIFs with one loop row per line, which the line-based edits below rely on (and check).
"""

from __future__ import annotations

import gzip
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from crystalflow_core.data.sources import bundled_cod_directory

#: Small, quick bundled crystals with an explicit symmetry-operation loop, a Hall symbol and a formula sum.
SOURCES = ("1504385", "2019369", "4507991", "2105702")
#: Rejections of the selection that a file which lost atoms may end with (which one depends on the atoms lost).
LOST_ATOMS = frozenset({"formula_mismatch", "multiple_species", "z_prime_gt_1", "no_carbon", "polymeric"})
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")
_SYMOP_TAGS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz")
_SYMMETRY_ITEMS = re.compile(r"^_(symmetry|space_group)_(space_group_)?(name_H-M|name_Hall|Int_Tables|IT_number)")


def source_text(cod_id: str) -> str:
    return gzip.decompress((bundled_cod_directory() / f"{cod_id}.cif.gz").read_bytes()).decode()


@dataclass(frozen=True)
class Loop:
    """A loop of a CIF split into lines: ``tags``, the line of ``loop_`` and the lines of its rows."""

    tags: list[str]
    start: int
    rows: range

    def row(self, lines: list[str], index: int) -> list[str]:
        tokens = _TOKEN.findall(lines[index])
        assert len(tokens) == len(self.tags), f"not one row per line: {lines[index]!r}"
        return tokens


def find_loop(lines: list[str], tags: tuple[str, ...]) -> Loop:
    """The loop that holds one of ``tags``."""
    tag_line = next(i for i, line in enumerate(lines) if line.strip() in tags)
    start = max(i for i in range(tag_line) if lines[i].strip() == "loop_")
    end = start + 1
    while lines[end].startswith("_"):
        end += 1
    last = end
    while last < len(lines) and lines[last].strip() and not lines[last].startswith(("_", "loop_", "data_", "#", ";")):
        last += 1
    return Loop([line.strip() for line in lines[start + 1 : end]], start, range(end, last))


def _atoms(lines: list[str]) -> Loop:
    return find_loop(lines, ("_atom_site_label",))


def _join(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _set_cell(lines: list[str], values: dict[str, str]) -> bytes:
    """Replace the values of single ``_cell_*`` items."""
    out = []
    for line in lines:
        tag = line.split()[0] if line.startswith("_cell_") else ""
        out.append(f"{tag} {values[tag]}" if tag in values else line)
    return _join(out)


def _scale_cell(lines: list[str], factor: float) -> bytes:
    lengths = {}
    for line in lines:
        if line.startswith("_cell_length_"):
            tag, value = line.split()[:2]
            lengths[tag] = f"{float(value.split('(')[0]) * factor:.6g}"
    return _set_cell(lines, lengths)


def _replace_in_row(lines: list[str], loop: Loop, index: int, column: str, value: str) -> None:
    tokens = loop.row(lines, index)
    tokens[loop.tags.index(column)] = value
    lines[index] = " ".join(tokens)


def _random_row(loop: Loop, rng: random.Random) -> int:
    return rng.choice(loop.rows)


def _element_of(lines: list[str], loop: Loop, index: int) -> str:
    tokens = loop.row(lines, index)
    if "_atom_site_type_symbol" in loop.tags:
        return tokens[loop.tags.index("_atom_site_type_symbol")]
    return re.match(r"[A-Z][a-z]?", tokens[0]).group(0)


# --- benign -------------------------------------------------------------------------------------------------


def crlf(text: str, rng: random.Random) -> bytes:
    return text.replace("\n", "\r\n").encode()


def byte_order_mark(text: str, rng: random.Random) -> bytes:
    return b"\xef\xbb\xbf" + text.encode()


def bom_and_crlf(text: str, rng: random.Random) -> bytes:
    return b"\xef\xbb\xbf" + crlf(text, rng)


def comment_lines(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 20)):
        lines.insert(rng.randint(1, len(lines)), f"# remark {rng.random()} with 'quotes' and data_ loop_ words")
    return _join(lines)


def trailing_comments(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    atoms = _atoms(lines)
    for index in rng.sample(list(atoms.rows), k=min(3, len(atoms.rows))):
        lines[index] += "  # checked"
    return _join(lines)


def trailing_blank_lines(text: str, rng: random.Random) -> bytes:
    return (text + "\n" * rng.randint(1, 50) + " \t \n" * rng.randint(0, 5)).encode()


def blank_lines_between_rows(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    atoms = _atoms(lines)
    for index in sorted(rng.sample(list(atoms.rows)[1:], k=min(2, len(atoms.rows) - 1)), reverse=True):
        lines.insert(index, "")
    return _join(lines)


def tabs_in_rows(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    atoms = _atoms(lines)
    for index in atoms.rows:
        lines[index] = "\t".join(atoms.row(lines, index))
    return _join(lines)


def huge_text_field(text: str, rng: random.Random, size: int = 200_000) -> bytes:
    """A long ``_publ_section_comment`` text field (embedded reflection files make real CIFs megabytes long)."""
    lines = text.splitlines()
    body = "\n".join(f"{rng.random():.17f} {'x' * 70}" for _ in range(size // 90))
    after = next(i for i, line in enumerate(lines) if line.startswith("data_")) + 1
    lines[after:after] = ["_publ_section_comment", ";", body, ";"]
    return _join(lines)


def unwrapped_coordinate(text: str, rng: random.Random) -> bytes:
    """One coordinate moved by whole cells (+1 to +3): the same crystal, written unwrapped."""
    lines = text.splitlines()
    atoms = _atoms(lines)
    index = _random_row(atoms, rng)
    column = rng.choice(["_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z"])
    value = float(atoms.row(lines, index)[atoms.tags.index(column)].split("(")[0])
    _replace_in_row(lines, atoms, index, column, repr(value + rng.randint(1, 3)))
    return _join(lines)


# --- hostile ------------------------------------------------------------------------------------------------


def empty(text: str, rng: random.Random) -> bytes:
    return b""


def whitespace_only(text: str, rng: random.Random) -> bytes:
    return b"\n \n\t\n" * rng.randint(1, 10)


def binary(text: str, rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096)))


def truncated_in_atom_row(text: str, rng: random.Random) -> bytes:
    """Cut after the first value of an atom row: the loop no longer has whole rows."""
    lines = text.splitlines()
    index = _random_row(_atoms(lines), rng)
    return _join(lines[:index] + [lines[index].split()[0]])


def truncated_between_atom_rows(text: str, rng: random.Random) -> bytes:
    """Cut after a whole atom row, so later atoms are lost."""
    lines = text.splitlines()
    atoms = _atoms(lines)
    return _join(lines[: rng.randint(atoms.rows.start + 1, atoms.rows.stop - 1)])


def truncated_before_atoms(text: str, rng: random.Random) -> bytes:
    """Cut anywhere before the atom loop, possibly inside a quoted string, a text field or a tag."""
    cut = rng.randint(0, text.index("_atom_site_label"))
    return text[:cut].encode()


def missing_cell_length(text: str, rng: random.Random) -> bytes:
    tag = rng.choice(["_cell_length_a", "_cell_length_b", "_cell_length_c"])
    return _join([line for line in text.splitlines() if not line.startswith(tag)])


def _bad_length(value: str) -> Callable[[str, random.Random], bytes]:
    def mutate(text: str, rng: random.Random) -> bytes:
        tag = rng.choice(["_cell_length_a", "_cell_length_b", "_cell_length_c"])
        return _set_cell(text.splitlines(), {tag: value})

    return mutate


def degenerate_angles(text: str, rng: random.Random) -> bytes:
    """Angles that give no cell: flat (summing to 360°), impossible (60, 60, 150) or 0 or 180 degrees."""
    angles = rng.choice([("120", "120", "120"), ("60", "60", "150"), ("0", "90", "90"), ("90", "180", "90")])
    tags = ("_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
    return _set_cell(text.splitlines(), dict(zip(tags, angles, strict=True)))


def tiny_cell(text: str, rng: random.Random) -> bytes:
    return _scale_cell(text.splitlines(), 10 ** -rng.uniform(2, 30))


def huge_cell(text: str, rng: random.Random) -> bytes:
    return _scale_cell(text.splitlines(), 10 ** rng.uniform(3, 30))


def stretched_cell(text: str, rng: random.Random) -> bytes:
    """A cell 30-60 times too long but still searchable: every bond breaks and the atoms drift apart."""
    return _scale_cell(text.splitlines(), rng.uniform(30, 60))


def squeezed_cell(text: str, rng: random.Random) -> bytes:
    """A cell less than half its size: atoms overlap."""
    return _scale_cell(text.splitlines(), rng.uniform(0.3, 0.45))


def no_symmetry(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    symops = find_loop(lines, _SYMOP_TAGS)
    kept = lines[: symops.start] + lines[symops.rows.stop :]
    return _join([line for line in kept if not _SYMMETRY_ITEMS.match(line)])


def _symop_rows(lines: list[str]) -> Loop:
    return find_loop(lines, _SYMOP_TAGS)


def _replace_symop(lines: list[str], index: int, triplet: str) -> None:
    symops = _symop_rows(lines)
    column = next(tag for tag in symops.tags if tag in _SYMOP_TAGS)
    _replace_in_row(lines, symops, index, column, f"'{triplet}'")


def symop_division_by_zero(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    index = rng.choice(_symop_rows(lines).rows)
    _replace_symop(lines, index, rng.choice(["x/0,y,z", "x+1/0,y,z", "-x,y+1/0,-z", "x,y,z/0"]))
    return _join(lines)


def symop_malformed(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    index = rng.choice(_symop_rows(lines).rows)
    _replace_symop(lines, index, rng.choice(["x,y", "x,y,z,t", "2x,y,z", "foo", "x,,z", "x*y,y,z", "x+y+z,y,z"]))
    return _join(lines)


def symop_dropped(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    del lines[rng.choice(_symop_rows(lines).rows)]
    return _join(lines)


def _bad_coordinate(values: tuple[str, ...]) -> Callable[[str, random.Random], bytes]:
    def mutate(text: str, rng: random.Random) -> bytes:
        lines = text.splitlines()
        atoms = _atoms(lines)
        column = rng.choice(["_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z"])
        _replace_in_row(lines, atoms, _random_row(atoms, rng), column, rng.choice(values))
        return _join(lines)

    return mutate


def huge_coordinate_text(text: str, rng: random.Random) -> bytes:
    """A coordinate written with 100,000 digits: overflows to infinity (and must not flood the manifest)."""
    return _bad_coordinate(("9" * 100_000,))(text, rng)


def unknown_element(text: str, rng: random.Random) -> bytes:
    """A non-carbon atom turned into the unknown element Xx (label and type symbol)."""
    lines = text.splitlines()
    atoms = _atoms(lines)
    index = rng.choice([i for i in atoms.rows if _element_of(lines, atoms, i) != "C"])
    _replace_in_row(lines, atoms, index, "_atom_site_label", f"Xx{rng.randint(1, 99)}")
    if "_atom_site_type_symbol" in atoms.tags:
        _replace_in_row(lines, atoms, index, "_atom_site_type_symbol", "Xx")
    return _join(lines)


def short_row(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    atoms = _atoms(lines)
    index = _random_row(atoms, rng)
    tokens = atoms.row(lines, index)
    del tokens[rng.randrange(len(tokens))]
    lines[index] = " ".join(tokens)
    return _join(lines)


def long_row(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    index = _random_row(_atoms(lines), rng)
    lines[index] += " 0.5"
    return _join(lines)


def duplicated_atom_site(text: str, rng: random.Random) -> bytes:
    """One atom listed twice, under a new label, possibly shifted by a whole cell."""
    lines = text.splitlines()
    atoms = _atoms(lines)
    index = _random_row(atoms, rng)
    lines.insert(index + 1, lines[index])
    _replace_in_row(lines, atoms, index + 1, "_atom_site_label", f"{_element_of(lines, atoms, index)}99")
    if rng.random() < 0.5:
        x = atoms.row(lines, index)[atoms.tags.index("_atom_site_fract_x")]
        _replace_in_row(lines, atoms, index + 1, "_atom_site_fract_x", repr(float(x.split("(")[0]) + 1))
    return _join(lines)


def no_atom_loop(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    atoms = _atoms(lines)
    return _join(lines[: atoms.start] + lines[atoms.rows.stop :])


def hydrogen_only(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    atoms = _atoms(lines)
    for number, index in enumerate(atoms.rows, start=1):
        _replace_in_row(lines, atoms, index, "_atom_site_label", f"H{number}")
        if "_atom_site_type_symbol" in atoms.tags:
            _replace_in_row(lines, atoms, index, "_atom_site_type_symbol", "H")
    return _join(lines)


@dataclass(frozen=True)
class Mutation:
    """A named variant: ``reasons`` None for a benign one, else the reason codes that may reject it.

    ``exact``: a benign variant that keeps every number as written, so its clusters are byte-identical.
    """

    name: str
    apply: Callable[[str, random.Random], bytes]
    reasons: frozenset[str] | None = None
    exact: bool = True
    suffix: str = ".cif"


def _gzip(text: str, rng: random.Random) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


def _rejected(*reasons: str) -> frozenset[str]:
    return frozenset(reasons)


MUTATIONS = (
    Mutation("crlf", crlf),
    Mutation("bom", byte_order_mark),
    Mutation("bom_crlf", bom_and_crlf),
    Mutation("comments", comment_lines),
    Mutation("trailing_comments", trailing_comments),
    Mutation("trailing_blank_lines", trailing_blank_lines),
    Mutation("blank_lines", blank_lines_between_rows),
    Mutation("tabs", tabs_in_rows),
    Mutation("huge_text_field", huge_text_field),
    Mutation("gzip", _gzip, suffix=".cif.gz"),
    Mutation("unwrapped_coordinate", unwrapped_coordinate, exact=False),
    Mutation("empty", empty, _rejected("parse_error")),
    Mutation("whitespace_only", whitespace_only, _rejected("parse_error")),
    Mutation("binary", binary, _rejected("parse_error")),
    Mutation("truncated_in_atom_row", truncated_in_atom_row, _rejected("parse_error")),
    Mutation("truncated_between_atom_rows", truncated_between_atom_rows, LOST_ATOMS),
    Mutation("truncated_before_atoms", truncated_before_atoms, _rejected("no_atoms", "parse_error")),
    Mutation("missing_cell_length", missing_cell_length, _rejected("bad_cell")),
    Mutation("zero_cell_length", _bad_length("0"), _rejected("bad_cell")),
    Mutation("negative_cell_length", _bad_length("-5.2(3)"), _rejected("bad_cell")),
    Mutation("text_cell_length", _bad_length("abc"), _rejected("bad_cell")),
    Mutation("unknown_cell_length", _bad_length("?"), _rejected("bad_cell")),
    Mutation("nan_cell_length", _bad_length("nan"), _rejected("bad_cell")),
    Mutation("degenerate_angles", degenerate_angles, _rejected("bad_cell")),
    Mutation("tiny_cell", tiny_cell, _rejected("bad_cell")),
    Mutation("huge_cell", huge_cell, _rejected("bad_cell")),
    Mutation("stretched_cell", stretched_cell, _rejected("multiple_species")),
    Mutation("squeezed_cell", squeezed_cell, _rejected("bad_geometry", "bad_cell")),
    Mutation("no_symmetry", no_symmetry, _rejected("bad_symmetry")),
    Mutation("symop_division_by_zero", symop_division_by_zero, _rejected("bad_symmetry")),
    Mutation("symop_malformed", symop_malformed, _rejected("bad_symmetry")),
    Mutation("symop_dropped", symop_dropped, _rejected("bad_symmetry")),
    Mutation("nan_coordinate", _bad_coordinate(("nan", "NaN", "-nan")), _rejected("bad_coordinate")),
    Mutation("inf_coordinate", _bad_coordinate(("inf", "-inf", "Infinity", "1e999")), _rejected("bad_coordinate")),
    Mutation("unknown_coordinate", _bad_coordinate(("?", ".")), _rejected("bad_coordinate")),
    Mutation("absurd_coordinate", _bad_coordinate(("1e30", "-1e30", "12345.6", "11")), _rejected("bad_coordinate")),
    Mutation("text_coordinate", _bad_coordinate(("abc", "0.1.2", "x")), _rejected("bad_coordinate")),
    Mutation("huge_coordinate_text", huge_coordinate_text, _rejected("bad_coordinate")),
    Mutation("unknown_element", unknown_element, _rejected("unknown_element")),
    Mutation("short_row", short_row, _rejected("parse_error")),
    Mutation("long_row", long_row, _rejected("parse_error")),
    Mutation("duplicated_atom_site", duplicated_atom_site, _rejected("duplicate_site")),
    Mutation("no_atom_loop", no_atom_loop, _rejected("no_atoms")),
    Mutation("hydrogen_only", hydrogen_only, _rejected("hydrogen_only")),
)
