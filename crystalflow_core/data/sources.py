"""Where crystal structures come from: CIF directories, the bundled COD CIFs and pyxtal's CSD crystals.

A :class:`StructureRef` is a small picklable handle (id, source, location) so curation can fan out over
processes; :func:`load_crystals` turns it into :class:`~crystalflow_core.data.crystal.Crystal` objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import CurationError
from .cif import read_cif_blocks
from .crystal import Crystal, crystal_from_ase

PYXTAL_DATABASES = ("test.db", "mech.db")
CIF_SUFFIXES = (".cif", ".cif.gz")


@dataclass(frozen=True)
class StructureRef:
    """One input structure: ``id`` is unique across sources and safe as a file-name stem."""

    id: str
    source: str
    location: str
    row: int | None = None


def _cif_stem(path: Path) -> str:
    name = path.name
    for suffix in CIF_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def cif_directory_refs(directory: str | Path, source: str = "cif") -> Iterator[StructureRef]:
    """Every ``*.cif`` / ``*.cif.gz`` file below ``directory`` (a COD mirror is fine), in sorted path order.

    The files are streamed, not listed first: only one sorted directory listing per level of the tree is held
    (COD's ``1/00/00/1000000.cif`` layout: a hundred entries or fewer each).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory of CIF files")
    return (StructureRef(id=_cif_stem(path), source=source, location=str(path)) for path in _cif_files(directory))


def _cif_files(directory: Path) -> Iterator[Path]:
    """CIF files below ``directory``, entries sorted by name in each directory (the order of sorting whole paths);
    links to directories are not followed, so a link cycle cannot trap the walk."""
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _cif_files(Path(entry.path))
        elif entry.name.endswith(CIF_SUFFIXES) and entry.is_file():
            yield Path(entry.path)


def bundled_cod_directory() -> Path:
    """The COD CIFs shipped with the package (public domain; gzip-compressed)."""
    return Path(str(resources.files("crystalflow_core.data") / "bundled" / "cod"))


def pyxtal_refs() -> list[StructureRef]:
    """Experimental CSD molecular crystals shipped in pyxtal's ASE databases (test.db: 100, mech.db: 50)."""
    import pyxtal
    from ase.db import connect

    database_dir = Path(pyxtal.__file__).parent / "database"
    refs = []
    for name in PYXTAL_DATABASES:
        path = database_dir / name
        with connect(str(path)) as db:
            for row in db.select():
                code = row.key_value_pairs.get("csd_code", f"{path.stem}-{row.id}")
                refs.append(StructureRef(id=f"CSD-{code}", source=f"pyxtal/{name}", location=str(path), row=row.id))
    return refs


def default_refs() -> list[StructureRef]:
    """The bundled default: COD CIFs shipped with the package, then pyxtal's CSD crystals (duplicate ids dropped)."""
    refs = list(cif_directory_refs(bundled_cod_directory(), source="cod"))
    seen = {ref.id for ref in refs}
    for ref in pyxtal_refs():
        if ref.id not in seen:
            seen.add(ref.id)
            refs.append(ref)
    return refs


#: Sources known by name; any other source is a directory of CIF files.
NAMED_SOURCES = {"default": default_refs, "pyxtal": pyxtal_refs}


def resolve_refs(source: str | Path) -> Iterator[StructureRef]:
    """``"default"`` → :func:`default_refs`; ``"pyxtal"`` → :func:`pyxtal_refs`; otherwise a CIF directory (streamed,
    see :func:`cif_directory_refs`)."""
    named = NAMED_SOURCES.get(str(source))
    return iter(named()) if named is not None else cif_directory_refs(source)


def load_crystals(ref: StructureRef) -> list[Crystal | CurationError]:
    """The crystal, or the error that rejects it, of each data block a reference points to.

    Raises :class:`CurationError` naming the file when the file itself cannot be read.
    """
    if ref.row is None:
        return read_cif_blocks(ref.location)
    from ase.db import connect

    try:
        with connect(ref.location) as db:
            atoms = db.get(id=ref.row).toatoms()
    except (KeyError, OSError, ValueError) as error:
        raise CurationError("parse_error", f"cannot read row {ref.row}: {error}", source=ref.location) from error
    return [crystal_from_ase(atoms, name=ref.id, source=ref.source)]
