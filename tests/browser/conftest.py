"""Real Chromium for the widget tests: Playwright driving Debian's /usr/bin/chromium.

The fast layer serves ``extensions/`` and a generated ``index.html`` from ``http.server`` on
127.0.0.1; the page builds a fake anywidget model and renders ``runview.js`` into ``#root``.
Every request that does not go to that server is blocked. Without Chromium the browser tests
skip on a laptop and fail in CI (``CI=true``), where the browser must be installed.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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

# A notebook cell is about 900 px wide. The fake model behaves like anywidget's: ``set`` stores
# the value and fires ``change:<name>`` synchronously; ``on`` / ``off`` manage listeners;
# ``initialize`` runs before ``render``, as anywidget does once per model; ``__emit`` delivers a
# custom message from the "kernel" and ``__sent`` collects what the module sends back.
INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>RunView</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="runview.css">
<style>
  body { margin: 16px; width: 900px; background: var(--jp-layout-color0, #fff); }
  body[data-jp-theme-light="false"] {
    --jp-layout-color0: #111111; --jp-layout-color1: #1e1e1e; --jp-layout-color2: #2b2b2b;
    --jp-ui-font-color1: rgba(255,255,255,.87); --jp-ui-font-color2: rgba(255,255,255,.62);
    --jp-ui-font-color3: rgba(255,255,255,.42); --jp-border-color2: #3d3d3d;
    --jp-border-color3: #2f2f2f; --jp-brand-color1: #4a9eff;
  }
</style></head>
<body><div id="root"></div>
<script type="module">
import widget from "./runview.js";
const listeners = {};
const data = {run: {}, task_columns: [], tasks: [], transitions: [], logs: [], counts: {},
              now: 0, total: 0};
const model = {
  get: (name) => data[name],
  set: (name, value) => {
    data[name] = value;
    for (const fn of (listeners["change:" + name] || []).slice()) fn(model, value);
  },
  on: (event, fn) => { (listeners[event] = listeners[event] || []).push(fn); },
  off: (event, fn) => {
    listeners[event] = (listeners[event] || []).filter((f) => f !== fn);
  },
  save_changes: () => {},
  send: (msg) => { window.__sent.push(msg); },
};
window.__sent = [];
window.__model = model;
// a custom message from the kernel, as anywidget delivers it
window.__emit = (msg) => {
  for (const fn of (listeners["msg:custom"] || []).slice()) fn(msg, []);
};
window.__setAll = (snapshot) => {
  for (const [name, value] of Object.entries(snapshot)) model.set(name, value);
};
window.__frames = (n) => new Promise((resolve) => {
  const step = () => (--n <= 0 ? resolve() : requestAnimationFrame(step));
  requestAnimationFrame(step);
});
window.__uninit = widget.initialize ? widget.initialize({model}) : null;
window.__cleanup = widget.render({model, el: document.getElementById("root")});
window.__ready = true;
</script></body></html>
"""


# The history browser's page: the same fake model, with the browser's traits, and a fake
# kernel written by each test: ``window.__kernel(msg)`` answers what the module sends (pages,
# open) and ``window.__onSave()`` runs when the module saves a trait (the filters).
BROWSER_INDEX = (
    INDEX.replace(
        '<link rel="stylesheet" href="runview.css">',
        '<link rel="stylesheet" href="runview.css"><link rel="stylesheet" href="browser.css">',
    )
    .replace('import widget from "./runview.js";', 'import widget from "./browser.js";')
    .replace(
        """const data = {run: {}, task_columns: [], tasks: [], transitions: [], logs: [], counts: {},
              now: 0, total: 0};""",
        """const data = {columns: [], head: [], filters: {}, total: 0, generation: 1, chart: {},
              options: {}, status: {}, tz: ""};
Object.assign(data, window.__initial || {});""",
    )
    .replace(
        "save_changes: () => {},",
        "save_changes: () => { if (window.__onSave) window.__onSave(); },",
    )
    .replace(
        "send: (msg) => { window.__sent.push(msg); },",
        "send: (msg) => { window.__sent.push(msg); if (window.__kernel) setTimeout(() => window.__kernel(msg), 0); },",
    )
)


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable; skips without it, except in CI, where that is a failure."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if _ci():
        pytest.fail(
            f"Chromium is required for the browser tests in CI (CI=true) but {CHROMIUM} is "
            "missing; install it with `apt-get install -y chromium` (.ci/run does).",
            pytrace=False,
        )
    pytest.skip(f"Chromium is not installed at {CHROMIUM}; the browser tests are skipped.")


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """One headless Chromium per test module.

    Not per session: while Playwright's sync API is open it keeps an asyncio event loop
    running in the main thread, so ``asyncio.run()`` in any later test module would fail.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``extensions/`` as it is on disk, plus the generated test page."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html", "/browser.html"):
            body = (BROWSER_INDEX if path == "/browser.html" else INDEX).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep request logs out of the test output."""


@pytest.fixture(scope="session")
def widget_server() -> Iterator[str]:
    """Base URL of the page that renders the RunView module with a fake model."""
    handler = functools.partial(_Handler, directory=str(EXTENSIONS))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="widget-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def widget_page(
    browser: Any,
    widget_server: str,
    name: str,
    path: str = "index.html",
    init_script: str | None = None,
    viewport: tuple[int, int] = (960, 900),
) -> Iterator[Any]:
    """A fresh page of the widget server; a screenshot of it is kept as ``<name>.png``.

    ``page.errors`` collects uncaught JavaScript errors and ``page.dialogs`` every dialog
    (``alert`` …) the page opened; a test that ends with JavaScript errors fails.
    ``init_script`` runs in the page before its module (a fake kernel, initial traits).
    """
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(f"{widget_server}/")
            else route.abort()
        ),
    )
    pg = context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    if init_script:
        pg.add_init_script(init_script)
    pg.goto(f"{widget_server}/{path}")
    pg.wait_for_function("window.__ready === true")
    pg.errors = errors
    pg.dialogs = dialogs
    try:
        yield pg
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser: Any, widget_server: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page with the RunView rendered (see :func:`widget_page`)."""
    with widget_page(browser, widget_server, request.node.name) as pg:
        yield pg
