"""Write clusters and trajectories to PDB (multi-model, CONECT bonds), XYZ (multi-frame) and SDF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from .chemistry import cluster_to_rdkit
from .data.symmetry import cluster_bonds

PDB_RESIDUE = "MOL"
PDB_CHAIN = "A"


def _atom_names(numbers: np.ndarray, mol_index: np.ndarray) -> list[str]:
    """PDB atom names (columns 13-16): element symbol plus a counter per molecule, e.g. ' C1 ', ' H12'."""
    counters: dict[tuple[int, str], int] = {}
    names = []
    for number, molecule in zip(numbers, mol_index, strict=True):
        symbol = chemical_symbols[number]
        counters[(molecule, symbol)] = counters.get((molecule, symbol), 0) + 1
        label = f"{symbol}{counters[(molecule, symbol)]}"
        names.append(f" {label:<3s}"[:4] if len(symbol) == 1 else f"{label:<4s}"[:4])
    return names


def _as_frames(positions: np.ndarray) -> np.ndarray:
    """Accept one structure [N, 3] or a trajectory [T, N, 3]; return [T, N, 3]."""
    positions = np.asarray(positions, dtype=float)
    return positions[None] if positions.ndim == 2 else positions


def pdb_string(
    numbers: np.ndarray,
    mol_index: np.ndarray,
    positions: np.ndarray,
    bonds: np.ndarray | None = None,
    b_factors: np.ndarray | None = None,
) -> str:
    """PDB text of a cluster [N, 3] (one model) or a trajectory [T, N, 3] (MODEL/ENDMDL per frame).

    Each molecule is residue `mol_index + 1` of chain A; bonds [B, 2] (atom indices, default: the curation's bond
    rule on the first frame) become CONECT records; b_factors [N] fill the temperature-factor column (e.g. per-atom
    error, for colouring). Coordinates are written with 3 decimals (PDB precision). Multi-model text ends
    after the CONECT records without an END line, which ASE would otherwise read as an extra empty model.
    """
    numbers = np.asarray(numbers, dtype=int)
    mol_index = np.asarray(mol_index, dtype=int)
    frames = _as_frames(positions)
    if bonds is None:
        bonds = cluster_bonds(numbers, mol_index, frames[0])
    b_factors = np.zeros(len(numbers)) if b_factors is None else np.asarray(b_factors, dtype=float)
    names = _atom_names(numbers, mol_index)
    lines = []
    for model, frame in enumerate(frames, start=1):
        if len(frames) > 1:
            lines.append(f"MODEL     {model:4d}")
        for atom, (x, y, z) in enumerate(frame):
            symbol = chemical_symbols[numbers[atom]].upper()
            lines.append(
                f"HETATM{atom + 1:5d} {names[atom]} {PDB_RESIDUE} {PDB_CHAIN}{mol_index[atom] + 1:4d}    "
                f"{x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{b_factors[atom]:6.2f}          {symbol:>2s}"
            )
        if len(frames) > 1:
            lines.append("ENDMDL")
    partners: list[list[int]] = [[] for _ in numbers]
    for i, j in np.asarray(bonds, dtype=int):
        partners[i].append(j)
        partners[j].append(i)
    for atom, bonded in enumerate(partners):
        for start in range(0, len(bonded), 4):
            chunk = "".join(f"{partner + 1:5d}" for partner in sorted(bonded)[start : start + 4])
            lines.append(f"CONECT{atom + 1:5d}{chunk}")
    if len(frames) == 1:
        lines.append("END")
    return "\n".join(lines) + "\n"


def xyz_string(numbers: np.ndarray, positions: np.ndarray, times: Sequence[float] | None = None) -> str:
    """XYZ text of a cluster [N, 3] or a multi-frame trajectory [T, N, 3]; the comment line holds `t=` per
    frame when times [T] are given. Coordinates are written with 6 decimals."""
    numbers = np.asarray(numbers, dtype=int)
    frames = _as_frames(positions)
    symbols = [chemical_symbols[number] for number in numbers]
    blocks = []
    for index, frame in enumerate(frames):
        comment = f"frame={index}" if times is None else f"frame={index} t={float(times[index]):.6f}"
        atoms = "\n".join(f"{s:<2s} {x:.6f} {y:.6f} {z:.6f}" for s, (x, y, z) in zip(symbols, frame, strict=True))
        blocks.append(f"{len(numbers)}\n{comment}\n{atoms}\n")
    return "".join(blocks)


def write_cluster_pdb(path, numbers, mol_index, positions, bonds=None) -> Path:
    """Write a cluster [N, 3] to PDB with CONECT bonds; returns the path."""
    return _write(path, pdb_string(numbers, mol_index, positions, bonds))


def write_trajectory_pdb(path, numbers, mol_index, trajectory, bonds=None) -> Path:
    """Write a trajectory [T, N, 3] as a multi-model PDB (one MODEL per frame, bonds from frame 0)."""
    trajectory = np.asarray(trajectory, dtype=float)
    if trajectory.ndim != 3:
        raise ValueError(f"trajectory must be [T, N, 3], got shape {trajectory.shape}")
    return _write(path, pdb_string(numbers, mol_index, trajectory, bonds))


def write_cluster_xyz(path, numbers, positions) -> Path:
    """Write a cluster [N, 3] to XYZ; returns the path."""
    return _write(path, xyz_string(numbers, np.asarray(positions)[None]))


def write_trajectory_xyz(path, numbers, trajectory, times=None) -> Path:
    """Write a trajectory [T, N, 3] to a multi-frame XYZ with `t=` in each comment line."""
    return _write(path, xyz_string(numbers, trajectory, times))


def write_cluster_sdf(path, numbers, mol_index, positions, bonds=None, bond_orders: bool = True) -> Path:
    """Write a cluster [N, 3] to SDF (one record, bonds included, `mol_index` as an SD property)."""
    from rdkit import Chem

    molecule = cluster_to_rdkit(numbers, mol_index, positions, bonds, bond_orders)
    molecule.SetProp("_Name", "cluster")
    molecule.SetProp("mol_index", " ".join(str(int(m)) for m in np.asarray(mol_index)))
    with Chem.SDWriter(str(path)) as writer:
        writer.SetKekulize(False)
        writer.write(molecule)
    return Path(path)


def _write(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
