"""The learned rigid flow's packings of a chemist's molecule (``crystalflow predict --flow-samples K``, written to
OUT/flow/): the start cluster, the scores of a packing, the inputs it accepts and refuses, and the whole command
with the shipped model. The crystals that ``predict`` ranks are tested in test_crystal_prediction.py."""

import gzip
import json
import math

import ase.io
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SMALL_MOLECULES
from rdkit import Chem
from rdkit.Chem import AllChem

from crystalflow_core import molecule_input, predict
from crystalflow_core.cli import main
from crystalflow_core.data import codcluster17
from crystalflow_core.data.noise import NoiseConfig
from crystalflow_core.data.sources import bundled_cod_directory
from crystalflow_core.shipped import SHIPPED_MODEL, known_elements

SALICYLIC_ACID = "O=C(O)c1ccccc1O"


def _pairwise(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x[:, None] - x[None], axis=-1)


def test_fcc_sites_are_the_17_nearest_sites_at_the_asked_density():
    volume = 150.0
    sites = predict.fcc_sites(17, volume, torch.Generator().manual_seed(0))
    a = (4 * volume) ** (1 / 3)  # four sites per cubic cell
    radii = np.sort(np.linalg.norm(sites, axis=1))
    np.testing.assert_allclose(radii[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(radii[1:13], a / math.sqrt(2), rtol=1e-12)  # the 12 nearest neighbours
    np.testing.assert_allclose(radii[13:], a, rtol=1e-12)  # 4 of the 6 second neighbours
    other = predict.fcc_sites(17, volume, torch.Generator().manual_seed(1))
    assert not np.allclose(other, sites)  # the lattice is turned at random
    np.testing.assert_allclose(np.sort(_pairwise(other)[0]), np.sort(_pairwise(sites)[0]), atol=1e-9)


def test_density_of_a_cubic_lattice_of_molecules_is_its_mass_over_the_cell():
    molecule = Chem.AddHs(Chem.MolFromSmiles("CO"))
    AllChem.EmbedMolecule(molecule, randomSeed=1)
    body = molecule.GetConformer().GetPositions()
    spacing = 4.2
    grid = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float) * spacing
    x = np.concatenate([body - body.mean(axis=0) + site for site in grid])
    numbers = np.array([a.GetAtomicNum() for a in molecule.GetAtoms()] * len(grid))
    mol_index = np.repeat(np.arange(len(grid)), len(body))
    grams_per_mole = 12.011 + 15.999 + 4 * 1.008
    expected = grams_per_mole / 6.02214076e23 / (spacing * 1e-8) ** 3  # g/cm³
    assert predict.packing_density(x, numbers, mol_index) == pytest.approx(expected, rel=1e-3)


def test_loosest_contact_is_the_worst_molecules_closest_approach_over_the_vdw_sum():
    x = np.array([[0.0, 0, 0], [3.0, 0, 0], [3.0, 4.0, 0]])
    # carbon and oxygen (ASE's Bondi radii 1.70 and 1.52): molecule 2 (O) is 4 Å from molecule 1
    ratio = predict.loosest_contact(x, np.array([6, 6, 8]), np.array([0, 1, 2]))
    assert ratio == pytest.approx(4.0 / (1.70 + 1.52))


def test_start_cluster_holds_17_exact_copies_around_molecule_0():
    molecule = molecule_input.from_smiles(SALICYLIC_ACID)
    numbers, mol_index, x_w = predict.start_cluster(molecule, NoiseConfig(), torch.Generator().manual_seed(0))
    n = molecule.GetNumAtoms()
    assert len(numbers) == 17 * n and mol_index.max() == 16 and (numbers == 1).sum() == 17 * 6
    body = molecule.GetConformer().GetPositions()
    for m in range(17):
        np.testing.assert_allclose(_pairwise(x_w[mol_index == m]), _pairwise(body), atol=1e-9)
    centres = np.stack([x_w[mol_index == m].mean(axis=0) for m in range(17)])
    assert np.linalg.norm(centres[0]) < 5.0  # the origin's site, moved by 1 Å noise


def test_inputs_are_checked_and_named(tmp_path, monkeypatch):
    known = known_elements(SHIPPED_MODEL)
    with pytest.raises(molecule_input.MoleculeInputError, match=r"^SMILES 'C1CC': does not parse"):
        molecule_input.from_smiles("C1CC", known)
    with pytest.raises(molecule_input.MoleculeInputError, match=r"2 components .*one species"):
        molecule_input.from_smiles("CC(=O)[O-].[Na+]", known)
    with pytest.raises(molecule_input.MoleculeInputError, match=r"element\(s\) Se not supported \(the MMFF94"):
        molecule_input.from_smiles("C[Se]C", known)
    with pytest.raises(
        molecule_input.MoleculeInputError, match=r"element\(s\) N never seen in training .*knows H C O\)"
    ):
        molecule_input.from_smiles("CN", {1, 6, 8})
    with pytest.raises(molecule_input.MoleculeInputError, match=r"net charge"):
        molecule_input.from_smiles("C[NH3+]", known)
    monkeypatch.setattr(molecule_input.rdDistGeom, "EmbedMolecule", lambda *args: -1)
    with pytest.raises(molecule_input.MoleculeInputError, match=r"^SMILES 'CCO': RDKit cannot embed"):
        molecule_input.from_smiles("CCO", known)


def test_sdf_and_cif_inputs_give_the_molecule_with_hydrogens(tmp_path):
    molecule = molecule_input.from_smiles(SALICYLIC_ACID)
    path = tmp_path / "mine.sdf"
    with Chem.SDWriter(str(path)) as writer:
        writer.write(molecule)
    read = molecule_input.from_sdf(path)
    np.testing.assert_allclose(read.GetConformer().GetPositions(), molecule.GetConformer().GetPositions(), atol=1e-3)
    with pytest.raises(molecule_input.MoleculeInputError, match="no such file"):
        molecule_input.from_sdf(tmp_path / "missing.sdf")
    cif = tmp_path / "crystal.cif"
    cif.write_bytes(gzip.decompress((bundled_cod_directory() / f"{SMALL_MOLECULES[0]}.cif.gz").read_bytes()))
    from_crystal = molecule_input.from_cif(cif)
    assert any(atom.GetAtomicNum() == 1 for atom in from_crystal.GetAtoms())
    assert from_crystal.GetNumConformers() == 1 and len(Chem.GetMolFrags(from_crystal)) == 1


@pytest.mark.parametrize(("smiles", "kept"), [("Clc1c(Cl)c(Cl)c(Cl)c(Cl)c1Cl", True), ("OC(=O)C(=O)O", False)])
def test_positions_without_hydrogens_are_refused_only_when_valences_are_left_open(smiles, kept):
    """Hexachlorobenzene has no hydrogens; oxalic acid with its hydrogens not located leaves four open oxygens."""
    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(molecule, randomSeed=0)
    heavy = [a.GetIdx() for a in molecule.GetAtoms() if a.GetAtomicNum() > 1]
    numbers = np.array([molecule.GetAtomWithIdx(i).GetAtomicNum() for i in heavy])
    positions = molecule.GetConformer().GetPositions()[heavy]
    if kept:
        read = molecule_input.from_positions(numbers, positions, "mine")
        assert Chem.MolToSmiles(read) == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
    else:
        with pytest.raises(molecule_input.MoleculeInputError, match="^mine: has no hydrogen atoms"):
            molecule_input.from_positions(numbers, positions, "mine")


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """``crystalflow predict`` of salicylic acid with 2 flow samples by the shipped model (and a minimal crystal
    search): (the flow's out dir, what it printed)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("predict") / "out"
    printed = io.StringIO()
    command = ["predict", "--smiles", SALICYLIC_ACID, "--flow-samples", "2", "--candidates", "2", "--space-groups", "2"]
    with contextlib.redirect_stdout(printed):
        assert main([*command, "--out", str(out)]) == 0
    return out / "flow", printed.getvalue()


def test_predict_command_writes_ranked_intact_clash_free_packings(predicted):
    out, printed = predicted
    assert "crystals of" in printed
    ranking = pd.read_csv(out / "ranking.csv")
    assert ranking["rank"].tolist() == [1, 2] and sorted(ranking["sample"]) == [0, 1]
    assert (ranking["clash"] == 0).all() and (ranking["integrity"] < 1e-4).all()
    assert (ranking["energy"] < 0).all() and ranking["energy"].is_monotonic_increasing  # no clashes: by energy
    assert (ranking["loosest_contact"] < 1.2).all()
    assert (ranking["isolated_molecule"] == (ranking["loosest_contact"] > 1.0)).all()
    assert ranking["density"].between(0.8, 2.0).all()
    record = json.loads((out / "predict.json").read_text())
    name = record["name"]
    assert record["samples"] == 2 and Chem.CanonSmiles(record["smiles"]) == Chem.CanonSmiles(SALICYLIC_ACID)
    start_numbers, start_index, x_w = codcluster17.read_positions_csv(codcluster17.initial_path(out, name))
    for row in ranking.itertuples():
        numbers, mol_index, x = codcluster17.read_positions_csv(codcluster17.prediction_path(out, name, row.sample))
        assert np.array_equal(numbers, start_numbers) and (numbers == 1).sum() == 17 * 6
        for m in range(17):
            np.testing.assert_allclose(_pairwise(x[mol_index == m]), _pairwise(x_w[mol_index == m]), atol=1e-4)
        pdb = ase.io.read(out / row.pdb)
        np.testing.assert_allclose(pdb.positions, x, atol=1e-3)
        assert ase.io.read(out / row.xyz).get_chemical_formula() == pdb.get_chemical_formula()
        times, trajectory = codcluster17.read_trajectory(out, name, row.sample)
        assert times[0] == 0.0 and times[-1] == 1.0 and np.allclose(trajectory[-1], x)
    best = predict.read_packing(out, rank=1)
    assert best.scores["sample"] == ranking.loc[0, "sample"] and best.trajectory.shape[1:] == x.shape


def test_predict_refuses_bad_input_with_status_2(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["predict", "--smiles", "C1CC", "--out", out]) == 2
    assert "error: SMILES 'C1CC': does not parse" in capsys.readouterr().err
    assert main(["predict", "--smiles", "C[Se]C", "--flow-samples", "1", "--out", out]) == 2
    assert "Se not supported" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert (
        main(["predict", "--smiles", SALICYLIC_ACID, "--flow-samples", "1", "--run", str(foreign), "--out", out]) == 2
    )
    assert "checkpoint.pt" in capsys.readouterr().err
    assert not any((tmp_path / "out").iterdir())


def test_crystalviz_animates_and_pictures_a_prediction_in_one_call(predicted, tmp_path):
    from matplotlib.image import imread

    from crystalviz.snapshot import predicted_packing_png
    from crystalviz.widgets import predicted_packing_viewer

    out, _ = predicted
    best = predict.read_packing(out, rank=1)
    viewer = predicted_packing_viewer(out)
    assert viewer.n_frames == len(best.trajectory) and np.allclose(viewer.trajectory[-1], best.trajectory[-1])
    picture = imread(predicted_packing_png(out, tmp_path / "best.png"))
    assert picture.shape[0] > 300 and picture[..., :3].std() > 0.05  # a drawing, not a blank canvas
    with pytest.raises(predict.InputError, match="no rank 3"):
        predict.read_packing(out, rank=3)


def test_flow_samples_refuse_a_model_that_bends_molecules(small_data, tmp_path, capsys):
    run = tmp_path / "lerp"
    tiny = ["--epochs", "1", "--hidden", "8", "--layers", "1", "--cutoff", "3.5"]
    assert main(["train", "--data", str(small_data), "--path", "lerp", "--out", str(run), *tiny]) == 0
    capsys.readouterr()
    command = ["predict", "--smiles", SALICYLIC_ACID, "--flow-samples", "1", "--run", str(run)]
    assert main([*command, "--out", str(tmp_path / "out")]) == 2
    assert "its objective 'lerp' bends molecules" in capsys.readouterr().err
