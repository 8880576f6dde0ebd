"""Shared fixtures: a handful of real COD crystals of small molecules shipped with the package, and exact models."""

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from crystalflow_core.data import codcluster17
from crystalflow_core.data.cluster import Cluster
from crystalflow_core.data.curate import curate
from crystalflow_core.data.sources import bundled_cod_directory, cif_directory_refs

#: Bundled COD crystals of the smallest molecules (4–8 atoms), so training on them takes seconds.
SMALL_MOLECULES = ["2100840", "7206161", "1504385", "2006099", "2105702", "4507991", "2019369", "2007511"]


@pytest.fixture(scope="session")
def small_cifs(tmp_path_factory):
    """A directory holding the CIFs of :data:`SMALL_MOLECULES`."""
    directory = tmp_path_factory.mktemp("small_cifs")
    for cod_id in SMALL_MOLECULES:
        shutil.copy(bundled_cod_directory() / f"{cod_id}.cif.gz", directory)
    return directory


@pytest.fixture(scope="session")
def small_data(small_cifs, tmp_path_factory):
    """The first six of them curated (default settings) into the COD-Cluster17 layout."""
    cifs = tmp_path_factory.mktemp("six_cifs")
    for cod_id in SMALL_MOLECULES[:6]:
        shutil.copy(small_cifs / f"{cod_id}.cif.gz", cifs)
    out = tmp_path_factory.mktemp("small_data")
    curate(cif_directory_refs(cifs), out, workers=1, progress=False)
    return out


@pytest.fixture
def curated(tmp_path):
    """Four two-atom clusters in the COD-Cluster17 layout with a ``curation.json`` (rotation 90°, no inversion)."""
    root = tmp_path / "data"
    numbers, mol_index = np.array([6, 1]), np.array([0, 0])
    for k in range(4):
        x = np.array([[0.0, 0.0, float(k)], [1.0, 0.0, float(k)]])
        codcluster17.write_cluster(root, Cluster(f"c{k}", numbers, mol_index, x, x))
    (root / "curation.json").write_text(json.dumps({"noise": {"rotation_deg": 90.0, "inversion": False}}))
    return root


def _exact_output(path, x_s: torch.Tensor, x: torch.Tensor, x_w: torch.Tensor, t_atom: torch.Tensor) -> torch.Tensor:
    """The network output that `path.field` reads as the exact conditional field towards `x_s` `[N, 3]`.

    A "velocity" path shows the network x_t and takes the field itself. A "crystal" path shows it the posterior
    mean m of x_s ~ N(x_w, σ_d²) given x_t = a x_s + b x_w + σ ε and reads its output o as x̂_s = m + s·o, so the
    exact output is (x_s − m) / s, with the posterior spread s written out here as a Schur complement.
    """
    if path.prediction == "velocity":
        return path.conditional_velocity(x, x_w, x_s, t_atom)
    c = path.coefficients(t_atom.reshape(-1, 1).to(x.dtype))
    var_d = path.data_scale**2
    gain = c.a * var_d / (c.a**2 * var_d + c.sigma**2)
    return (x_s - x) / torch.sqrt(var_d - gain * c.a * var_d)


@pytest.fixture
def exact_model():
    """Factory `exact_model(path, x_s)`: a parameter-free model whose output is the exact conditional field."""

    def build(path, x_s: torch.Tensor):
        def model(numbers, x, x_w, t, batch, **_):
            return _exact_output(path, x_s, x, x_w, t[batch])

        return model

    return build


def notebook_parameters(name: str) -> dict[str, object]:
    """The parameters of ``notebooks/<name>.ipynb`` and their defaults, read from its ``parameters`` cell."""
    notebook = json.loads((Path(__file__).parents[1] / "notebooks" / f"{name}.ipynb").read_text())
    cell = next(c for c in notebook["cells"] if "parameters" in c["metadata"].get("tags", []))
    body = ast.parse("".join(cell["source"])).body
    return {node.target.id: ast.literal_eval(node.value) for node in body if isinstance(node, ast.AnnAssign)}
