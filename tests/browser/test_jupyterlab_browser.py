"""The full layer for the history browser: JupyterLab in Chromium, a real kernel and history.

A notebook runs three flows (one fails), then ``%orion browse``. The browser lists them with
their states; the Failed filter leaves the failed one; clicking it opens its RunView with the
error, and its Graph tab draws the run's edges. A flow run afterwards (from the kernel, while
the browser is shown) appears in the filtered list from the live poll. One test, one server.
The screenshots in docs/notebook.md ("Browsing history", "Reading a run's graph") are copies
of this test's artifacts.

One run's name is rich markup built to inject a script (issue 7): ``%orion runs`` in the same
notebook must print it as text, with no element made from it and no dialog.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.test_jupyterlab import jupyter_server, open_notebook
from tests.kernel.test_saved_notebooks import notebook_of

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# rich markup that would become a link with an <img onerror> if it were ever read as markup
INJECTION = '[link=x"><img/src="x"/onerror=alert(1)>]x[/link] [/]'
SETUP = (
    "%load_ext orion_nb\nimport contextlib\nimport orion_nb\nfrom orion_nb import flow, task\n"
    f"INJECTION = {INJECTION!r}"
)
FLOWS = """
@task
def load(n: int) -> list[int]:
    return list(range(n))

@task
def clean(rows: list[int]) -> list[int]:
    return [r for r in rows if r % 2]

@task
def count(rows: list[int]) -> int:
    return len(rows)

@task
def save(rows: list[int], total: int) -> None:
    raise OSError("disk is full")

@flow(name="ingest")
def ingest():
    rows = load.submit(10)
    count.submit(clean.submit(rows)).result()

@flow(name="report")
def report():
    return count(load(3))

@flow(name="publish")
def publish():
    rows = clean.submit(load.submit(5))
    save.submit(rows, count.submit(rows)).result()

ingest()
report.with_options(flow_run_name=INJECTION)()
with contextlib.suppress(OSError):  # publish fails on purpose (a Failed row to show)
    publish()
"""
RUN_AGAIN = "with contextlib.suppress(OSError):\n    publish()\n"


def test_browse_filter_open_a_failed_run_and_read_its_graph(tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    nb = notebook_of(SETUP, FLOWS, "%orion browse", "%orion runs")
    ARTIFACTS.mkdir(exist_ok=True)
    with jupyter_server("lab", tmp_path, {"browse.ipynb": nb}) as base, sync_playwright() as p:
        browser, page, dialogs = open_notebook(p, f"{base}/lab/tree/browse.ipynb", (1300, 1100))
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        widget = page.locator(".onb-browser").first
        try:
            expect(widget).to_be_visible(timeout=90_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "browser-lab-first.png"))
        rows = widget.locator(".onb-bitem")
        expect(rows).to_have_count(3, timeout=30_000)
        states = dict(
            zip(
                rows.evaluate_all("rs => rs.map(r => r.dataset.flow)"),
                rows.evaluate_all("rs => rs.map(r => r.dataset.state)"),
                strict=True,
            )
        )
        assert states == {"ingest": "Completed", "report": "Completed", "publish": "Failed"}
        expect(widget.locator(".onb-blive")).to_have_text("● live", timeout=30_000)
        widget.screenshot(path=str(ARTIFACTS / "browser-jupyterlab.png"))

        widget.locator('.onb-chip[data-state="FAILED"]').click()
        expect(rows).to_have_count(1, timeout=30_000)
        expect(rows.first).to_have_attribute("data-flow", "publish")

        # a run while the browser is shown arrives through the live poll
        page.evaluate(
            """(code) => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel
                 .requestExecute({code})""",
            RUN_AGAIN,
        )
        expect(rows).to_have_count(2, timeout=30_000)
        expect(widget.locator(".onb-bcount")).to_have_text("2 runs")

        rows.first.click()
        run = widget.locator(".onb-bdetail .onb-runview")
        expect(run.locator(".onb-run-state")).to_have_text("Failed", timeout=30_000)
        expect(run.locator(".onb-message")).to_contain_text("disk is full")
        run.locator("button[data-tab=graph]").click()
        graph = run.locator(".onb-graph")
        expect(graph.locator("g.onb-gnode")).to_have_count(4, timeout=30_000)
        expect(graph.locator("path.onb-gedge")).to_have_count(4)
        nodes = graph.locator("g.onb-gnode").evaluate_all(
            "gs => Object.fromEntries(gs.map(g => [g.dataset.label.split('-')[0], Number(g.dataset.y)]))"
        )
        assert nodes["load"] < nodes["clean"] < nodes["count"] < nodes["save"]
        expect(graph.locator('g.onb-gnode[data-state="Failed"]')).to_have_count(1)
        widget.screenshot(path=str(ARTIFACTS / "graph-jupyterlab.png"))

        widget.locator(".onb-back").click()
        expect(rows).to_have_count(2)

        # %orion runs printed the hostile run name as text: no element, no link, no dialog
        table = page.locator(".jp-OutputArea-output", has_text="most recent flow runs").first
        expect(table).to_be_visible(timeout=30_000)
        # the table folds long cells: the markup is there as characters, on two lines
        expect(table).to_contain_text('[link=x"><img/src="x"/onerror=alert(1')
        expect(table).to_contain_text(")>]x[/link] [/]")
        assert table.locator("img").count() == 0 and table.locator("a").count() == 0
        assert page.locator('img[src="x"]').count() == 0
        assert dialogs == []
        browser.close()
