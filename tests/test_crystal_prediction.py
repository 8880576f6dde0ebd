"""``crystalflow predict`` and ``crystalflow minimize`` end to end at smoke scale: ranked crystals written as CIFs
that gemmi reads back with their space group and cell, exact densities, comparison with a known crystal, ranking
by a powder pattern, and bad input refused in one line before any work."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import time
from pathlib import Path

import gemmi
import numpy as np
import pandas as pd
import pytest
from rdkit.Chem import Descriptors
from test_csp_energy import P21C

from crystalflow_core import molecule_input
from crystalflow_core.cli import main
from crystalflow_core.csp.pxrd import read_pattern
from crystalflow_core.data import codcluster17
from crystalflow_core.data.sources import bundled_cod_directory

SMOKE = ["--candidates", "4", "--space-groups", "P21/c,P-1", "--keep", "4", "--workers", "2"]
WATER_CIF = """data_water
_cell_length_a 5
_cell_length_b 5
_cell_length_c 5
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
O1 O 0.5 0.5 0.5
H1 H 0.69 0.5 0.5
H2 H 0.45 0.68 0.5
"""


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(args)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def known_cif(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("known") / f"{P21C}.cif"
    path.write_bytes(gzip.decompress((bundled_cod_directory() / f"{P21C}.cif.gz").read_bytes()))
    return path


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, known_cif) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("crystals") / "out"
    status, printed, _ = run(
        ["predict", "--cif", str(known_cif), "--reference", str(known_cif), *SMOKE, "--out", str(out)]
    )
    assert status == 0
    return out, printed


def cell_of(row) -> list[float]:
    return [row.a, row.b, row.c, row.alpha, row.beta, row.gamma]


def test_ranking_lists_distinct_crystals_with_cifs_that_read_back(predicted, known_cif):
    out, printed = predicted
    ranking = pd.read_csv(out / "ranking.csv")
    assert "distinct crystals" in printed and 1 <= len(ranking) <= 4
    assert ranking["rank"].tolist() == list(range(1, len(ranking) + 1))
    assert ranking["energy"].is_monotonic_increasing and (ranking["energy"] < 0).all()
    assert set(ranking["space_group_number"]) <= {14, 2}
    molecule = molecule_input.from_cif(known_cif)
    mass = Descriptors.MolWt(molecule)
    for row in ranking.itertuples():
        structure = gemmi.read_small_structure(str(out / row.cif))
        assert structure.spacegroup_number == row.space_group_number
        cell = structure.cell
        np.testing.assert_allclose([cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma], cell_of(row), atol=1e-3)
        # The density column is Z·M/V exactly (gemmi's volume, RDKit's molecular weight).
        assert row.density == pytest.approx(row.z * mass / (cell.volume * 0.602214076), rel=1e-3)
        assert 0.0 <= row.matched <= 15.0 and row.found == float(row.matched >= 8)
        two_theta, intensity = read_pattern(out / row.pxrd)
        assert two_theta.min() >= 5.0 and intensity.max() > 0
        numbers, mol_index, x = codcluster17.read_positions_csv(
            codcluster17.prediction_path(out, _name(out), row.rank - 1)
        )
        assert mol_index.max() == 16 and len(x) == 17 * molecule.GetNumAtoms()


def _name(out: Path) -> str:
    return json.loads((out / "predict.json").read_text())["name"]


def test_a_measured_pattern_ranks_its_crystal_first(predicted, known_cif, tmp_path):
    """The pattern of the crystal ranked last by energy, given as measured data, puts that crystal first."""
    out, _ = predicted
    ranking = pd.read_csv(out / "ranking.csv")
    last = ranking.iloc[-1]
    again = tmp_path / "again"
    status, _, _ = run(
        ["predict", "--cif", str(known_cif), *SMOKE, "--pxrd", str(out / last.pxrd), "--out", str(again)]
    )
    assert status == 0
    reranked = pd.read_csv(again / "ranking.csv")
    assert reranked["pxrd_similarity"].is_monotonic_decreasing
    assert reranked.iloc[0].energy == pytest.approx(last.energy, abs=1e-3)
    assert json.loads((again / "predict.json").read_text())["ranked_by"] == "pxrd_similarity"


def test_rerun_on_the_same_out_replaces_and_another_molecule_is_refused(predicted, known_cif, tmp_path):
    out = tmp_path / "out"
    assert run(["predict", "--smiles", "C=O", *SMOKE, "--out", str(out)])[0] == 0
    status, printed, _ = run(["predict", "--smiles", "C=O", *SMOKE, "--keep", "1", "--out", str(out)])
    assert status == 0 and "replaced the previous results" in printed
    assert len(pd.read_csv(out / "ranking.csv")) == 1 and len(list((out / "CIF").glob("*.cif"))) == 1
    status, _, err = run(["predict", "--smiles", "OC=O", *SMOKE, "--out", str(out)])
    assert status == 2 and "holds the results of another molecule" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--smiles", "C=O", "--out", "/proc/nope/x"], "--out /proc/nope/x: cannot write there"),
        (["--smiles", "C=O", "--space-groups", "P2_1/q"], "unknown space group 'P2_1/q'"),
        (["--smiles", "C" * 50], "pass --max-atoms 152"),
        (["--smiles", "OC(=O)c1ccccc1", "--reference", "KNOWN"], "not a crystal of this molecule"),
        (["--cif", "WATER"], "no_carbon"),
        (["--smiles", "O"], "no_carbon"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_any_work(args, message, known_cif, tmp_path):
    water = tmp_path / "water.cif"
    water.write_text(WATER_CIF)
    args = [str(known_cif) if a == "KNOWN" else str(water) if a == "WATER" else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    started = time.perf_counter()
    status, _, err = run(["predict", *args])
    assert status == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert time.perf_counter() - started < 20  # refused up front, not after a search


def test_minimize_keeps_the_space_group_and_reports_energy_and_density(known_cif, tmp_path):
    out = tmp_path / "relaxed.cif"
    status, printed, _ = run(["minimize", str(known_cif), "--out", str(out)])
    assert status == 0
    assert "energy per molecule:" in printed and "density:" in printed and "kcal/mol" in printed
    before, after = (float(v) for v in printed.split("energy per molecule: ")[1].split(" kcal")[0].split(" -> "))
    assert after < before
    original = gemmi.read_small_structure(str(known_cif))
    relaxed = gemmi.read_small_structure(str(out))
    assert relaxed.spacegroup_number == original.spacegroup_number or relaxed.spacegroup_number == 14
    assert relaxed.cell.volume == pytest.approx(original.cell.volume, rel=0.15)


def test_minimize_refuses_what_curation_rejects(tmp_path):
    water = tmp_path / "water.cif"
    water.write_text(WATER_CIF)
    status, _, err = run(["minimize", str(water), "--out", str(tmp_path / "x.cif")])
    assert status == 2 and "no_carbon" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("smiles", "element"), [("C[Zn]C", "Zn"), ("C[Fe]C", "Fe")])
def test_metals_are_refused_in_one_line_that_lists_only_supported_elements(smiles, element, capfd, tmp_path):
    """Nothing of RDKit's own logging (its UFF typer's lines) before the one-line refusal."""
    assert main(["predict", "--smiles", smiles, "--out", str(tmp_path / "out")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"element(s) {element} not supported" in err[0]
    assert "Zn" not in err[0].split("parameters for")[1] and "Pt" not in err[0]
