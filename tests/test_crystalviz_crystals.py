"""Figures of a crystal structure prediction: the energy–density landscape of a ranking and powder patterns."""

import numpy as np
import pandas as pd
import pytest

from crystalflow_core.csp import pxrd
from crystalflow_core.data.sources import bundled_cod_directory
from crystalflow_core.molecule_input import read_crystal
from crystalviz.crystals import energy_density_figure, powder_pattern_figure, simulated_pattern

#: β-oxalic acid (P2₁/c, Z = 2), bundled with crystalflow.
OXALIC_ACID = bundled_cod_directory() / "4507991.cif.gz"


@pytest.fixture
def ranking() -> pd.DataFrame:
    """Four crystals as ``ranking.csv`` lists them: three in P2₁/c, one in P-1."""
    return pd.DataFrame(
        {
            "rank": [1, 2, 3, 4],
            "space_group": ["P 1 21/c 1", "P -1", "P 1 21/c 1", "P 1 21/c 1"],
            "space_group_number": [14, 2, 14, 14],
            "wyckoff": ["4e", "2i", "2a", "4e"],
            "z": [4, 2, 2, 4],
            "density": [1.80, 1.75, 1.70, 1.60],
            "energy": [-26.5, -25.0, -24.0, -20.0],
            "copies": [3, 1, 1, 2],
        }
    )


def _points(trace) -> list[tuple[float, float]]:
    return list(zip(trace.x, trace.y, strict=True))


def test_landscape_has_one_trace_per_space_group_in_order_of_its_number(ranking):
    figure = energy_density_figure(ranking, title="landscape")
    assert [trace.name for trace in figure.data] == ["P -1 (2)", "P 1 21/c 1 (14)"]
    assert _points(figure.data[0]) == [(1.75, -25.0)]
    assert _points(figure.data[1]) == [(1.80, -26.5), (1.70, -24.0), (1.60, -20.0)]
    assert figure.data[1].hovertext[0].startswith("rank 1: P 1 21/c 1 (4e), Z = 4")
    assert figure.data[1].mode == "markers" and figure.data[1].text is None
    assert figure.layout.xaxis.title.text == "density (g/cm³)"
    assert figure.layout.yaxis.title.text == "lattice energy (kcal/mol per molecule)"


def test_landscape_labels_matches_and_rings_the_crystals_that_find_the_reference(ranking):
    ranking = ranking.assign(matched=[15.0, 3.0, 8.0, 0.0], rmsd15=[0.2, 0.9, 0.6, np.nan], found=[1.0, 0, 1.0, 0])
    figure = energy_density_figure(ranking)
    groups, found = figure.data[:-1], figure.data[-1]
    assert [list(trace.text) for trace in groups] == [["3"], ["15", "8", "0"]]
    assert found.name == "finds the reference (≥ 8 of 15 molecules)"
    assert _points(found) == [(1.80, -26.5), (1.70, -24.0)]
    assert "matches 15 of the reference's 15 molecules, rmsd 0.20 Å" in groups[1].hovertext[0]


def test_no_crystal_found_still_names_the_criterion(ranking):
    figure = energy_density_figure(ranking.assign(matched=0.0, rmsd15=np.nan, found=0.0))
    assert figure.data[-1].name.startswith("finds the reference") and len(figure.data[-1].x) == 0


def test_powder_patterns_face_each_other_scaled_to_100():
    two_theta = np.linspace(5.0, 50.0, 11)
    predicted = (two_theta, np.arange(11.0))
    reference = (two_theta, 2.0 * np.arange(11.0)[::-1])
    figure = powder_pattern_figure(predicted, reference, names=("rank 1", "measured"), title="pxrd")
    assert [trace.name for trace in figure.data] == ["rank 1", "measured"]
    np.testing.assert_allclose(figure.data[0].y, 10.0 * np.arange(11.0))
    np.testing.assert_allclose(figure.data[1].y, -10.0 * np.arange(11.0)[::-1])
    np.testing.assert_allclose(figure.data[1].x, two_theta)
    assert figure.layout.yaxis.title.text == "relative intensity (measured mirrored)"
    alone = powder_pattern_figure(predicted)
    assert len(alone.data) == 1 and alone.layout.yaxis.title.text == "relative intensity"


def test_a_cif_s_pattern_is_the_one_predict_writes_beside_its_cif(tmp_path):
    two_theta, profile = simulated_pattern(OXALIC_ACID)
    np.testing.assert_allclose(two_theta, pxrd.grid())
    peaks, heights = pxrd.powder_pattern(read_crystal(OXALIC_ACID))
    assert profile.max() == pytest.approx(1.0)
    assert abs(two_theta[np.argmax(profile)] - peaks[np.argmax(heights)]) < 0.1  # the strongest peak
    written = pxrd.read_pattern(pxrd.write_pattern(tmp_path / "p.xy", peaks, heights))
    np.testing.assert_allclose(written[0], two_theta, atol=1e-3)
    np.testing.assert_allclose(written[1], 100.0 * profile, atol=1e-3)
