"""Run records and run_records tables: known numbers in, known table out."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from crystalflow_core import records
from crystalflow_core.metrics import METRIC_KEYS


def _data_dir(tmp_path, inversion):
    path = tmp_path / ("data_inv" if inversion else "data")
    path.mkdir(exist_ok=True)
    (path / "curation.json").write_text(json.dumps({"seed": 0, "noise": {"inversion": inversion}}))
    return path


def _per_cluster(pm_atom, pm_center, n=2):
    """A metrics table whose per-cluster values average to the given means."""
    rows = []
    for k in range(n):
        offset = 0.5 if k == 0 else -0.5
        rows.append(
            {
                "cluster_id": f"c{k}",
                "n_atoms": 34,
                "n_samples": 1,
                "pm_atom": pm_atom + offset,
                "pm_center": pm_center + offset,
                "collision": 3.0,
                "clash": 0.0,
                "separation": 90.0,
            }
        )
    return pd.DataFrame(rows)


def _write(tmp_path, method, seed, pm_atom, pm_center, subset=12, inversion=False, identity=(10.0, 9.0)):
    config = {"path": method, "seed": seed, "subset": subset, "data": str(_data_dir(tmp_path, inversion))}
    run_dir = tmp_path / "runs" / records.run_name(method, subset, seed, inversion)
    return records.write_run_record(run_dir, config, _per_cluster(pm_atom, pm_center), _per_cluster(*identity))


@pytest.fixture
def run_records(tmp_path):
    for seed, value in enumerate([1.0, 2.0, 3.0]):
        _write(tmp_path, "lerp", seed, value, 4.0 + seed)
    _write(tmp_path, "ve", 0, 5.0, 2.5)
    _write(tmp_path, "vp", 0, 0.5, 0.5, inversion=True)
    return records.load_run_records(tmp_path / "runs")


def test_record_contents(tmp_path):
    path = _write(tmp_path, "lerp", 3, 1.25, 2.0, subset=None, inversion=True)
    record = json.loads(path.read_text())
    assert record["method"] == "lerp" and record["seed"] == 3 and record["subset"] is None
    assert record["inversion"] is True
    assert record["metrics"]["pm_atom"] == pytest.approx(1.25)
    assert record["identity"]["pm_center"] == pytest.approx(9.0)
    assert record["checkpoint"].endswith("checkpoint.pt")
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", record["git_revision"])
    written = pd.read_csv(record["per_cluster_csv"])
    assert list(written["pm_atom"]) == [1.75, 0.75]


def test_data_inversion_reads_curation_json(tmp_path):
    assert records.data_inversion(_data_dir(tmp_path, True)) is True
    assert records.data_inversion(_data_dir(tmp_path, False)) is False
    assert records.data_inversion(tmp_path / "nowhere") is None


def test_load_run_records_by_dir_glob_and_empty(tmp_path, run_records):
    assert len(run_records) == 5
    assert set(run_records["method"]) == {"lerp", "ve", "vp"}
    by_glob = records.load_run_records(str(tmp_path / "runs" / "lerp_*"))
    assert sorted(by_glob["seed"]) == [0, 1, 2]
    assert by_glob["identity_pm_atom"].tolist() == [10.0] * 3
    empty = records.load_run_records(tmp_path / "nothing")
    assert empty.empty and "method" in empty.columns


def test_benchmark_table_mean_std_and_missing(run_records):
    table = records.benchmark_table(run_records, inversion=False)
    assert list(table.index) == ["GNN-MD", "CrystalSDE-VE", "CrystalSDE-VP", "CrystalFlow-LERP"]
    assert list(table.columns) == [("COD-12", "PM (atom) ↓"), ("COD-12", "PM (center) ↓")]
    lerp = table.loc["CrystalFlow-LERP"]
    # seeds 1, 2, 3 → mean 2, sample std 1; seeds 4, 5, 6 → mean 5, std 1
    assert lerp.tolist() == ["2.000 ± 1.000", "5.000 ± 1.000"]
    assert table.loc["CrystalSDE-VE"].tolist() == ["5.000", "2.500"]
    assert table.loc["GNN-MD"].tolist() == ["—", "—"]
    # the vp run has inversion: Table 1 does not show it, Table 2 shows only it
    assert table.loc["CrystalSDE-VP"].tolist() == ["—", "—"]
    table2 = records.benchmark_table(run_records, inversion=True)
    assert table2.loc["CrystalSDE-VP"].tolist() == ["0.500", "0.500"]
    assert table2.loc["CrystalFlow-LERP"].tolist() == ["—", "—"]


def test_benchmark_stats_against_numpy(run_records):
    mean, std, count = records.benchmark_stats(run_records, inversion=False)
    assert mean.loc["lerp", ("COD-12", "pm_atom")] == pytest.approx(np.mean([1.0, 2.0, 3.0]))
    assert std.loc["lerp", ("COD-12", "pm_center")] == pytest.approx(np.std([4.0, 5.0, 6.0], ddof=1))
    assert count.loc["lerp", ("COD-12", "pm_atom")] == 3
    assert count.loc["gnn_md", ("COD-12", "pm_atom")] == 0


def test_bold_marks_lowest_mean_per_column(run_records):
    mean, _, _ = records.benchmark_stats(run_records, inversion=False)
    mask = records.best_mask(mean)
    assert mask[("COD-12", "pm_atom")].tolist() == [False, False, False, True]  # lerp 2.0 < ve 5.0
    assert mask[("COD-12", "pm_center")].tolist() == [False, True, False, False]  # ve 2.5 < lerp 5.0
    page = records.benchmark_styler(run_records, inversion=False).set_uuid("t").to_html()
    bold_rules = re.findall(r"([^{}>]+)\{\s*font-weight: bold;\s*\}", page)
    selectors = {s.strip() for rule in bold_rules for s in rule.split(",")}
    assert selectors == {"#T_t_row3_col0", "#T_t_row1_col1"}


def test_identity_row_and_subset_columns(tmp_path, run_records):
    _write(tmp_path, "lerp", 0, 7.0, 7.0, subset=5000, identity=(20.0, 30.0))
    records_ = records.load_run_records(tmp_path / "runs")
    table = records.benchmark_table(records_, methods=["lerp", "identity"], inversion=False)
    assert [c[0] for c in table.columns[::2]] == ["COD-12", "COD-5K"]
    assert table.loc["Identity (x_w)"].tolist() == ["10.000 ± 0.000", "9.000 ± 0.000", "20.000", "30.000"]
    mean, _, _ = records.benchmark_stats(records_, methods=["lerp", "identity"], inversion=False)
    assert not records.best_mask(mean).loc["identity"].any()


def test_latest_record_wins_for_a_repeated_run(tmp_path):
    first = _write(tmp_path, "ve", 0, 9.0, 9.0)
    record = json.loads(first.read_text())
    record["created"] = "2000-01-01T00:00:00+00:00"
    first.write_text(json.dumps(record))
    again = tmp_path / "runs" / "ve_again"
    again.mkdir()
    record.update(created="2001-01-01T00:00:00+00:00", metrics={**record["metrics"], "pm_atom": 1.0})
    (again / "record.json").write_text(json.dumps(record))
    table = records.benchmark_table(records.load_run_records(tmp_path / "runs"), methods=["ve"])
    assert table.iloc[0, 0] == "1.000"


def test_missing_runs_and_names(run_records):
    missing = records.missing_runs(run_records, ["lerp", "vp"], [12], [0, 1], inversions=(False, True))
    assert sorted(missing["name"]) == sorted(
        ["vp_COD-12_s0", "vp_COD-12_s1", "lerp_COD-12_s0_inv", "lerp_COD-12_s1_inv", "vp_COD-12_s1_inv"]
    )
    assert records.subset_label(None) == "all" and records.subset_label(100_000) == "COD-100K"
    assert records.format_cell(np.nan, np.nan) == "—"


def test_metric_keys_are_labelled():
    assert set(METRIC_KEYS) <= set(records.METRIC_LABELS)
