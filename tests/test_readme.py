"""The README's tour runs as printed (at a smaller training scale) on the bundled CIFs, and the README sends a
user nowhere outside the repository."""

import itertools
import json
import os
import re
import runpy
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _tour_code() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A tour of the API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_tour_runs_and_prints_all_three_methods(tmp_path, capsys):
    code = _tour_code()
    assert "epochs=10" in code
    code = code.replace("epochs=10", "epochs=1, subset=12, hidden=8, layers=1")
    work = tmp_path / "main"
    work.mkdir()
    script = work / "tour.py"
    script.write_text(code)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    for label in ("identity", "lerp", "gnn_md"):
        line = next(line for line in printed.splitlines() if line.startswith(label + " "))
        assert all(key in line for key in ("pm_atom", "pm_center", "collision", "separation"))


def test_torch_is_a_range_and_the_readme_says_which_and_where_the_cpu_wheel_is():
    torch = re.search(r'^\s*"(torch[<>=!~][^"]*)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    assert "==" not in torch and ">=" in torch and "<" in torch
    readme = (ROOT / "README.md").read_text()
    assert f"`{torch}`" in readme and "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme


def test_the_docs_name_no_path_outside_the_repository():
    for doc in ("README.md", "benchmarks/README.md"):
        assert "../" not in (ROOT / doc).read_text(), doc


#: Rows of the README's rigid-flow table and where its record keeps them: the set of means and the column suffix.
RIGID_ROWS = {
    "Identity (`x_w`)": ("identity", ""),
    "Collapse (`x_w` centroids)": ("collapse", ""),
    "CrystalFlow-Rigid, mean of 4 samples": ("metrics", ""),
    "CrystalFlow-Rigid, fewest clashes of 4": ("metrics", "_chosen"),
    "CrystalFlow-Rigid, oracle best of 4": ("metrics", "_best"),
}
RIGID_COLUMNS = ("pm_atom", "pm_center", "clash", "matched", "rmsd", "integrity")


def _table_after(readme: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading``, header and rule left out."""
    lines = readme.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    return [[cell.strip().strip("*") for cell in row.strip("|").split("|")] for row in table[2:]]


def test_every_figure_of_the_rigid_table_is_the_committed_record():
    readme = (ROOT / "README.md").read_text()
    record = json.loads((ROOT / "benchmarks" / "records" / "rigid_all_s0.json").read_text())
    rows = _table_after(readme, "### Rigid-body flow")
    assert [row[0] for row in rows] == list(RIGID_ROWS)  # no row without a record
    for label, *cells in rows:
        means, suffix = RIGID_ROWS[label]
        for column, cell in zip(RIGID_COLUMNS, cells, strict=True):
            places = len(cell.partition(".")[2])
            assert float(cell) == round(record[means][column + suffix], places), (label, column)
    identity, collapse = record["identity"]["matched"], record["collapse"]["matched"]
    assert f"`x_w` matches {identity:.2f} of 15 and collapse {collapse:.2f}" in readme.replace("\n  ", " ")
