"""ClusterBrowser in a live JupyterLab, driven in headless Chromium: the NGL stage draws and the views switch."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from test_crystalviz_browser import CHROMIUM, CHROMIUM_ARGS

CELL = """from crystalviz.demo import demo_cluster_view
from crystalviz.widgets import ClusterBrowser
browser = ClusterBrowser({"demo": {"c1": demo_cluster_view(n_samples=2, n_frames=9),
                                   "c2": demo_cluster_view(n_samples=1, n_frames=5, seed=3)}})
browser"""
CANVAS_SIZES = "Array.from(document.querySelectorAll('canvas')).map(c => [c.width, c.height])"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on loopback serving a notebook that displays a ClusterBrowser."""
    if not (os.path.exists(CHROMIUM) and shutil.which("jupyter-lab")):
        pytest.skip("chromium or jupyterlab is not installed")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(CELL)]
    nbformat.write(notebook, tmp_path / "browser.ipynb")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            "--allow-root",
            "--ServerApp.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={tmp_path}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path)},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(60):
        try:
            urllib.request.urlopen(f"{url}/api", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_cluster_browser_draws_and_switches_in_jupyterlab(lab, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    errors = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{lab}/lab/tree/browser.ipynb", timeout=90_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        # "Select Kernel" may be asked once the notebook has loaded: accept the default Python 3 kernel.
        page.locator(".jp-Dialog .jp-mod-accept").first.click(timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
        page.locator(".jp-Cell .jp-InputArea-editor").first.click()
        page.keyboard.press("Shift+Enter")
        page.wait_for_function(f"{CANVAS_SIZES}.some(([w, h]) => w > 200 && h > 200)", timeout=120_000)
        assert page.get_by_text("frame 1/9").count() == 1
        assert page.get_by_text("javascript error").count() == 0
        page.get_by_text("overlay", exact=True).click()
        page.get_by_text("PM(atom)").first.wait_for(timeout=60_000)
        page.wait_for_function(f"{CANVAS_SIZES}.some(([w, h]) => w > 200 && h > 200)", timeout=60_000)
        page.screenshot(path=str(Path(tmp_path) / "jupyterlab.png"))
        browser.close()
    assert errors == []
