"""Render the self-contained plotly report in headless Chromium: no JS errors, no network, not blank."""

import functools
import http.server
import io
import shutil
import threading
from urllib.parse import urlparse

import pytest

from crystalviz.demo import demo_cluster_view
from crystalviz.figures import overlay_figure, trajectory_figure
from crystalviz.html import write_html

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
METRICS = {"pm_atom": 0.5, "pm_center": 0.25, "collision": 1.5, "clash": 0.0, "separation": 0.0}


@pytest.fixture
def cluster():
    """A 17-molecule cluster (swap for a curated cluster when available)."""
    return demo_cluster_view(n_samples=1, n_frames=6, seed=1)


@pytest.fixture
def report_url(tmp_path, cluster):
    """Serve a page with the trajectory and overlay figures from 127.0.0.1 on a random port."""
    times, frames = cluster.trajectory(0)
    figures = [
        trajectory_figure(cluster.numbers, cluster.mol_index, frames, times, highlight_central=True),
        overlay_figure(cluster.numbers, cluster.mol_index, cluster.samples[0], cluster.x_s, metrics=METRICS),
    ]
    write_html(figures, tmp_path / "index.html")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


def test_report_renders_offline_in_chromium(report_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    image_module = pytest.importorskip("PIL.Image")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed")
    errors: list[str] = []
    blocked: list[str] = []

    def route(request_route) -> None:
        url = request_route.request.url
        if urlparse(url).hostname == "127.0.0.1":
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.route("**/*", route)
            page.goto(report_url)
            page.wait_for_selector(".main-svg", timeout=30_000)
            page.wait_for_function(
                "() => { const plots = [...document.querySelectorAll('.js-plotly-plot')];"
                " return plots.length === 2 && plots.every(p => p._fullLayout); }",
                timeout=30_000,
            )
            n_frames = page.evaluate(
                "async () => { const plot = document.querySelector('.js-plotly-plot');"
                " await Plotly.animate(plot, ['5'], {mode: 'immediate', frame: {duration: 0, redraw: true}});"
                " return plot._transitionData._frames.length; }"
            )
            assert page.locator("canvas").count() >= 2
            png = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert n_frames == 6
    assert errors == []
    assert blocked == []
    image = image_module.open(io.BytesIO(png)).convert("RGB")
    colors = image.getcolors(maxcolors=1 << 24)
    assert len(colors) > 500
    white = sum(count for count, rgb in colors if rgb == (255, 255, 255))
    assert white < 0.9 * image.width * image.height
