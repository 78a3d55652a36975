"""The full layer: JupyterLab and Notebook 7 in Chromium run a %%flow cell, save, reopen.

While the cell runs, the output is the live RunView widget; when the run ends it becomes the
static view (same output, by display id). Saved and reopened with a fresh kernel, the notebook
shows the run, never "Error displaying widget" (neither app saves widget state by default).
One server per app (about 15 s to start and load); everything is local: the server on
127.0.0.1 with a token, Chromium headless, every non-localhost request blocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import require_or_skip
from tests.kernel.test_saved_notebooks import notebook_of

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TOKEN = "orion-test-token"

CELL = (
    "%%flow browser-demo\n"
    "import time\n"
    "@task\n"
    "def step(i):\n"
    "    time.sleep(0.3)\n"
    "    return i\n"
    "evil = task(name='<img src=x onerror=alert(1)>')(lambda: 1)\n"
    "evil()\n"
    "results = step.map(range(50)).result()\n"
    "len(results)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jupyter_server(app: str, root: Path, notebooks: dict[str, Any]) -> Iterator[str]:
    """A JupyterLab (``app="lab"``) or Notebook 7 server on 127.0.0.1 serving ``notebooks``.

    Settings and runtime files live under ``root``; orion_nb's home is ``root/orion_home``.
    Yields the base URL once the server answers; stops it afterwards.
    """
    command = f"jupyter-{app}"
    require_or_skip(Path(CHROMIUM).exists(), "Chromium (/usr/bin/chromium)")
    require_or_skip(
        shutil.which(command, path=str(Path(sys.executable).parent)) is not None,
        "JupyterLab" if app == "lab" else "Jupyter Notebook 7",
    )
    cfg = root / "cfg"
    settings = cfg / "lab-settings"
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"autoStartDefaultKernel": True})
    )
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    (cfg / "labconfig").mkdir(parents=True)
    (cfg / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/debugger-extension": True}})
    )
    work = root / "work"
    work.mkdir()
    for name, nb in notebooks.items():
        nbformat.write(nb, work / name)
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(cfg),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "ORION_NB_HOME": str(root / "orion_home"),
    }
    env.pop("ORION_NB_DATABASE_URL", None)
    env.pop("ORION_NB_DISPLAY", None)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / command),
            "--no-browser",
            "--allow-root",
            f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={work}",
            "--LabApp.expose_app_in_browser=True"
            if app == "lab"
            else "--JupyterNotebookApp.expose_app_in_browser=True",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "lab.log", "wb"),  # noqa: SIM115 - lives as long as the server
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(
                        f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module", params=["lab", "notebook"])
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, str]]:
    app = request.param
    root = tmp_path_factory.mktemp(app)
    nb = notebook_of("%load_ext orion_nb\nfrom orion_nb import task\nimport orion_nb", CELL)
    with jupyter_server(app, root, {"demo.ipynb": nb}) as base:
        yield base, root, app


READY = """() => {
    const app = window.jupyterapp;
    if (!app || !app.shell) return false;
    const w = app.shell.currentWidget;
    if (!w || !w.context || !w.context.isReady || !w.sessionContext) return false;
    const s = w.sessionContext;
    const k = s.session && s.session.kernel;
    return s.isReady && !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""


def open_notebook(p: Any, url: str, viewport: tuple[int, int]) -> tuple[Any, Any, list[str]]:
    """Chromium on ``url`` (the token added), ready to run: (browser, page, dialogs opened).

    Every request that leaves this machine is blocked; the page is returned once the
    notebook's kernel is connected and idle (:data:`READY`).
    """
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(
                ("http://127.0.0.1", "http://localhost", "data:", "blob:")
            )
            else route.abort()
        ),
    )
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{url}?token={TOKEN}")
    page.wait_for_function(READY, timeout=90_000)
    return browser, page, dialogs


def _shut_down_kernels(base: str) -> None:
    """Ends every session and its kernel through the server's REST API (a fresh start)."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={TOKEN}", timeout=10) as r:
        sessions = json.load(r)
    for session in sessions:
        req = urllib.request.Request(
            f"{base}/api/sessions/{session['id']}?token={TOKEN}", method="DELETE"
        )
        urllib.request.urlopen(req, timeout=30).close()


def test_flow_cell_is_live_while_it_runs_and_stays_visible_after_reopening(lab):
    from playwright.sync_api import expect, sync_playwright

    base, root, app = lab
    url = f"{base}/lab/tree/demo.ipynb" if app == "lab" else f"{base}/notebooks/demo.ipynb"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser, page, dialogs = open_notebook(p, url, (1300, 1000))
        # don't await the command: it resolves only when every cell has finished
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        widget = page.locator(".onb-runview").first
        try:
            expect(widget).to_be_visible(timeout=60_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / f"{app}-first-output.png"))
        badge = widget.locator(".onb-header [data-state]").first
        # while the 50 tasks run, the live widget shows the flow Running and counts growing
        expect(badge).to_have_attribute("data-state", "Running", timeout=30_000)
        expect(widget.locator(".onb-counts [data-state='Completed']").first).to_be_visible(
            timeout=30_000
        )
        page.screenshot(path=str(ARTIFACTS / f"{app}-running.png"))
        if app == "lab":
            # the picture in docs/notebook.md is a copy of this artifact
            widget.screenshot(path=str(ARTIFACTS / "runview-jupyterlab.png"))
        # the run ends: the same output becomes the static view
        static = page.locator(".orion-nb-run").first
        expect(static).to_have_attribute("data-state", "Completed", timeout=90_000)
        check_static_view(static, page)
        assert page.locator(".onb-runview").count() == 0
        page.screenshot(path=str(ARTIFACTS / f"{app}-completed.png"))
        # save, end the kernel, reopen: a fresh kernel, no widget state in the file
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        saved = root / "work" / "demo.ipynb"
        deadline = time.monotonic() + 30
        while "orion-nb-run" not in saved.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "orion-nb-run" in saved.read_text()
        _shut_down_kernels(base)
        page.reload()
        page.wait_for_function(READY, timeout=90_000)
        static = page.locator(".orion-nb-run").first
        expect(static).to_have_attribute("data-state", "Completed", timeout=30_000)
        check_static_view(static, page)
        expect(page.get_by_text("Error displaying widget")).to_have_count(0)
        assert page.locator(".onb-runview").count() == 0
        assert dialogs == []
        page.screenshot(path=str(ARTIFACTS / f"{app}-reopened.png"))
        static.screenshot(path=str(ARTIFACTS / f"sharing-{app}-reopened.png"))
        browser.close()


def check_static_view(static, page) -> None:
    from playwright.sync_api import expect

    expect(static).to_contain_text("51 task runs (51 Completed)")
    expect(static.locator("svg")).to_have_count(51)
    # the task named like an HTML tag is shown as text, never as markup
    expect(static.get_by_text("<img src=x onerror=alert(1)>-0", exact=True)).to_be_visible()
    assert static.locator("img").count() == 0
    assert page.locator("img[src=x]").count() == 0
