"""A chemist's molecule for ``crystalflow predict``: read from a SMILES, an SDF or a CIF, checked, with
hydrogens and a 3D conformer (RDKit's ETKDG, then MMFF94).

Every failure is a :class:`MoleculeInputError` that names the input and the reason, as curation does: one
species only, elements the model knows, a molecule RDKit can embed and MMFF94 can type.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols
from rdkit import Chem, RDLogger
from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

from .chemistry import cluster_to_rdkit
from .data.molecules import MolecularCrystal, check_molecule
from .errors import CurationError, InputError
from .forcefield import ForceFieldError, mmff_terms

#: Elements of MMFF94's organic parameter set (its metal ions only exist as free ions, not in molecules).
MMFF94_ELEMENTS = frozenset({1, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53})
#: Attempts of ETKDG before a molecule counts as one RDKit cannot embed.
EMBED_ATTEMPTS = 10


class MoleculeInputError(InputError):
    """A molecule ``predict`` cannot use; the message starts with the input it came from."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")


def _one_species(molecule: Chem.Mol, source: str) -> Chem.Mol:
    fragments = Chem.GetMolFrags(molecule, asMols=True, sanitizeFrags=False)
    if len(fragments) != 1:
        smiles = sorted({Chem.MolToSmiles(Chem.RemoveHs(f, sanitize=False)) for f in fragments})
        raise MoleculeInputError(
            source, f"{len(fragments)} components ({'; '.join(smiles)}): give one species (no salts or solvates)"
        )
    return molecule


def _check_elements(molecule: Chem.Mol, source: str, known: Collection[int] | None) -> None:
    """Elements MMFF94's organic parameters cover, then, for the learned flow, those its model has seen."""
    present = {a.GetAtomicNum() for a in molecule.GetAtoms()}
    for allowed, what in (
        (MMFF94_ELEMENTS, "the MMFF94 lattice energy has parameters for"),
        (known, "the model knows"),
    ):
        unknown = sorted(present - set(allowed)) if allowed is not None else []
        if unknown:
            names = ", ".join(chemical_symbols[z] for z in unknown)
            listed = " ".join(chemical_symbols[z] for z in sorted(set(allowed) & MMFF94_ELEMENTS))
            seen = "never seen in training" if allowed is known else "not supported"
            raise MoleculeInputError(source, f"element(s) {names} {seen} ({what} {listed})")


def _embedded(molecule: Chem.Mol, source: str, seed: int) -> Chem.Mol:
    """``molecule`` with explicit hydrogens and one ETKDG conformer optimised with MMFF94."""
    molecule = Chem.AddHs(molecule, addCoords=molecule.GetNumConformers() > 0)
    molecule.RemoveAllConformers()
    parameters = rdDistGeom.ETKDGv3()
    for attempt in range(EMBED_ATTEMPTS):
        parameters.randomSeed = seed + attempt
        with _rdkit_silenced():
            embedded = rdDistGeom.EmbedMolecule(molecule, parameters) == 0
        if embedded:
            break
    else:
        raise MoleculeInputError(source, f"RDKit cannot embed the molecule in 3D ({EMBED_ATTEMPTS} ETKDG attempts)")
    _check_force_field(molecule, source)
    rdForceFieldHelpers.MMFFOptimizeMolecule(molecule, maxIters=2000)
    return molecule


def _check_force_field(molecule: Chem.Mol, source: str) -> None:
    """The relaxation and the ranking need MMFF94 terms of the molecule (typed, and neutral)."""
    if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(molecule):
        raise MoleculeInputError(source, "MMFF94 has no parameters for some atom of the molecule")
    try:
        mmff_terms(molecule)
    except ForceFieldError as error:
        raise MoleculeInputError(source, str(error)) from error


@contextmanager
def _rdkit_silenced() -> Iterator[None]:
    """RDKit's own warnings off: the error raised here says what went wrong, once."""
    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


def _read(molecule: Chem.Mol | None, source: str, unread: str, known: Collection[int] | None) -> Chem.Mol:
    """``molecule`` if RDKit read one (``unread`` says why not), of one species, organic as curation demands,
    and of elements MMFF94 (and the model, when one is given) knows."""
    if molecule is None:
        raise MoleculeInputError(source, unread)
    _one_species(molecule, source)
    _check_organic(molecule, source)
    _check_elements(molecule, source, known)
    return molecule


def _check_organic(molecule: Chem.Mol, source: str) -> None:
    try:
        check_molecule(np.array([atom.GetAtomicNum() for atom in molecule.GetAtoms()]))
    except CurationError as error:
        detail = f"{error.reason}: {error.detail} (curation keeps organic molecules only)"
        raise MoleculeInputError(source, detail) from None


def from_smiles(smiles: str, known_elements: Collection[int] | None = None, seed: int = 0) -> Chem.Mol:
    """The molecule of ``smiles`` with hydrogens and an MMFF94-optimised ETKDG conformer."""
    source = f"SMILES {smiles!r}"
    with _rdkit_silenced():
        molecule = Chem.MolFromSmiles(smiles) if smiles.strip() else None
    molecule = _read(molecule, source, "does not parse as a SMILES (RDKit rejects it)", known_elements)
    return _embedded(molecule, source, seed)


def _with_hydrogens(molecule: Chem.Mol, source: str) -> None:
    """A molecule without hydrogens is one whose hydrogens were not located, unless its valences are all filled
    without them (hexachlorobenzene): then no atom is left with an unpaired electron."""
    atoms = molecule.GetAtoms()
    if not any(a.GetAtomicNum() == 1 for a in atoms) and any(a.GetNumRadicalElectrons() for a in atoms):
        raise MoleculeInputError(source, "has no hydrogen atoms; give the molecule with them, or as a SMILES")


def from_sdf(path: str | Path, known_elements: Collection[int] | None = None) -> Chem.Mol:
    """The first record of an SDF/MOL file, with hydrogens; a 3D conformer is kept, a 2D one replaced."""
    source = str(path)
    if not Path(path).is_file():
        raise MoleculeInputError(source, "no such file")
    try:
        with _rdkit_silenced():
            molecule = next(iter(Chem.SDMolSupplier(source, removeHs=False)), None)
    except OSError as error:
        raise MoleculeInputError(source, f"cannot be read ({error})") from error
    molecule = _read(molecule, source, "holds no molecule RDKit can read", known_elements)
    if molecule.GetNumConformers() and molecule.GetConformer().Is3D():
        if not any(a.GetAtomicNum() == 1 for a in molecule.GetAtoms()):
            molecule = Chem.AddHs(molecule, addCoords=True)
        _check_force_field(molecule, source)
        return molecule
    return _embedded(molecule, source, seed=0)


def molecule_name(molecule: Chem.Mol) -> str:
    """A file-safe id: the first block of the InChIKey (the molecule's skeleton), or ``molecule``."""
    key = Chem.MolToInchiKey(Chem.RemoveHs(molecule)) if Chem.inchi.INCHI_AVAILABLE else ""
    return key.split("-")[0] if key else "molecule"


def from_molecular_crystal(
    chosen: MolecularCrystal, source: str, known_elements: Collection[int] | None = None
) -> Chem.Mol:
    """The reference molecule of a curated crystal, as it sits in the crystal, checked as every input is."""
    return from_positions(chosen.numbers, chosen.frac @ chosen.crystal.lattice, source, known_elements)


def from_positions(
    numbers: np.ndarray, positions: np.ndarray, source: str, known_elements: Collection[int] | None = None
) -> Chem.Mol:
    """One molecule given by its atoms ``numbers`` ``[n]`` and ``positions`` ``[n, 3]`` (a crystal's, or a
    cluster's), with bonds and bond orders perceived, checked as every input is; its atom order is kept."""
    molecule = cluster_to_rdkit(np.asarray(numbers), np.zeros(len(numbers), dtype=int), np.asarray(positions))
    try:
        Chem.SanitizeMol(molecule)
    except (RuntimeError, ValueError) as error:
        raise MoleculeInputError(source, f"RDKit cannot perceive the molecule ({error})") from error
    _with_hydrogens(molecule, source)
    _check_elements(molecule, source, known_elements)
    _check_force_field(molecule, source)
    return molecule


def read_crystal(path: str | Path) -> MolecularCrystal:
    """The crystal of a CIF's first block that curation accepts; refused with curation's reason otherwise."""
    from .data.cif import read_cif_blocks
    from .data.molecules import select_molecular_crystal

    source = str(path)
    if not Path(path).is_file():
        raise MoleculeInputError(source, "no such file")
    problems = []
    for crystal in read_cif_blocks(path):
        try:
            if isinstance(crystal, CurationError):
                raise crystal
            return select_molecular_crystal(crystal)
        except CurationError as error:
            problems.append(f"{error.reason}: {error.detail}")
    raise MoleculeInputError(source, "no block with one molecular species: " + ("; ".join(problems) or "empty"))


def from_cif(path: str | Path, known_elements: Collection[int] | None = None) -> Chem.Mol:
    """The molecule of a CIF's crystal (its first block that curation accepts), as it sits in the crystal."""
    return from_molecular_crystal(read_crystal(path), str(path), known_elements)
