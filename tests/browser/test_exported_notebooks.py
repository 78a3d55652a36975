"""An executed notebook exported with ``jupyter nbconvert --to html``, read offline in Chromium.

The export is served from 127.0.0.1 and every other request is blocked (nbconvert's template
asks public CDNs for require.js and MathJax; a reader offline, or behind a strict proxy, gets
nothing from them). The run must still be there: names, states, the SVG timeline, and a task
named like markup shown as text, with no dialog opened.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.kernel.test_saved_notebooks import EVIL, env_for, execute_shared

pytestmark = pytest.mark.browser


@pytest.fixture
def exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = execute_shared(tmp_path, monkeypatch)
    res = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-nbconvert"), "--to", "html", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_for(tmp_path / "home"),
    )
    assert res.returncode == 0, res.stderr
    return tmp_path / "shared.html"


def test_html_export_shows_the_run_offline(browser, exported: Path):
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(exported.parent)
    )
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    context = browser.new_context(viewport={"width": 1100, "height": 1400})
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(base):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(f"{base}/{exported.name}")
        views = page.locator(".orion-nb-run")
        expect(views).to_have_count(2)  # the flow cell's output and orion_nb.view(...)
        run = views.first
        expect(run).to_be_visible()
        expect(run).to_have_attribute("data-state", "Completed")
        expect(run).to_contain_text("Flow run shared/")
        expect(run).to_contain_text("6 task runs (6 Completed)")
        for name in ("step-0", "step-4", f"{EVIL}-0"):
            expect(run.get_by_text(name, exact=True)).to_be_visible()
        expect(run.get_by_text("RetryFailedRuns").first).to_be_attached()
        svgs = run.locator("svg")
        expect(svgs).to_have_count(6)
        box = svgs.first.bounding_box()
        assert box is not None and box["width"] > 100  # drawn, not an empty element
        assert run.locator("img").count() == 0 and page.locator("img[src=x]").count() == 0
        assert dialogs == []
        assert blocked, "the export asked for nothing outside: this test would not notice a CDN"
        ARTIFACTS.mkdir(exist_ok=True)
        run.screenshot(path=str(ARTIFACTS / "sharing-nbconvert.png"))
    finally:
        context.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
    shutil.rmtree(exported.parent / "home", ignore_errors=True)


def test_code_host_sanitised_view_still_reads(page, exported: Path):
    """What a code host shows after its allow-list: no colour, no SVG, the same tables."""
    from tests.test_static_view import sanitize_like_github

    nb = nbformat.read(exported.with_suffix(".ipynb"), as_version=4)
    clean = sanitize_like_github(nb.cells[1].outputs[0]["data"]["text/html"])
    page.evaluate(
        "(h) => { document.getElementById('root').remove(); "
        "const d = document.createElement('div'); d.id = 'gh'; d.innerHTML = h; "
        "document.body.append(d); }",
        clean,
    )
    shown = page.locator("#gh")
    expect(shown).to_contain_text("6 task runs (6 Completed)")
    rows = shown.locator("table", has_text="Task run").locator("tr")
    expect(rows).to_have_count(7)  # the header and six task runs
    expect(shown.get_by_text(f"{EVIL}-0", exact=True)).to_be_visible()
    assert shown.locator("svg").count() == 0 and shown.locator("img").count() == 0
    shown.screenshot(path=str(ARTIFACTS / "sharing-sanitised.png"))
