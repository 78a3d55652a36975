"""The static view of a run (orion_nb/notebook/static.py): what a saved or shared notebook shows.

Runs are real (engine, SQLite), rebuilt from the database with ``orion_nb.view``; the HTML is
checked the way readers meet it: parsed as a browser would, and sanitised with an allow-list
(``nh3``) that keeps only the tags and attributes GitHub documents as allowed.
"""

from __future__ import annotations

import html.parser
import json
import re
from typing import Any

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.notebook import static
from orion_nb.notebook.model import TASK_COLUMNS, RunModel
from orion_nb.notebook.widget import RunView

# github/markup's sanitization filter (html-pipeline WHITELIST): elements and attributes kept
GITHUB_TAGS = set(
    [
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "h7",
        "h8",
        "br",
        "b",
        "i",
        "strong",
        "em",
        "a",
        "pre",
        "code",
        "img",
        "tt",
        "div",
        "ins",
        "del",
        "sup",
        "sub",
        "p",
        "ol",
        "ul",
        "table",
        "thead",
        "tbody",
        "tfoot",
        "blockquote",
        "dl",
        "dt",
        "dd",
        "kbd",
        "q",
        "samp",
        "var",
        "hr",
        "ruby",
        "rt",
        "rp",
        "li",
        "tr",
        "td",
        "th",
        "s",
        "strike",
        "summary",
        "details",
    ]
)
GITHUB_ALL_ATTRIBUTES = set(
    [
        "abbr",
        "accept",
        "accept-charset",
        "accesskey",
        "action",
        "align",
        "alt",
        "axis",
        "border",
        "cellpadding",
        "cellspacing",
        "char",
        "charoff",
        "charset",
        "checked",
        "clear",
        "cols",
        "colspan",
        "color",
        "compact",
        "coords",
        "datetime",
        "dir",
        "disabled",
        "enctype",
        "for",
        "frame",
        "headers",
        "height",
        "hreflang",
        "hspace",
        "ismap",
        "label",
        "lang",
        "maxlength",
        "media",
        "method",
        "multiple",
        "name",
        "nohref",
        "noshade",
        "nowrap",
        "open",
        "prompt",
        "readonly",
        "rel",
        "rev",
        "rows",
        "rowspan",
        "rules",
        "scope",
        "selected",
        "shape",
        "size",
        "span",
        "start",
        "summary",
        "tabindex",
        "target",
        "title",
        "type",
        "usemap",
        "valign",
        "value",
        "vspace",
        "width",
        "itemprop",
    ]
)
GITHUB_ATTRIBUTES = {
    "a": {"href"},
    "img": {"src", "longdesc"},
    "div": {"itemscope", "itemtype"},
    "blockquote": {"cite"},
    "del": {"cite"},
    "ins": {"cite"},
    "q": {"cite"},
}

NASTY = [
    "<img src=x onerror=alert(1)>",
    "</table></div><script>alert(1)</script>",
    "\"'><svg onload=alert(1)>",
    "a & b &amp; c",
    "<!-- comment -->",
    "]]><![CDATA[",
    "line\nbreak\ttab",
    "lone \ud800 surrogate",
    "nul \x00 byte",
    "x" * 5000,
    "javascript:alert(1)",
    "<style>*{display:none}</style>",
]


def sanitize_like_github(markup: str) -> str:
    import nh3

    attributes = {tag: set(GITHUB_ALL_ATTRIBUTES) for tag in GITHUB_TAGS}
    for tag, extra in GITHUB_ATTRIBUTES.items():
        attributes[tag] |= extra
    return nh3.clean(
        markup,
        tags=GITHUB_TAGS,
        attributes=attributes,
        url_schemes={"http", "https", "mailto"},
        link_rel=None,
    )


class Parsed(html.parser.HTMLParser):
    """Tags, attributes, text and tables of an HTML fragment, as a browser would see them."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self._stack: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def content(self) -> str:
        return "".join(self.text)

    def table(self, first_header: str) -> list[list[str]]:
        """The table whose first header cell is ``first_header``."""
        return next(t for t in self.tables if t and t[0] and t[0][0] == first_header)


@task(cache_key_fn=lambda ctx, params: str(params["i"]))
def cached(i: int) -> int:
    return i


@task
def combine(values: list[int]) -> int:
    return sum(values)


@flow(name="etl")
def etl() -> int:
    return combine([cached(i) for i in range(5)])


def run_id_of_latest() -> str:
    return str(orion_nb.flow_runs().iloc[0]["id"])


def test_summary_names_the_run_its_state_duration_and_counts():
    etl()
    etl()  # the second run reads all five from the cache
    report = orion_nb.view(run_id_of_latest())
    name = report.run["name"]
    assert re.fullmatch(
        rf"Flow run etl/{name}: Completed in [\d.]+ m?s, 6 task runs \(5 Cached, 1 Completed\)",
        report.text,
    ), report.text
    assert repr(report) == report.text
    bundle = report._repr_mimebundle_()
    assert bundle["text/plain"] == report.text
    # the HTML's first line reads as the same sentence, for screen readers and markdown exports
    first = Parsed(bundle["text/html"].split("</p>")[0] + "</p>").content
    assert first.strip().startswith(report.text), first


def test_html_has_header_task_table_and_an_svg_timeline_without_script_or_url():
    @task(retries=1, retry_delay_seconds=0)
    def flaky(tries: list[int]) -> int:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("first try fails")
        return len(tries)

    @task
    def broken() -> None:
        raise ValueError("bad row")

    @flow(name="report")
    def report_flow() -> None:
        orion_nb.get_run_logger().info("loading")
        flaky([])
        broken(return_state=True)

    report_flow()
    markup = orion_nb.view(run_id_of_latest()).html
    parsed = Parsed(markup)
    assert "script" not in parsed.tags and "iframe" not in parsed.tags
    assert not [a for a in parsed.attrs if a[1].startswith("on") or a[1] in ("href", "src", "id")]
    assert not re.search(r"(?i)https?:|url\(|//[a-z]", markup)
    rows = {r[0]: r for r in parsed.table("Task run")}
    assert rows["flaky-0"][1] == "Completed" and rows["flaky-0"][4] == "2"  # two tries
    assert rows["broken-0"][1] == "Failed"
    # one bar per attempt, coloured by how it ended; the reason is in the row's tooltip
    assert parsed.tags.count("svg") == 2 and parsed.tags.count("rect") == 3
    titles = [v for t, k, v in parsed.attrs if t == "td" and k == "title" and v]
    assert any("attempt 1 of 2: Failed" in t and "attempt 2 of 2: Completed" in t for t in titles)
    assert "ValueError: bad row" in parsed.content  # the error, in a <details>
    assert "RetryFailedRuns" in parsed.content  # the rule decisions
    assert "loading" in parsed.content  # the logs
    assert "<text" not in markup and "<title" not in markup  # no text node inside the SVG


def snapshot_named(name: str) -> dict[str, Any]:
    """A finished run whose flow, run, task, error, log and rule reason are all ``name``."""
    from orion_nb._events import flow_event, log_event, state_event, task_event

    model = RunModel()
    t = 1_764_000_000.0
    model.apply(flow_event("f-1", name, name, {}, [], None, None, None, None, t))
    model.apply(state_event("f-1", "flow", "RUNNING", "Running", t, None, None, 1))
    model.apply(task_event("t-1", "f-1", name, "k", "0", name, [], t))
    model.apply(state_event("t-1", "task", "RUNNING", "Running", t, None, None, 1))
    model.apply(state_event("t-1", "task", "FAILED", "AwaitingRetry", t + 1, name, name, 1))
    model.apply(state_event("t-1", "task", "RUNNING", "Retrying", t + 2, None, None, 2))
    model.apply(state_event("t-1", "task", "FAILED", "Failed", t + 3, name, None, 2, name))
    model.apply(log_event("f-1", "t-1", "WARNING", t + 3, name, name))
    model.apply(state_event("f-1", "flow", "FAILED", "Failed", t + 4, name, None, 1))
    return model.snapshot(now=t + 4)


@pytest.mark.parametrize("name", NASTY, ids=lambda n: repr(n[:24]))
def test_any_user_string_is_shown_as_text(name: str):
    snap = snapshot_named(name)
    report = static.RunReport(snap)
    markup = report.html
    markup.encode("utf-8")  # every string encodes (a lone surrogate would break the kernel message)
    json.dumps(report._repr_mimebundle_(), ensure_ascii=False).encode("utf-8")
    parsed = Parsed(markup)
    allowed = {"div", "p", "b", "span", "table", "thead", "tbody", "tr", "th", "td", "svg"}
    allowed |= {"line", "rect", "details", "summary", "pre", "code"}
    assert set(parsed.tags) <= allowed, set(parsed.tags) - allowed
    assert not [a for a in parsed.attrs if a[1].startswith("on") or a[1] in ("href", "src")]
    shown = " ".join(static._text(name, 100).replace("\x00", "\ufffd").split())
    visible = " ".join(parsed.content.replace("\x00", "\ufffd").split())
    assert visible.count(shown[:90]) >= 5  # flow, run, task run, reason, error, log: as typed
    assert "\n" not in report.text


def test_names_from_the_database_are_shown_as_text():
    @task(name="<img src=x onerror=alert(1)>")
    def odd() -> None:
        raise RuntimeError("</table><script>alert(1)</script>")

    @flow(name="a & <b>")
    def f() -> None:
        odd(return_state=True)

    f()
    parsed = Parsed(orion_nb.view(run_id_of_latest()).html)
    assert "img" not in parsed.tags and "script" not in parsed.tags
    assert "Flow run a & <b>/" in parsed.content
    assert "<img src=x onerror=alert(1)>-0" in parsed.content
    assert "</table><script>alert(1)</script>" in parsed.content


def test_sanitised_html_still_reads_as_a_table_of_tasks_and_states():
    @task(name="<b>load</b> & check")
    def load(i: int) -> int:
        if i == 2:
            raise ValueError("row 2 is bad")
        return i

    @flow(name="nightly")
    def nightly() -> None:
        for i in range(4):
            load(i, return_state=True)

    nightly()
    clean = sanitize_like_github(orion_nb.view(run_id_of_latest()).html)
    parsed = Parsed(clean)
    assert "svg" not in parsed.tags and "span" not in parsed.tags  # stripped, as on GitHub
    assert not [a for a in parsed.attrs if a[1] in ("style", "class")]
    run_table = parsed.table("Task run")
    assert run_table[0][:2] == ["Task run", "State"]
    states = {r[0]: r[1] for r in run_table[1:] if len(r) > 2}
    assert states == {
        "<b>load</b> & check-0": "Completed",
        "<b>load</b> & check-1": "Completed",
        "<b>load</b> & check-2": "Failed",
        "<b>load</b> & check-3": "Completed",
    }
    header = Parsed(clean.split("</p>")[0]).content
    assert "nightly" in header and "Completed" in header and "4 task runs" in header
    assert "Failed 1" in " ".join(" ".join(r) for r in parsed.table("Task"))  # the group row


def ten_thousand_run_snapshot(failed_every: int = 1000) -> dict[str, Any]:
    """The view model of a flow with 10,000 task runs, built from engine-shaped events."""
    from orion_nb._events import flow_event, state_event, task_event

    model = RunModel()
    t = 1_764_000_000.0
    model.apply(flow_event("flow-1", "big", "huge-run", {}, [], None, None, None, None, t))
    model.apply(state_event("flow-1", "flow", "RUNNING", "Running", t, None, None, 1))
    for i in range(10_000):
        rid = f"{i:08d}-0000-7000-8000-000000000000"
        model.apply(task_event(rid, "flow-1", "step", "k", str(i), f"step-{i}", [], t + i / 1000))
        model.apply(state_event(rid, "task", "RUNNING", "Running", t + i / 1000, None, None, 1))
        if i % failed_every == 7:
            model.apply(
                state_event(rid, "task", "FAILED", "Failed", t + i / 1000 + 0.001, "boom", None, 1)
            )
        else:
            model.apply(
                state_event(
                    rid, "task", "COMPLETED", "Completed", t + i / 1000 + 0.001, None, None, 1
                )
            )
    model.apply(state_event("flow-1", "flow", "COMPLETED", "Completed", t + 11, None, None, 1))
    return model.snapshot(now=t + 11)


def test_a_huge_run_gives_a_bounded_view_that_keeps_every_failure():
    snap = ten_thousand_run_snapshot()
    markup = static.render_html(snap)
    assert len(markup.encode()) < 150_000, len(markup)  # not megabytes per run in a notebook
    parsed = Parsed(markup)
    run_rows = [r for r in parsed.table("Task run")[1:] if len(r) > 2]
    assert len(run_rows) == static.MAX_ROWS
    failed = [r[0] for r in run_rows if r[1] == "Failed"]
    assert len(failed) == 10  # all ten failures are among the rows shown
    assert "Showing 100 of 10,000 runs" in parsed.content
    assert static.summary(snap).endswith("10,000 task runs (9,990 Completed, 10 Failed)")


def test_format_seconds_reads_like_the_widget():
    assert static.format_seconds(0.0042) == "4.2 ms"
    assert static.format_seconds(0.31) == "0.31 s"
    assert static.format_seconds(12.44) == "12.4 s"
    assert static.format_seconds(123) == "2 min 3 s"
    assert static.format_seconds(3840) == "1 h 4 min"
    assert static.format_seconds(None) == static.NONE


def test_run_view_repr_and_bundle_are_truthful():
    etl()
    report = orion_nb.view(run_id_of_latest())
    widget = report.widget()
    try:
        text = repr(widget)
        assert "run=None" not in text and report.run["name"] in text and "Completed" in text
        bundle, _ = widget._repr_mimebundle_()
        assert bundle["text/plain"] == report.text
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["text/html"] == report.html  # the static view, where widgets cannot run
    finally:
        widget.close()
    empty = RunView()
    try:
        assert repr(empty) == "RunView(no flow run yet)"
    finally:
        empty.close()


def test_a_live_view_describes_its_run_from_the_first_moment():
    from orion_nb.notebook.live import WidgetView

    seen: list[str] = []

    class Run:
        id = "0190-live"
        name = "brave-otter"

        class flow:
            name = "etl"

    view = WidgetView(Run(), display=False)
    try:
        seen.append(repr(view.widget))
        seen.append(view.widget._repr_mimebundle_()[0]["text/plain"])
    finally:
        view.close()
        view.widget.close()
    assert seen[0] == "RunView(flow='etl', run='brave-otter', state='Pending', tasks=0)"
    assert seen[1] == "Flow run etl/brave-otter: Pending, no task runs"


def test_counts_kept_live_equal_counts_recounted():
    snap = ten_thousand_run_snapshot(failed_every=7)
    col = TASK_COLUMNS.index("state_name")
    recount: dict[str, int] = {}
    for row in snap["tasks"]:
        recount[row[col]] = recount.get(row[col], 0) + 1
    assert snap["counts"] == recount and snap["total"] == 10_000
