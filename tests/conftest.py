"""Shared fixtures: a handful of real COD crystals of small molecules, shipped with the package."""

import shutil

import pytest

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
