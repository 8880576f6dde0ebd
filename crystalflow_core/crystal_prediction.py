"""``crystalflow predict``: ranked crystal structures of a chemist's molecule.

The molecule (from :mod:`~crystalflow_core.molecule_input`) is searched as a rigid body by
:func:`~crystalflow_core.csp.search.search_crystals`; :func:`write_crystals` writes, per distinct crystal, a CIF
with its symmetry operations, its simulated powder pattern beside it, and the 17-molecule cluster cut from it in
the COD-Cluster17 layout with PDB and XYZ copies, plus ``ranking.csv`` and ``predict.json``. A known crystal of
the molecule (``reference``) adds how well each candidate matches it; a measured powder pattern re-ranks the
candidates by agreement with it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem

from . import export
from .csp import cif_writer, pxrd
from .csp.compare import CrystalReference, DifferentMoleculeError, cluster_of
from .csp.search import FoundCrystal, SearchResult, SearchSettings, search_crystals
from .data import codcluster17
from .data.molecules import MolecularCrystal
from .errors import InputError
from .files import atomic_open
from .molecule_input import molecule_name
from .settings import MAX_ATOMS

#: What a run writes under ``--out``; a rerun for the same molecule replaces exactly these.
OWNED = ("CIF", "PDB", "XYZ", "PredictedPositions", "ranking.csv", "predict.json")
RECORD = "predict.json"
CELL_COLUMNS = ("a", "b", "c", "alpha", "beta", "gamma")


@dataclass
class CrystalPrediction:
    """The ranked crystals of one molecule: ``name`` (InChIKey skeleton), the ``molecule``, the search
    ``result`` (crystals in final rank order) and the ``settings`` that reproduce it."""

    name: str
    molecule: Chem.Mol
    result: SearchResult
    settings: dict


def check_size(molecule: Chem.Mol, max_atoms: int = MAX_ATOMS) -> None:
    """Refuse, before any work, a molecule larger than the search is set to take."""
    n = molecule.GetNumAtoms()
    if n > max_atoms:
        raise InputError(
            f"the molecule has {n} atoms (hydrogens included), more than the {max_atoms} the search takes by "
            f"default (its time grows with the square of the atoms, a rigid conformer suits small molecules): "
            f"pass --max-atoms {n} to search anyway, with fewer --candidates to keep it short"
        )


def check_writable(out: Path) -> None:
    """Refuse, before any work, an ``out`` directory that cannot be made or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise InputError(f"--out {out}: cannot write there ({error.strerror or error})") from None


def claim_out(out: Path, name: str) -> list[str]:
    """Make ``out`` ready for the results of molecule ``name``: refused if it holds another molecule's results;
    what a previous run for the same molecule left is cleared, and returned."""
    check_writable(out)
    record = out / RECORD
    if record.is_file():
        try:
            previous = json.loads(record.read_text()).get("name")
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != name:
            raise InputError(
                f"--out {out}: holds the results of another molecule ({previous or 'unreadable ' + RECORD}); "
                "give an empty or new directory"
            )
    cleared = [entry for entry in OWNED if (out / entry).exists()]
    for entry in cleared:
        path = out / entry
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return cleared


def reference_for(reference: MolecularCrystal, molecule: Chem.Mol, source: str) -> CrystalReference:
    """The known crystal prepared for comparisons; refused if it holds another molecule."""
    numbers = np.array([atom.GetAtomicNum() for atom in molecule.GetAtoms()])
    try:
        return CrystalReference.build(reference, numbers, molecule.GetConformer().GetPositions())
    except DifferentMoleculeError as error:
        raise InputError(f"--reference {source}: not a crystal of this molecule ({error})") from None


def predict_crystals(
    molecule: Chem.Mol,
    settings: SearchSettings | None = None,
    reference: CrystalReference | None = None,
    pattern: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = True,
) -> CrystalPrediction:
    """Ranked crystals of ``molecule``: by lattice energy, or by agreement with a measured powder ``pattern``
    (2θ, intensity); each scored against ``reference`` when one is given."""
    settings = settings or SearchSettings()
    started = time.perf_counter()
    result = search_crystals(molecule, settings, progress=progress)
    if reference is not None:
        for found in result.crystals:
            found.scores.update(reference.compare(found.crystal))
    if pattern is not None and result.crystals:
        agreement = pxrd.rank_by_pattern(pattern, [found.crystal for found in result.crystals])
        for found, value in zip(result.crystals, agreement, strict=True):
            found.scores["pxrd_similarity"] = float(value)
        result.crystals.sort(key=lambda found: (-found.scores["pxrd_similarity"], found.energy))
    record = {
        **settings.to_dict(),
        "ranked_by": "pxrd_similarity" if pattern is not None else "energy",
        "generated": result.generated,
        "lost": result.lost,
        "unbound": result.unbound,
        "distinct": len(result.crystals),
        "stage_seconds": result.seconds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return CrystalPrediction(molecule_name(molecule), molecule, result, record)


def _write_one(out: Path, name: str, rank: int, found: FoundCrystal) -> dict:
    stem = f"{name}_rank{rank:03d}"
    crystal = found.crystal
    number, symbol = cif_writer.space_group(crystal)
    (out / "CIF").mkdir(parents=True, exist_ok=True)
    extra = {"_crystalflow_lattice_energy_kcal_per_mol": f"{found.energy:.4f}", "_crystalflow_rank": str(rank)}
    cif = cif_writer.write_cif(out / "CIF" / f"{stem}.cif", crystal, stem, extra)
    two_theta, intensity = pxrd.powder_pattern(crystal)
    pattern = pxrd.write_pattern(out / "CIF" / f"{stem}_pxrd.xy", two_theta, intensity)
    numbers, mol_index, x = cluster_of(crystal)
    cell = cif_writer.cell_parameters(crystal.crystal.lattice)
    codcluster17.write_positions_csv(codcluster17.prediction_path(out, name, rank - 1), numbers, mol_index, x)
    pdb = export.write_cluster_pdb(out / "PDB" / f"{stem}.pdb", numbers, mol_index, x)
    xyz = export.write_cluster_xyz(out / "XYZ" / f"{stem}.xyz", numbers, x)
    return {
        "rank": rank,
        "space_group": symbol,
        "space_group_number": number,
        "wyckoff": found.candidate.wyckoff,
        "z": crystal.z,
        **dict(zip(CELL_COLUMNS, np.round(np.concatenate(cell), 4).tolist(), strict=True)),
        "density": round(found.density, 4),
        "energy": round(found.energy, 4),
        "copies": found.copies,
        **{key: round(value, 4) for key, value in found.scores.items()},
        "cif": cif.relative_to(out).as_posix(),
        "pxrd": pattern.relative_to(out).as_posix(),
        "pdb": pdb.relative_to(out).as_posix(),
        "xyz": xyz.relative_to(out).as_posix(),
    }


def write_crystals(out_dir: str | Path, prediction: CrystalPrediction, keep: int | None = None) -> Path:
    """Write the first ``keep`` (all by default) ranked crystals under ``out_dir``; returns ``ranking.csv``."""
    from .records import git_revision  # records loads the training stack: only when writing

    out = Path(out_dir)
    crystals = prediction.result.crystals[:keep]
    rows = [_write_one(out, prediction.name, rank, found) for rank, found in enumerate(crystals, start=1)]
    with Chem.SDWriter(str(out / f"{prediction.name}_molecule.sdf")) as writer:
        writer.write(prediction.molecule)
    ranking = out / "ranking.csv"
    with atomic_open(ranking) as handle:
        pd.DataFrame(rows).to_csv(handle, index=False)
    with atomic_open(out / RECORD) as handle:
        record = {
            "name": prediction.name,
            "smiles": Chem.MolToSmiles(Chem.RemoveHs(prediction.molecule)),
            **prediction.settings,
            "written": len(rows),
            "git_revision": git_revision(),
        }
        json.dump(record, handle, indent=2)
    return ranking


def predict_into(
    out: Path,
    molecule: Chem.Mol,
    settings: SearchSettings,
    reference_path: Path | None = None,
    pattern_path: Path | None = None,
    keep: int | None = None,
    max_atoms: int = MAX_ATOMS,
    progress: bool = True,
) -> tuple[CrystalPrediction, Path, list[str]]:
    """What ``crystalflow predict`` and notebook 06 run: every input checked before any work (size, reference,
    measured pattern, ``out``), the search, and the crystals written to ``out``. Returns the prediction, the path
    of ``ranking.csv`` and what a previous run for the molecule left in ``out`` and was replaced."""
    from .molecule_input import read_crystal

    check_size(molecule, max_atoms)
    name = molecule_name(molecule)
    reference = None
    if reference_path is not None:
        reference = reference_for(read_crystal(reference_path), molecule, str(reference_path))
    pattern = pxrd.read_pattern(pattern_path) if pattern_path is not None else None
    cleared = claim_out(Path(out), name)
    prediction = predict_crystals(molecule, settings, reference=reference, pattern=pattern, progress=progress)
    if not prediction.result.crystals:
        raise InputError(f"no candidate of {name} relaxed to a bound crystal; try more --candidates")
    return prediction, write_crystals(out, prediction, keep=keep), cleared
