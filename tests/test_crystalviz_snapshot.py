"""Still pictures: the file is written under the name given, and the command refuses bad input in one line."""

import subprocess
import sys

import pytest
from matplotlib.image import imread

from crystalflow_core.data import codcluster17
from crystalviz.snapshot import cluster_png, main


def test_cluster_png_writes_the_name_given(small_data, tmp_path):
    cluster = codcluster17.read_cluster(small_data, codcluster17.list_cluster_ids(small_data)[0])
    written = cluster_png(tmp_path / "x_s.png", cluster.numbers, cluster.mol_index, cluster.x_s)
    assert written == tmp_path / "x_s.png" and [p.name for p in tmp_path.iterdir()] == ["x_s.png"]
    assert imread(written)[..., :3].std() > 0.05  # a drawing, not a blank canvas
    with pytest.raises(FileNotFoundError):
        cluster_png(tmp_path / "no" / "x_s.png", cluster.numbers, cluster.mol_index, cluster.x_s)
    assert not (tmp_path / "no").exists()


def test_help_exits_zero_with_usage_and_an_example():
    result = subprocess.run([sys.executable, "-m", "crystalviz.snapshot", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python3 -m crystalviz.snapshot") and "example:" in result.stdout


@pytest.mark.parametrize(
    "picture, rank, message",
    [
        ("noext", "1", "PICTURE.png='noext': a picture's name must end in .png"),
        ("best.jpg", "1", "PICTURE.png='best.jpg': a picture's name must end in .png"),
        ("missing/best.png", "1", "PICTURE.png='missing/best.png': no folder 'missing' to write it in"),
        ("best.png", "0", "--rank=0: must be a positive int"),
        ("best.png", "1", "not a crystalflow predict output"),
    ],
)
def test_bad_input_is_named_in_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys, picture, rank, message):
    monkeypatch.chdir(tmp_path)
    assert main(["missing_dir", picture, "--rank", rank]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("python3 -m crystalviz.snapshot: error: ")
    assert message in captured.err and captured.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_missing_output_directory_is_named_without_a_traceback(tmp_path):
    command = [sys.executable, "-m", "crystalviz.snapshot", str(tmp_path / "missing_dir"), str(tmp_path / "x.png")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'missing_dir'}: not a crystalflow predict output" in result.stderr
    assert list(tmp_path.iterdir()) == []
