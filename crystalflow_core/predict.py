"""``crystalflow predict``: packings of a chemist's own molecule.

1. the molecule, with hydrogens and a 3D conformer (:mod:`~crystalflow_core.molecule_input`);
2. a loose start ``x_w`` of 17 copies (:func:`start_cluster`): centroids on the 17 sites nearest the origin of a
   face-centred cubic lattice with one site per ``molecular volume / PACKING_COEFFICIENT``, the lattice turned at
   random, then curation's own rigid noise (random orientations, 1 Å jitter);
3. ``samples`` packings from a trained model (by default the shipped one, :mod:`~crystalflow_core.shipped`);
4. each polished by rigid-body MMFF94 relaxation (:func:`~crystalflow_core.relax.relax_cluster`);
5. ranked by MMFF94 interaction energy per molecule (:func:`rank_packings`).

:func:`write_prediction` writes the COD-Cluster17 layout (``InitialPositions``, ``PredictedPositions``,
``Trajectories``), a PDB and an XYZ per packing, ``ranking.csv`` and ``predict.json``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ase.data import vdw_radii
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.spatial import ConvexHull, Voronoi
from tqdm.auto import tqdm

from . import export, metrics
from .csp.minimize import mass_density
from .data import codcluster17
from .data.dataset import ClusterData
from .data.noise import NoiseConfig, random_rotations, rigid_noise
from .errors import InputError
from .forcefield import ClusterEnergy, mmff_terms
from .molecule_input import molecule_name
from .packing import Reference, integrity, prepare_reference
from .paths import get_path
from .records import atomic_open, git_revision
from .relax import DEFAULT_ITERATIONS, relax_cluster
from .sampling import sample
from .train import load_model

#: Fraction of a crystal's volume its molecules fill (Kitaigorodsky's packing coefficient, 0.65-0.77 for
#: organic crystals): one lattice site of the start per molecular volume / this.
PACKING_COEFFICIENT = 0.7
N_MOLECULES = 17


@dataclass
class PredictedPacking:
    """One packing: ``positions [N, 3]``, the sampler's ``trajectory [T, N, 3]`` (relaxed pose last) at
    ``times [T]``, and its scores."""

    k: int
    positions: np.ndarray
    trajectory: np.ndarray
    times: np.ndarray
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    """Packings of one molecule: ``numbers``/``mol_index [N]``, the start ``x_w [N, 3]``, packings best first."""

    name: str
    molecule: Chem.Mol
    numbers: np.ndarray
    mol_index: np.ndarray
    x_w: np.ndarray
    packings: list[PredictedPacking]
    settings: dict


def fcc_sites(n: int, spacing_volume: float, generator: torch.Generator) -> np.ndarray:
    """``[n, 3]`` sites of a face-centred cubic lattice with ``spacing_volume`` Å³ per site: the ``n`` nearest the
    origin (the origin first; ties in the last shell broken at random), the lattice turned at random."""
    a = (4.0 * spacing_volume) ** (1.0 / 3.0)
    cells = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    basis = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
    sites = (cells[:, None, :] + basis[None]).reshape(-1, 3) * a
    jitter = torch.rand(len(sites), generator=generator, dtype=torch.float64).numpy()
    order = np.lexsort((jitter, np.round(np.linalg.norm(sites, axis=1), 6)))
    turn = random_rotations(1, 180.0, generator)[0].numpy()
    return sites[order[:n]] @ turn.T


def molecular_volume(molecule: Chem.Mol) -> float:
    """Van der Waals volume (Å³) of the molecule's conformer, on RDKit's grid."""
    return float(AllChem.ComputeMolVolume(molecule))


def start_cluster(
    molecule: Chem.Mol, noise: NoiseConfig, generator: torch.Generator, n_molecules: int = N_MOLECULES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(numbers [N], mol_index [N], x_w [N, 3])`` of ``n_molecules`` copies of ``molecule``'s conformer at
    :func:`fcc_sites`, each then moved by ``noise`` as curation makes ``x_w``; molecule 0 sits at the origin."""
    body = molecule.GetConformer().GetPositions()
    body = body - body.mean(axis=0)
    numbers = np.array([a.GetAtomicNum() for a in molecule.GetAtoms()] * n_molecules)
    mol_index = np.repeat(np.arange(n_molecules), len(body))
    sites = fcc_sites(n_molecules, molecular_volume(molecule) / PACKING_COEFFICIENT, generator)
    ordered = torch.as_tensor((sites[:, None, :] + body[None]).reshape(-1, 3))
    x_w = rigid_noise(ordered, torch.as_tensor(mol_index), noise, generator)
    return numbers, mol_index, x_w.numpy()


def central_molecule(centroids: np.ndarray) -> int:
    """Of molecule ``centroids [M, 3]``, the one nearest their mean."""
    return int(np.argmin(np.linalg.norm(centroids - centroids.mean(axis=0), axis=1)))


def packing_density(x: np.ndarray, numbers: np.ndarray, mol_index: np.ndarray) -> float:
    """Density (g/cm³) of a cluster of copies of one molecule: its mass over the Voronoi cell of the central
    molecule's centroid among all centroids. In a crystal with one molecule in the asymmetric unit the centroid
    cells tile space, so this is the crystal's density; NaN if the cell is open."""
    centre = metrics.centroids(x, mol_index).numpy()
    inner = central_molecule(centre)
    diagram = Voronoi(centre)
    region = diagram.regions[diagram.point_region[inner]]
    if not region or -1 in region:
        return math.nan
    volume = ConvexHull(diagram.vertices[region]).volume
    return mass_density(np.asarray(numbers)[np.asarray(mol_index) == inner], 1, volume)


def loosest_contact(x: np.ndarray, numbers: np.ndarray, mol_index: np.ndarray) -> float:
    """Over molecules, the largest ratio of a molecule's closest approach to another molecule to the van der
    Waals radius sum of that atom pair: ≤ 1 means every molecule touches a neighbour."""
    x, numbers, mol_index = torch.as_tensor(x), np.asarray(numbers), torch.as_tensor(mol_index)
    distance = torch.cdist(x, x)
    radius = torch.as_tensor(np.nan_to_num(vdw_radii[numbers], nan=2.0))
    ratio = distance / (radius[:, None] + radius[None, :])
    ratio[mol_index[:, None] == mol_index[None, :]] = math.inf
    per_atom = ratio.min(dim=1).values
    per_molecule = torch.full((int(mol_index.max()) + 1,), math.inf, dtype=per_atom.dtype)
    per_molecule = per_molecule.scatter_reduce(0, mol_index, per_atom, reduce="amin")
    return float(per_molecule.max())


def packing_scores(x: np.ndarray, start: Reference, energy: float) -> dict[str, float]:
    """The columns of ``ranking.csv`` for a packing ``x [N, 3]`` of the start ``start`` (``energy``: kcal/mol per
    molecule); ``integrity`` is the largest change of an intramolecular distance from the start (Å)."""
    numbers, mol_index = start.numbers, start.mol_index
    return {
        "energy": energy,
        "clash": metrics.intermolecular_clash_rate(x, numbers, mol_index),
        "density": packing_density(x, numbers, mol_index),
        "loosest_contact": loosest_contact(x, numbers, mol_index),
        "integrity": integrity(x, start),
    }


def rank_packings(packings: list[PredictedPacking]) -> list[PredictedPacking]:
    """Packings ordered by fewest clashes, then lowest energy per molecule (NaN last), then sample index."""

    def key(packing: PredictedPacking) -> tuple[float, float, int]:
        energy = packing.scores["energy"]
        return (packing.scores["clash"], math.inf if math.isnan(energy) else energy, packing.k)

    return sorted(packings, key=key)


def predict_packings(
    molecule: Chem.Mol,
    run_dir: str | Path,
    samples: int = 4,
    seed: int = 0,
    steps: int | None = None,
    relax_iterations: int = DEFAULT_ITERATIONS,
    device: str = "auto",
    progress: bool = True,
) -> Prediction:
    """``samples`` ranked packings of ``molecule`` (hydrogens and a conformer, as :mod:`molecule_input` gives)
    by the model of ``run_dir``; see the module docstring for the steps."""
    started = time.perf_counter()
    model, config = load_model(run_dir, device)
    path = get_path(config.path, **config.path_kwargs)
    device_of_model = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    noise = NoiseConfig(**config.noise) if config.noise else NoiseConfig()
    numbers, mol_index, x_w = start_cluster(molecule, noise, generator)
    terms = mmff_terms(molecule)
    energy_model = ClusterEnergy(terms, torch.as_tensor(mol_index))
    start = prepare_reference(x_w, numbers, mol_index)
    item = ClusterData(
        z=torch.as_tensor(numbers),
        mol_index=torch.as_tensor(mol_index),
        molecule=torch.as_tensor(mol_index),
        x_w=torch.as_tensor(x_w, dtype=torch.float32),
        num_nodes=len(numbers),
    ).to(device_of_model)
    batch = torch.zeros(len(numbers), dtype=torch.long, device=device_of_model)
    packings = []
    for k in tqdm(range(samples), desc="predict", unit="packing", disable=not progress):
        draws = torch.Generator(device=device_of_model).manual_seed(seed + k)
        with torch.no_grad():
            trajectory = sample(
                model, path, item.z, item.x_w, batch, steps=steps, generator=draws, molecule=item.molecule
            )
        trajectory = trajectory.double().cpu()
        relaxed = relax_cluster(trajectory[-1], item.z.cpu(), item.mol_index.cpu(), terms, iterations=relax_iterations)
        frames = torch.cat([trajectory, relaxed[None]]).numpy()
        times = np.append(np.linspace(0.0, 1.0, len(trajectory)), 1.0)
        scores = packing_scores(frames[-1], start, metrics.energy_per_molecule(relaxed, energy_model, N_MOLECULES))
        packings.append(PredictedPacking(k=k, positions=frames[-1], trajectory=frames, times=times, scores=scores))
    settings = {
        "run": str(run_dir),
        "objective": config.path,
        "samples": samples,
        "seed": seed,
        "steps": steps,
        "relax_iterations": relax_iterations,
        "noise": noise.to_dict(),
        "packing_coefficient": PACKING_COEFFICIENT,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return Prediction(molecule_name(molecule), molecule, numbers, mol_index, x_w, rank_packings(packings), settings)


def write_prediction(out_dir: str | Path, prediction: Prediction) -> Path:
    """Write ``prediction`` under ``out_dir``; returns the path of ``ranking.csv``."""
    out = Path(out_dir)
    name, numbers, mol_index = prediction.name, prediction.numbers, prediction.mol_index
    codcluster17.write_positions_csv(codcluster17.initial_path(out, name), numbers, mol_index, prediction.x_w)
    rows = []
    for rank, packing in enumerate(prediction.packings, start=1):
        k = packing.k
        codcluster17.write_positions_csv(
            codcluster17.prediction_path(out, name, k), numbers, mol_index, packing.positions
        )
        codcluster17.write_trajectory(out, name, k, packing.times, packing.trajectory)
        pdb = export.write_cluster_pdb(out / "PDB" / f"{name}_pred{k}.pdb", numbers, mol_index, packing.positions)
        xyz = export.write_cluster_xyz(out / "XYZ" / f"{name}_pred{k}.xyz", numbers, packing.positions)
        export.write_trajectory_xyz(
            out / codcluster17.TRAJECTORY_DIR / f"{name}_pred{k}.xyz", numbers, packing.trajectory, packing.times
        )
        rows.append(
            {
                "rank": rank,
                "sample": k,
                **packing.scores,
                # loosest_contact > 1: some molecule touches no other one.
                "isolated_molecule": packing.scores["loosest_contact"] > 1.0,
                "pdb": pdb.relative_to(out).as_posix(),
                "xyz": xyz.relative_to(out).as_posix(),
            }
        )
    with Chem.SDWriter(str(out / f"{name}_molecule.sdf")) as writer:
        writer.write(prediction.molecule)
    ranking = out / "ranking.csv"
    with atomic_open(ranking) as handle:
        pd.DataFrame(rows).to_csv(handle, index=False)
    with atomic_open(out / "predict.json") as handle:
        record = {
            "name": name,
            "smiles": Chem.MolToSmiles(Chem.RemoveHs(prediction.molecule)),
            **prediction.settings,
            "git_revision": git_revision(),
        }
        json.dump(record, handle, indent=2)
    return ranking


@dataclass
class WrittenPacking:
    """One ranked packing as :func:`write_prediction` left it: ``numbers``/``mol_index [N]``, the trajectory
    ``[T, N, 3]`` (the relaxed packing last) at ``times [T]``, and its ``ranking.csv`` row."""

    numbers: np.ndarray
    mol_index: np.ndarray
    times: np.ndarray
    trajectory: np.ndarray
    scores: dict


def read_packing(out_dir: str | Path, rank: int = 1) -> WrittenPacking:
    """The packing of ``rank`` (1: the best) under a ``crystalflow predict --out`` directory."""
    out = Path(out_dir)
    try:
        name = json.loads((out / "predict.json").read_text())["name"]
        ranking = pd.read_csv(out / "ranking.csv")
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise InputError(f"{out}: not a crystalflow predict output ({error})") from error
    row = ranking[ranking["rank"] == rank]
    if row.empty:
        raise InputError(f"{out / 'ranking.csv'}: no rank {rank} (ranks 1 to {len(ranking)})")
    scores = row.iloc[0].to_dict()
    k = int(scores["sample"])
    numbers, mol_index, _ = codcluster17.read_positions_csv(codcluster17.prediction_path(out, name, k))
    times, trajectory = codcluster17.read_trajectory(out, name, k)
    return WrittenPacking(numbers, mol_index, times, trajectory, scores)
