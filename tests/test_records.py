"""Run records (core) and the benchmark tables shown from them (the notebook layer): known numbers in, known
table out."""

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from crystalflow_core import records
from crystalflow_core.errors import InputError
from crystalflow_core.metrics import METRIC_KEYS
from crystalflow_reports import tables


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


def _write(
    tmp_path, method, seed, pm_atom, pm_center, subset=12, inversion=False, identity=(10.0, 9.0), collapse=(0.25, 0.5)
):
    """A run record; the collapse baseline's PM is lower than every model's, so bolding it would show."""
    config = {"path": method, "seed": seed, "subset": subset, "data": str(_data_dir(tmp_path, inversion))}
    run_dir = tmp_path / "runs" / records.run_name(method, subset, seed, inversion)
    return records.write_run_record(
        run_dir,
        config,
        _per_cluster(pm_atom, pm_center),
        {"identity": _per_cluster(*identity), **({} if collapse is None else {"collapse": _per_cluster(*collapse)})},
    )


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
    assert record["collapse"]["pm_atom"] == pytest.approx(0.25)
    assert list(pd.read_csv(path.parent / records.COLLAPSE)["pm_center"]) == [1.0, 0.0]
    assert (path.parent / records.IDENTITY).is_file()
    assert record["checkpoint"].endswith("checkpoint.pt")
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", record["git_revision"])
    written = pd.read_csv(record["per_cluster_csv"])
    assert list(written["pm_atom"]) == [1.75, 0.75]


def test_load_run_records_by_dir_glob_and_empty(tmp_path, run_records):
    assert len(run_records) == 5
    assert set(run_records["method"]) == {"lerp", "ve", "vp"}
    by_glob = records.load_run_records(str(tmp_path / "runs" / "lerp_*"))
    assert sorted(by_glob["seed"]) == [0, 1, 2]
    assert by_glob["identity_pm_atom"].tolist() == [10.0] * 3
    empty = records.load_run_records(tmp_path / "nothing")
    assert empty.empty and "method" in empty.columns


def test_benchmark_table_mean_std_and_missing(run_records):
    table = tables.benchmark_table(run_records, inversion=False)
    assert list(table.index) == [
        "GNN-MD",
        "CrystalSDE-VE",
        "CrystalSDE-VP",
        "CrystalFlow-LERP",
        "CrystalFlow-Rigid",
        "MMFF94 relax of x_w",
        "Structure solution from x_w (solve)",
        "Identity (x_w)",
        "Collapse (x_w centroids)",
        "Crystal (x_s, the answer)",
    ]
    assert list(table.columns) == [("COD-12", "PM (atom) ↓"), ("COD-12", "PM (center) ↓")]
    lerp = table.loc["CrystalFlow-LERP"]
    # seeds 1, 2, 3 → mean 2, sample std 1; seeds 4, 5, 6 → mean 5, std 1
    assert lerp.tolist() == ["2.000 ± 1.000", "5.000 ± 1.000"]
    assert table.loc["CrystalSDE-VE"].tolist() == ["5.000", "2.500"]
    assert table.loc["GNN-MD"].tolist() == ["—", "—"]
    assert table.loc["MMFF94 relax of x_w"].tolist() == ["—", "—"]  # no relax record
    assert table.loc["Structure solution from x_w (solve)"].tolist() == ["—", "—"]
    assert table.loc["Crystal (x_s, the answer)"].tolist() == ["—", "—"]  # no record scored the crystal
    # the baselines come from the records of every method: lerp's three seeds and ve's seed 0
    assert table.loc["Identity (x_w)"].tolist() == ["10.000 ± 0.000", "9.000 ± 0.000"]
    assert table.loc["Collapse (x_w centroids)"].tolist() == ["0.250 ± 0.000", "0.500 ± 0.000"]
    # the vp run has inversion: Table 1 does not show it, Table 2 shows only it
    assert table.loc["CrystalSDE-VP"].tolist() == ["—", "—"]
    table2 = tables.benchmark_table(run_records, inversion=True)
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
    assert mean.loc["collapse", ("COD-12", "pm_atom")] == pytest.approx(0.25)  # lower, but a baseline
    mask = tables.best_mask(mean)
    # rows: gnn_md, ve, vp, lerp, rigid, relax, solve, identity, collapse, crystal
    assert mask[("COD-12", "pm_atom")].tolist() == [False, False, False, True] + [False] * 6  # lerp 2 < ve 5
    assert mask[("COD-12", "pm_center")].tolist() == [False, True] + [False] * 8  # ve 2.5
    page = tables.benchmark_styler(run_records, inversion=False).set_uuid("t").to_html()
    bold_rules = re.findall(r"([^{}>]+)\{\s*font-weight: bold;\s*\}", page)
    selectors = {s.strip() for rule in bold_rules for s in rule.split(",")}
    assert selectors == {"#T_t_row3_col0", "#T_t_row1_col1"}


def test_identity_row_and_subset_columns(tmp_path, run_records):
    _write(tmp_path, "lerp", 0, 7.0, 7.0, subset=5000, identity=(20.0, 30.0))
    records_ = records.load_run_records(tmp_path / "runs")
    table = tables.benchmark_table(records_, methods=["lerp", "identity"], inversion=False)
    assert [c[0] for c in table.columns[::2]] == ["COD-12", "COD-5K"]
    assert table.loc["Identity (x_w)"].tolist() == ["10.000 ± 0.000", "9.000 ± 0.000", "20.000", "30.000"]
    mean, _, _ = records.benchmark_stats(records_, methods=["lerp", "identity", "collapse"], inversion=False)
    assert not tables.best_mask(mean).loc[["identity", "collapse"]].any().any()


def test_latest_record_wins_for_a_repeated_run(tmp_path):
    first = _write(tmp_path, "ve", 0, 9.0, 9.0)
    record = json.loads(first.read_text())
    record["created"] = "2000-01-01T00:00:00+00:00"
    first.write_text(json.dumps(record))
    again = tmp_path / "runs" / "ve_again"
    again.mkdir()
    record.update(created="2001-01-01T00:00:00+00:00", metrics={**record["metrics"], "pm_atom": 1.0})
    (again / "record.json").write_text(json.dumps(record))
    table = tables.benchmark_table(records.load_run_records(tmp_path / "runs"), methods=["ve"])
    assert table.iloc[0, 0] == "1.000"


def test_missing_runs_and_names(run_records):
    missing = records.missing_runs(run_records, ["lerp", "vp"], [12], [0, 1], inversions=(False, True))
    assert sorted(missing["name"]) == sorted(
        ["vp_COD-12_s0", "vp_COD-12_s1", "lerp_COD-12_s0_inv", "lerp_COD-12_s1_inv", "vp_COD-12_s1_inv"]
    )
    assert records.subset_label(None) == "all" and records.subset_label(100_000) == "COD-100K"
    assert tables.format_cell(np.nan, np.nan) == "—"


def test_metric_keys_are_labelled():
    assert set(METRIC_KEYS) <= set(tables.METRIC_LABELS)


def _flat_records(rows):
    """A load_run_records-like frame from ``(method, seed, {metric: mean}, {baseline_metric: mean})`` rows."""
    frame = []
    for k, (method, seed, means, baselines) in enumerate(rows):
        created = f"2020-01-01T00:00:{k:02d}+00:00"
        frame.append({"method": method, "seed": seed, "subset": 12, "inversion": False, "created": created})
        frame[-1].update(means)
        frame[-1].update(baselines)
    return pd.DataFrame(frame)


def test_higher_is_better_metrics_are_bolded_by_max():
    columns = ("matched", "rmsd15", "pass_rate", "separation")
    # identity ties the best model on matched, collapse beats every model: neither may be bold
    baselines = {"identity_matched": 9.0, "collapse_matched": 15.0, "collapse_pass_rate": 100.0}
    flat = _flat_records(
        [
            ("lerp", 0, {"matched": 9.0, "rmsd15": 0.8, "pass_rate": 40.0, "separation": 90.0}, baselines),
            ("ve", 0, {"matched": 6.0, "rmsd15": 0.5, "pass_rate": 60.0, "separation": 95.0}, baselines),
        ]
    )
    mean, _, _ = records.benchmark_stats(flat, metric_cols=columns, methods=["lerp", "ve", "identity", "collapse"])
    assert mean.loc["collapse", ("COD-12", "matched")] == 15.0
    mask = tables.best_mask(mean)
    assert mask[("COD-12", "matched")].tolist() == [True, False, False, False]  # max among models, not collapse
    assert mask[("COD-12", "rmsd15")].tolist() == [False, True, False, False]  # lower is better
    assert mask[("COD-12", "pass_rate")].tolist() == [False, True, False, False]  # higher is better
    assert not mask[("COD-12", "separation")].any()  # neither: never bold
    page = tables.benchmark_styler(flat, metric_cols=columns).set_uuid("m").to_html()  # all rows, baselines too
    bold_rules = re.findall(r"([^{}>]+)\{\s*font-weight: bold;\s*\}", page)
    rows = {m: k for k, m in enumerate(records.TABLE_ROWS)}
    assert {s.strip() for rule in bold_rules for s in rule.split(",")} == {
        f"#T_m_row{rows['lerp']}_col0",
        f"#T_m_row{rows['ve']}_col1",
        f"#T_m_row{rows['ve']}_col2",
    }
    assert "Matched (of 15) ↑" in page and "RMSD₁₅ (Å) ↓" in page


def test_collapse_row_comes_from_the_latest_record_that_scored_it():
    flat = _flat_records(
        [
            ("lerp", 0, {"pm_atom": 2.0}, {"identity_pm_atom": 5.0, "collapse_pm_atom": 7.0}),
            ("ve", 0, {"pm_atom": 3.0}, {"identity_pm_atom": 6.0}),  # newer, written before collapse existed
            ("lerp", 1, {"pm_atom": 4.0}, {"identity_pm_atom": 8.0, "collapse_pm_atom": 9.0}),
        ]
    )
    mean, std, count = records.benchmark_stats(flat, metric_cols=["pm_atom"])
    assert mean.loc["identity", ("COD-12", "pm_atom")] == pytest.approx(np.mean([6.0, 8.0]))
    assert mean.loc["collapse", ("COD-12", "pm_atom")] == pytest.approx(np.mean([7.0, 9.0]))
    assert count.loc["collapse", ("COD-12", "pm_atom")] == 2
    assert count.loc["rigid", ("COD-12", "pm_atom")] == 0


def test_a_record_without_collapse_shows_it_missing(tmp_path):
    _write(tmp_path, "lerp", 0, 1.0, 2.0, collapse=None)
    run_records = records.load_run_records(tmp_path / "runs")
    table = tables.benchmark_table(run_records)
    assert table.loc["Collapse (x_w centroids)"].tolist() == ["—", "—"]
    assert table.loc["Identity (x_w)"].tolist() == ["10.000", "9.000"]


def test_metric_keys_have_a_direction_and_a_group():
    assert tables.METRIC_LABELS["matched"].endswith("↑") and tables.METRIC_LABELS["pass_rate"].endswith("↑")
    assert tables.METRIC_LABELS["rmsd"].endswith("↓") and tables.METRIC_LABELS["integrity"].endswith("↓")
    assert tables.metric_direction("separation") is None
    assert tables.metric_direction("matched_chosen") == tables.HIGHER
    assert tables.metric_label("pm_atom_best") == "PM (atom), best of k (oracle) ↓"
    groups = tables.metric_groups()
    assert sorted(key for group in groups.values() for key in group) == sorted(METRIC_KEYS)
    assert all(list(group) == [k for k in METRIC_KEYS if k in group] for group in groups.values())
    every = tables.metric_groups(["pm_atom", "matched", "rmsd15", "pass_rate", "rmsd"])
    assert every == {"PM and geometry": ("pm_atom", "rmsd"), "packing similarity": ("matched", "rmsd15", "pass_rate")}


def test_summary_rows_split_samples_and_fill_missing_metrics():
    key = METRIC_KEYS[0]
    means = {
        "CrystalFlow-LERP": {key: 1.0, f"{key}_best": 0.5, f"{key}_chosen": 0.75},
        "Identity (x_w)": {key: 3.0},
    }
    table = records.summary_rows(means)
    assert list(table.columns) == list(METRIC_KEYS)
    assert list(table.index) == [
        "CrystalFlow-LERP",
        "CrystalFlow-LERP, best of k (oracle)",
        "CrystalFlow-LERP, chosen of k (fewest clashes, lowest energy)",
        "Identity (x_w)",
    ]
    assert table[key].tolist() == [1.0, 0.5, 0.75, 3.0]
    assert table.loc["Identity (x_w)"].drop(key).isna().all()


def test_metric_means_and_run_per_cluster(tmp_path):
    per_cluster = _per_cluster(1.0, 2.0).assign(pm_atom_best=[0.0, 1.0], best_k=[0, 1], other=[5.0, 5.0])
    means = records.metric_means(per_cluster)
    assert means["pm_atom"] == pytest.approx(1.0) and means["pm_atom_best"] == pytest.approx(0.5)
    assert "best_k" not in means and "other" not in means and "n_atoms" not in means
    path = _write(tmp_path, "lerp", 0, 1.0, 2.0)
    frame = records.load_run_per_cluster(path.parent)
    assert frame.groupby("method")["pm_atom"].mean().to_dict() == {
        "CrystalFlow-LERP": pytest.approx(1.0),
        "Identity (x_w)": pytest.approx(10.0),
        "Collapse (x_w centroids)": pytest.approx(0.25),
    }


def test_model_order_puts_rigid_after_lerp():
    assert records.model_order(["lerp", "ve", "vp", "gnn_md", "rigid", "new"]) == [
        "gnn_md",
        "ve",
        "vp",
        "lerp",
        "rigid",
        "new",
    ]


def test_per_cluster_files_keep_ids_and_floats_exactly(tmp_path):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=5) * 10.0 ** rng.integers(-300, 300, 5), [0.1 + 0.2, 1 / 3, np.nan]])
    ids = ["0000102", "0000103", "NA", "1e5", "007", "2100840", "nan", "0"]
    per_cluster = _per_cluster(1.0, 2.0, n=len(ids)).assign(cluster_id=ids, pm_atom=values)
    config = {"path": "lerp", "seed": 0, "data": str(_data_dir(tmp_path, False))}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated reader options
        path = records.write_run_record(tmp_path / "run", config, per_cluster)
        read = records.load_run_per_cluster(path.parent)
    assert read["cluster_id"].tolist() == ids
    np.testing.assert_array_equal(read["pm_atom"].to_numpy(), values)  # bit for bit, NaN where NaN


def test_sampling_provenance_round_trips_and_a_bad_one_is_named(tmp_path):
    config = {"path": "lerp", "seed": 0, "data": str(_data_dir(tmp_path, False))}
    assert records.read_sampling(tmp_path / "pred") is None  # another model's predictions
    written = records.write_sampling(tmp_path / "pred", tmp_path / "run", config, "val", 3, steps=None, seed=1)
    assert records.read_sampling(tmp_path / "pred") == written
    assert written["run_dir"] == str((tmp_path / "run").resolve()) and written["settings"] == {"steps": None, "seed": 1}
    scored = {"prediction": _per_cluster(1.0, 2.0), "identity": _per_cluster(3.0, 4.0), "collapse": None}
    record = json.loads(records.record_evaluation(written, scored).read_text())
    assert record["split"] == "val" and record["samples"] == 3 and record["collapse"] == {}
    assert record["identity"]["pm_atom"] == pytest.approx(3.0)
    (tmp_path / "pred" / records.SAMPLING).write_text("[1, 2]")
    with pytest.raises(InputError, match=r"sampling.json: not written by crystalflow sample"):
        records.read_sampling(tmp_path / "pred")


def test_the_record_says_what_each_mean_rests_on_and_why(tmp_path):
    per_cluster = _per_cluster(1.0, 2.0).assign(energy=[-10.0, np.nan], unscored=["", "energy: MMFF94 cannot type it"])
    config = {"path": "lerp", "seed": 0, "data": str(_data_dir(tmp_path, False))}
    path = records.write_run_record(tmp_path / "run", config, per_cluster, {"identity": _per_cluster(3.0, 2.0)})
    record = json.loads(path.read_text())
    assert record["metrics"]["energy"] == -10.0  # the mean of the one cluster with an energy...
    assert record["coverage"] == {
        "prediction": {"energy": {"clusters": 1, "of": 2, "why": "MMFF94 cannot type it (1)"}},  # ...and it says so
        "identity": {},
    }
    assert records.coverage_lines(record["coverage"]) == [
        "prediction: energy is the mean of 1 of 2 clusters (MMFF94 cannot type it (1))"
    ]


def test_the_summary_table_prints_a_missing_mean_as_in_the_benchmark_tables():
    means = {"Collapse (x_w centroids)": {"pm_atom": 3.0361, "rmsd15": float("nan")}}
    table = tables.summary_table(means)
    row = table.loc["Collapse (x_w centroids)"]
    assert row["PM (atom) ↓"] == "3.036" and row["RMSD₁₅ (Å) ↓"] == tables.MISSING == "—"
    assert not table.isin(["nan", "NaN"]).any().any()
