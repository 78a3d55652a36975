"""Real Chromium for the widget tests (Playwright driving Debian's /usr/bin/chromium).

Skips when Chromium is missing on a laptop; in CI (CI=true) a missing browser fails.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_or_skip

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = ROOT / "extensions"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="stylesheet" href="runview.css">
<style>body { font-family: sans-serif; margin: 16px; width: 900px; }</style></head>
<body><div id="root"></div>
<script type="module">
import widget from "./runview.js";
const listeners = {};
const data = {run: {}, task_columns: [], tasks: [], transitions: [], logs: [], counts: {}, now: 0, total: 0};
window.__model = {
  get: (k) => data[k],
  set: (k, v) => { data[k] = v; (listeners["change:" + k] || []).slice().forEach((f) => f()); },
  on: (e, f) => { (listeners[e] = listeners[e] || []).push(f); },
  off: (e, f) => { listeners[e] = (listeners[e] || []).filter((x) => x !== f); },
  save_changes: () => {},
  send: () => {},
};
window.__setAll = (snap) => { for (const [k, v] of Object.entries(snap)) window.__model.set(k, v); };
window.__cleanup = widget.render({model: window.__model, el: document.getElementById("root")});
window.__ready = true;
</script></body></html>
"""


@pytest.fixture(scope="session")
def widget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site = tmp_path_factory.mktemp("widget-site")
    for name in ("runview.js", "runview.css"):
        shutil.copy(EXTENSIONS / name, site / name)
    (site / "index.html").write_text(INDEX)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            """Keep the test output free of request logs."""

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # module scope: Playwright's sync API keeps an event loop running in the main thread while
    # it is open, which would change what every later test sees
    require_or_skip(Path(CHROMIUM).exists(), f"Chromium ({CHROMIUM})")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, widget_server: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 960, "height": 900})
    context.route(
        "**/*",
        lambda route: (
            route.continue_() if route.request.url.startswith("http://127.0.0.1") else route.abort()
        ),
    )
    pg = context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.goto(widget_server)
    pg.wait_for_function("window.__ready === true")
    pg.errors = errors  # type: ignore[attr-defined]
    pg.dialogs = dialogs  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()
    assert errors == [], f"JavaScript errors: {errors}"
