"""The static view of a flow run: HTML and a one-line summary for every place a widget cannot live.

A notebook outlives its kernel. It is saved and reopened, read on a code host, turned into an
HTML report by nbconvert, produced headless by papermill. None of those runs the RunView
widget, so a finished run's output carries this view instead (``text/html`` and
``text/plain``), drawn from the same snapshot the widget draws (:meth:`RunModel.snapshot`).

Rules this module keeps, and why:

- **Text, never markup.** Every user string (flow, run and task names, messages, errors, logs)
  goes through :func:`html.escape`; strings that cannot be encoded (lone surrogates) are
  shown with backslash escapes. There is no script, no event attribute, no ``id`` (two views
  in one page must not clash) and no URL of any kind, so the view renders offline.
- **Readable when sanitised.** Code hosts strip ``style``, ``class`` and ``<svg>`` (GitHub keeps
  ``table``, ``details``, ``pre``, ``b`` …). Every fact is therefore in plain tables and text;
  colour (inline styles) and the timeline (inline SVG without a single text node, so stripping
  it leaves nothing behind) are decoration on top. Hover text uses ``title`` attributes, which
  survive.
- **Bounded.** A run of 10,000 task runs must not add megabytes to a notebook: at most
  :data:`MAX_ROWS` task runs (those that did not complete first), :data:`MAX_GROUPS` task
  groups, the last :data:`MAX_DECISIONS` rule decisions and :data:`MAX_LOGS` log records, each
  text trimmed. The view says what it left out and how to get all of it.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from typing import Any

from orion_nb.notebook.palette import color_of, text_color_of

__all__ = [
    "MAX_ROWS",
    "RunReport",
    "format_seconds",
    "render_html",
    "summary",
]

MAX_ROWS = 100
MAX_GROUPS = 40
MAX_DECISIONS = 50
MAX_LOGS = 50
MAX_NAME = 200  # characters of a name shown in a cell (the title attribute has more)
MAX_ERROR = 2000  # characters of a traceback
TIMELINE_W = 220
TIMELINE_H = 14
NONE = "\u2013"  # an en dash: unknown, not started
ARROW = "\u203a"  # between the flow name and the run name
_TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
_FONT = (
    "font-family:var(--jp-ui-font-family,-apple-system,BlinkMacSystemFont,'Segoe UI',"
    "Helvetica,Arial,sans-serif);font-size:13px;line-height:1.45;"
    "color:var(--jp-ui-font-color1,#1f2328)"
)
_LEFT = ' style="text-align:left"'
_MUTED = "color:var(--jp-ui-font-color2,#59636e)"
_MONO = "font-family:var(--jp-code-font-family,SFMono-Regular,Menlo,Consolas,monospace)"


# -- text ---------------------------------------------------------------------------------------


def _text(value: Any, limit: int | None = None) -> str:
    """Any value as text that encodes as UTF-8 (lone surrogates become visible escapes)."""
    s = value if isinstance(value, str) else ("" if value is None else str(value))
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def _e(value: Any, limit: int | None = None) -> str:
    """Escaped text for element content and attribute values."""
    return html.escape(_text(value, limit), quote=True)


def _one_line(value: Any) -> str:
    return " ".join(_text(value).split())


def format_seconds(seconds: float | None) -> str:
    """``"4.2 ms"``, ``"0.31 s"``, ``"12.4 s"``, ``"2 min 3 s"``, ``"1 h 4 min"``; a dash if unknown."""
    if seconds is None or seconds != seconds:  # None or NaN
        return NONE
    seconds = max(0.0, float(seconds))
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _ms(value: float | None) -> str:
    return format_seconds(None if value is None else value / 1000.0)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# -- the snapshot, read once ----------------------------------------------------------------------


class _Row:
    """One task-run (or subflow) row of a snapshot, by column name."""

    __slots__ = (
        "attempts",
        "depth",
        "end",
        "error",
        "id",
        "index",
        "kind",
        "name",
        "parent",
        "start",
        "state",
        "task",
        "type",
    )

    def __init__(self, index: int, values: dict[str, Any]) -> None:
        self.index = index
        self.id = _text(values.get("id"))
        self.task = _text(values.get("task_name"))
        self.name = _text(values.get("name"))
        self.type = _text(values.get("state_type"))
        self.state = _text(values.get("state_name"))
        self.start = _num(values.get("start"))
        self.end = _num(values.get("end"))
        attempts = values.get("attempts")
        self.attempts = attempts if isinstance(attempts, list) else []
        self.parent = values.get("parent")
        depth = values.get("depth")
        self.depth = depth if isinstance(depth, int) and depth >= 0 else 0
        self.error = values.get("error")
        self.kind = "flow" if values.get("kind") == "flow" else "task"

    def segments(self, now: float) -> list[tuple[float, float, str, str]]:
        """One bar per attempt: (start, end, colour, outcome); the last carries the run's state."""
        if not self.attempts:
            if self.start is None:
                return []
            end = self.end if self.end is not None else now
            return [(self.start, end, self.color, self.state)]
        out = []
        last = len(self.attempts) - 1
        for i, attempt in enumerate(self.attempts):
            if not isinstance(attempt, list | tuple) or len(attempt) < 3:
                continue
            a, b, stype = _num(attempt[0]), _num(attempt[1]), _text(attempt[2])
            if a is None:
                continue
            if i == last:
                color, outcome = self.color, self.state
            else:
                color, outcome = (
                    color_of(None, stype),
                    "Failed" if stype == "FAILED" else stype.title(),
                )
            out.append((a, b if b is not None else now, color, outcome))
        return out

    @property
    def color(self) -> str:
        return color_of(self.state, self.type)

    @property
    def failed(self) -> bool:
        return bool(self.error) and self.type != "COMPLETED"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


def _rows(snapshot: dict[str, Any]) -> list[_Row]:
    columns = snapshot.get("task_columns") or []
    out = []
    for i, raw in enumerate(snapshot.get("tasks") or []):
        values = raw if isinstance(raw, dict) else dict(zip(columns, raw, strict=False))
        out.append(_Row(i, values))
    return out


def _ordered(rows: list[_Row]) -> list[_Row]:
    """Timeline order: by start, each subflow followed by its own runs (as the widget draws)."""
    flows = {r.id for r in rows if r.kind == "flow"}
    children: dict[str, list[_Row]] = {}
    for r in rows:
        parent = r.parent if isinstance(r.parent, str) and r.parent in flows else ""
        children.setdefault(parent, []).append(r)
    for kids in children.values():
        kids.sort(key=lambda r: (r.start is None, r.start or 0.0, r.index))
    out: list[_Row] = []
    seen: set[str] = set()
    stack = [iter(children.get("", []))]
    while stack:  # iterative: a deep or malformed tree must not hit the recursion limit
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            continue
        if nxt.id in seen:
            continue
        seen.add(nxt.id)
        out.append(nxt)
        if nxt.kind == "flow":
            stack.append(iter(children.get(nxt.id, [])))
    return out


def _elapsed(run: dict[str, Any], now_ms: float) -> float | None:
    start, end = _num(run.get("start")), _num(run.get("end"))
    if start is None:
        return None
    return ((end if end is not None else now_ms) - start) / 1000.0


# -- text/plain -----------------------------------------------------------------------------------


def _summary_parts(snapshot: dict[str, Any]) -> tuple[str, str, str, str]:
    """(flow name, run name, state name, the rest of the line) of :func:`summary`."""
    run = snapshot.get("run") or {}
    now = _num(snapshot.get("now")) or time.time() * 1000.0
    rows = _rows(snapshot)
    tasks = [r for r in rows if r.kind == "task"]
    flows = len(rows) - len(tasks)
    if tasks:
        counts = Counter(r.state for r in tasks)
    else:  # a header-only description: the counts it carries
        raw = snapshot.get("counts") or {}
        counts = Counter({_text(k): v for k, v in raw.items() if isinstance(v, int) and v > 0})
    n_tasks = sum(counts.values())
    elapsed = _elapsed(run, now)
    rest = ""
    if elapsed is not None:
        finished = run.get("state_type") in _TERMINAL
        rest = f" {'in' if finished else 'for'} {format_seconds(elapsed)}"
    if n_tasks:
        parts = ", ".join(f"{n:,} {_one_line(name)}" for name, n in counts.most_common())
        rest += f", {_plural(n_tasks, 'task run')} ({parts})"
    else:
        rest += ", no task runs"
    if flows:
        rest += f", {_plural(flows, 'subflow run')}"
    message = _text(run.get("message")).strip()
    if message and run.get("state_type") != "COMPLETED":
        first = _one_line(message.splitlines()[0])
        if first:
            rest += f" - {_text(first, 300)}"
    return (
        _one_line(run.get("flow_name")),
        _one_line(run.get("name")),
        _one_line(run.get("state_name") or "Pending"),
        rest,
    )


def summary(snapshot: dict[str, Any]) -> str:
    """One line: ``Flow run etl/golden-falcon: Completed in 0.31 s, 6 task runs (5 Cached, 1 Completed)``."""
    flow, run, state, rest = _summary_parts(snapshot)
    return f"Flow run {flow}/{run}: {state}{rest}"


# -- text/html ------------------------------------------------------------------------------------


def _badge(name: str, state_type: str | None = None, text: str | None = None) -> str:
    bg = color_of(name, state_type)
    style = (
        f"background:{bg};color:{text_color_of(bg)};border-radius:9px;padding:0 7px;"
        "font-size:11px;font-weight:600;white-space:nowrap"
    )
    return f'<span style="{style}">{_e(text if text is not None else name)}</span>'


def _ticks(span_ms: float) -> list[float]:
    steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000]
    steps += [120000, 300000, 600000, 900000, 1800000, 3600000, 7200000, 21600000, 86400000]
    raw = span_ms / 4
    step = next((s for s in steps if s >= raw), 86400000.0)
    return [i * step for i in range(1, int(span_ms // step) + 1)]


class _Scale:
    def __init__(self, t0: float, t1: float) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1.0)
        self.ticks = _ticks(self.t1 - self.t0)

    def x(self, t: float) -> float:
        return (t - self.t0) / (self.t1 - self.t0) * (TIMELINE_W - 2) + 1

    def svg(self, segments: list[tuple[float, float, str, str]], span: bool = False) -> str:
        """A row of the timeline: grid lines and one bar per attempt; no text node at all."""
        parts = [
            f'<svg width="{TIMELINE_W}" height="{TIMELINE_H}" viewBox="0 0 {TIMELINE_W} '
            f'{TIMELINE_H}" aria-hidden="true" style="display:block">'
        ]
        for v in self.ticks:
            gx = self.x(self.t0 + v)
            parts.append(
                f'<line x1="{gx:.1f}" x2="{gx:.1f}" y1="0" y2="{TIMELINE_H}" '
                'stroke="#d0d7de" stroke-width="1"/>'
            )
        y, h = (4, 6) if span else (2, 10)
        for a, b, color, _ in segments:
            xa = self.x(a)
            w = max(2.0, self.x(b) - xa)
            parts.append(
                f'<rect x="{xa:.1f}" y="{y}" width="{w:.1f}" height="{h}" rx="2" fill="{color}"/>'
            )
        parts.append("</svg>")
        return "".join(parts)


def _attempts_title(row: _Row, now: float) -> str:
    segs = row.segments(now)
    if not segs:
        return f"{row.name}: {row.state}, not started"
    lines = [f"{row.name} ({row.task}): {row.state}"]
    for i, (a, b, _, outcome) in enumerate(segs):
        lines.append(f"attempt {i + 1} of {len(segs)}: {outcome}, {_ms(b - a)}")
    return "\n".join(lines)


def _pick(rows: list[_Row]) -> list[_Row]:
    """At most MAX_ROWS rows in timeline order, keeping those that did not complete first."""
    if len(rows) <= MAX_ROWS:
        return rows
    keep = {r.index for r in [r for r in rows if r.type != "COMPLETED"][:MAX_ROWS]}
    for r in rows:
        if len(keep) >= MAX_ROWS:
            break
        keep.add(r.index)
    return [r for r in rows if r.index in keep]


def _header(snapshot: dict[str, Any]) -> list[str]:
    """The summary line (its text is exactly :func:`summary`), then the run's message."""
    run = snapshot.get("run") or {}
    flow, name, state, rest = _summary_parts(snapshot)
    stype = _text(run.get("state_type") or "PENDING")
    start = _num(run.get("start"))
    started = ""
    if start is not None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start / 1000.0))
        started = f' <span style="{_MUTED}">{ARROW} started {stamp} UTC</span>'
    out = [
        '<p style="margin:0 0 6px">Flow run '
        f'<b style="font-size:14px">{_e(flow, MAX_NAME)}</b>/<b>{_e(name, MAX_NAME)}</b>: '
        f"{_badge(state, stype)}{_e(rest)}{started}</p>"
    ]
    message = run.get("message")
    if message and stype != "COMPLETED":
        out.append(
            f'<pre style="margin:0 0 6px;white-space:pre-wrap;{_MONO}">'
            f"{_e(message, MAX_ERROR)}</pre>"
        )
    return out


def _groups(rows: list[_Row]) -> list[str]:
    groups: dict[tuple[str, str], list[_Row]] = {}
    for r in rows:
        groups.setdefault((r.kind, r.task), []).append(r)
    if len(groups) == len(rows):  # every task ran once: the run table says it all
        return []
    out = [
        '<table style="margin:0 0 8px">',
        '<thead><tr><th align="left" style="text-align:left">Task</th><th align="right">Runs</th>'
        '<th align="left" style="text-align:left">States</th><th align="right">Mean</th></tr></thead><tbody>',
    ]
    for (kind, task), members in list(groups.items())[:MAX_GROUPS]:
        counts = Counter((r.state, r.type) for r in members)
        badges = " ".join(_badge(n, t, f"{n} {c:,}") for (n, t), c in counts.most_common())
        done = [r.end - r.start for r in members if r.start is not None and r.end is not None]
        mean = _ms(sum(done) / len(done)) if done else NONE
        label = _e(task, MAX_NAME) + (" (subflow)" if kind == "flow" else "")
        out.append(
            f'<tr><td title="{_e(task)}" style="text-align:left">{label}</td><td align="right">{len(members):,}</td>'
            f'<td style="text-align:left">{badges}</td><td align="right">{_e(mean)}</td></tr>'
        )
    out.append("</tbody></table>")
    if len(groups) > MAX_GROUPS:
        out.append(
            f'<p style="margin:0 0 8px;{_MUTED}">{len(groups) - MAX_GROUPS:,} more tasks '
            "are not listed.</p>"
        )
    return out


def _runs(run: dict[str, Any], rows: list[_Row], now: float) -> list[str]:
    if not rows:
        return [f'<p style="margin:0 0 6px;{_MUTED}">No task runs.</p>']
    ordered = _ordered(rows)
    t0 = _num(run.get("start"))
    t1 = _num(run.get("end"))
    for r in ordered:
        for a, b, _, _ in r.segments(now):
            t0 = a if t0 is None else min(t0, a)
            t1 = b if t1 is None else max(t1, b)
    t0 = now if t0 is None else t0
    scale = _Scale(t0, t1 if t1 is not None else now)
    span = _ms(scale.t1 - scale.t0)
    shown = _pick(ordered)
    out = [
        "<table>",
        '<thead><tr><th align="left" style="text-align:left">Task run</th><th align="left" style="text-align:left">State</th>'
        '<th align="right">Start</th><th align="right">Duration</th>'
        f'<th align="right">Tries</th><th align="left" style="text-align:left">Timeline (0 {NONE} {_e(span)})</th>'
        "</tr></thead><tbody>",
    ]
    for r in shown:
        indent = "\u00a0\u00a0" * r.depth
        label = f"{indent}{_e(r.name, MAX_NAME)}"
        if r.kind == "flow":
            label = f"{indent}<b>{_e(r.task, MAX_NAME)} · {_e(r.name, MAX_NAME)}</b> (subflow)"
        offset = NONE if r.start is None else "+" + _ms(r.start - scale.t0)
        duration = NONE if r.start is None else _ms((r.end if r.end is not None else now) - r.start)
        tries = str(len(r.attempts)) if r.attempts else NONE
        out.append(
            f'<tr><td title="{_e(r.task)}" style="text-align:left">{label}</td>'
            f'<td style="text-align:left">{_badge(r.state, r.type)}</td>'
            f'<td align="right">{_e(offset)}</td><td align="right">{_e(duration)}</td>'
            f'<td align="right">{tries}</td>'
            f'<td title="{_e(_attempts_title(r, now), 1000)}" style="text-align:left">'
            f"{scale.svg(r.segments(now), span=r.kind == 'flow')}</td></tr>"
        )
        if r.failed:
            text = _text(r.error, MAX_ERROR).rstrip()
            last = text.splitlines()[-1] if text else ""
            out.append(
                '<tr><td colspan="6" style="text-align:left"><details><summary>'
                f"{_e(r.name, MAX_NAME)}: {_e(last, 300)}</summary>"
                f'<pre style="white-space:pre-wrap;margin:4px 0;{_MONO}">{_e(text)}</pre>'
                "</details></td></tr>"
            )
    out.append("</tbody></table>")
    if len(shown) < len(ordered):
        open_ = sum(1 for r in ordered if r.type != "COMPLETED")
        rid = _e(run.get("id"))
        out.append(
            f'<p style="margin:4px 0 6px;{_MUTED}">Showing {len(shown):,} of {len(ordered):,} '
            f"runs ({open_:,} that did not complete come first). All of them: "
            f"<code>orion_nb.task_runs(flow_run_id=&quot;{rid}&quot;)</code></p>"
        )
    return out


def _clock(ts: Any) -> str:
    value = _num(ts)
    if value is None:
        return ""
    return time.strftime("%H:%M:%S", time.gmtime(value / 1000.0)) + f".{int(value % 1000):03d}"


def _decisions(snapshot: dict[str, Any]) -> list[str]:
    decided = [
        t for t in snapshot.get("transitions") or [] if isinstance(t, dict) and t.get("rule")
    ]
    if not decided:
        return []
    shown = decided[-MAX_DECISIONS:]
    out = [
        f"<details><summary>Rule decisions ({len(decided):,}"
        f"{', the last ' + str(len(shown)) if len(shown) < len(decided) else ''})</summary>",
        '<table><thead><tr><th align="left" style="text-align:left">Time (UTC)</th><th align="left" style="text-align:left">Run</th>'
        '<th align="left" style="text-align:left">Change</th><th align="left" style="text-align:left">Rule</th><th align="left" style="text-align:left">Reason</th>'
        "</tr></thead><tbody>",
    ]
    for t in shown:
        change = f"{_e(t.get('from') or NONE)} → {_e(t.get('to'))}"
        out.append(
            f"<tr><td{_LEFT}>{_clock(t.get('ts'))}</td><td{_LEFT}>{_e(t.get('run'), MAX_NAME)}</td>"
            f"<td{_LEFT}>{change}</td><td{_LEFT}>{_e(t.get('rule'))}</td>"
            f"<td{_LEFT}>{_e(t.get('message'), 500)}</td></tr>"
        )
    out.append("</tbody></table></details>")
    return out


def _logs(snapshot: dict[str, Any]) -> list[str]:
    logs = [lg for lg in snapshot.get("logs") or [] if isinstance(lg, dict)]
    if not logs:
        return []
    shown = logs[-MAX_LOGS:]
    out = [
        f"<details><summary>Logs ({len(logs):,}"
        f"{', the last ' + str(len(shown)) if len(shown) < len(logs) else ''})</summary>",
        '<table><thead><tr><th align="left" style="text-align:left">Time (UTC)</th><th align="left" style="text-align:left">Level</th>'
        '<th align="left" style="text-align:left">Run</th><th align="left" style="text-align:left">Message</th></tr></thead><tbody>',
    ]
    for lg in shown:
        out.append(
            f"<tr><td{_LEFT}>{_clock(lg.get('ts'))}</td><td{_LEFT}>{_e(lg.get('level'))}</td>"
            f"<td{_LEFT}>{_e(lg.get('run'), MAX_NAME)}</td>"
            f'<td style="white-space:pre-wrap;text-align:left">{_e(lg.get("message"), 1000)}</td></tr>'
        )
    out.append("</tbody></table></details>")
    return out


def render_html(snapshot: dict[str, Any]) -> str:
    """The static HTML view of a snapshot (see the module docstring for its rules)."""
    run = snapshot.get("run") or {}
    now = _num(snapshot.get("now")) or time.time() * 1000.0
    rows = _rows(snapshot)
    parts = [
        f'<div class="orion-nb-run" data-state="{_e(run.get("state_name"))}" '
        f'style="{_FONT};max-width:980px;margin:2px 0">'
    ]
    parts += _header(snapshot)
    parts += _groups(rows)
    parts += _runs(run, rows, now)
    parts += _decisions(snapshot)
    parts += _logs(snapshot)
    parts.append("</div>")
    return "\n".join(parts)


class RunReport:
    """The static view of one flow run, as a notebook output.

    Shows as HTML in notebooks, HTML exports and on code hosts, and as its one-line summary
    wherever only text is shown (``repr``, terminals, ``nbconvert --to markdown``). A saved
    notebook keeps it without any widget state, so it reads the same after the kernel is gone.
    :meth:`widget` gives the interactive RunView of the same snapshot while a kernel runs.
    """

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot

    @property
    def run(self) -> dict[str, Any]:
        """The flow run: id, name, flow_name, state, start/end (epoch ms), message."""
        return dict(self.snapshot.get("run") or {})

    @property
    def text(self) -> str:
        """The one-line summary."""
        return summary(self.snapshot)

    @property
    def html(self) -> str:
        """The static HTML view."""
        return render_html(self.snapshot)

    def widget(self) -> Any:
        """The interactive RunView widget of this run (needs a kernel and a widget front-end)."""
        from orion_nb.notebook.widget import RunView

        view = RunView()
        view.set_snapshot(self.snapshot)
        return view

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return {"text/plain": self.text, "text/html": self.html}

    def __repr__(self) -> str:
        return self.text
