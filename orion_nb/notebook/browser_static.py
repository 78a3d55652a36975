"""The static table a history browser leaves where no widget can live.

Same rules as :mod:`orion_nb.notebook.static` (and its helpers): every user string escaped,
no script, no event attribute, no id, no URL; every fact in plain table cells so a code host
that strips ``style`` still shows it; bounded (the first :data:`MAX_ROWS` runs listed, and a
line saying how many there were and how to get all of them).
"""

from __future__ import annotations

import time
from typing import Any

from orion_nb.notebook.static import _FONT, _LEFT, _MUTED, NONE, _badge, _e, _ms, _one_line

__all__ = ["MAX_ROWS", "render_html", "summary"]

MAX_ROWS = 100


def _cell(value: Any) -> str:
    return f"<td{_LEFT}>{value}</td>"


def _stamp(ms: Any) -> str:
    if not isinstance(ms, int | float) or ms != ms:
        return NONE
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000.0))


def _duration(row: dict[str, Any], now: float) -> str:
    start, end = row.get("start"), row.get("end")
    if not isinstance(start, int | float):
        return NONE
    return _ms((end if isinstance(end, int | float) else now) - start)


def _tasks(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return NONE
    return " ".join(
        _badge(str(name), None, f"{name} {n:,}")
        for name, n in sorted(counts.items(), key=lambda kv: -kv[1])
    )


def summary(total: int, caption: str) -> str:
    """One line: ``History browser: 3 flow runs (state Failed)``."""
    return f"History browser: {total:,} flow run{'' if total == 1 else 's'}" + (
        f" ({_one_line(caption)})" if caption else ""
    )


def render_html(
    columns: list[str], rows: list[list[Any]], total: int, caption: str, now: float
) -> str:
    """The static table of the listed runs (newest first)."""
    listed = [dict(zip(columns, r, strict=False)) for r in rows[:MAX_ROWS]]
    parts = [
        f'<div class="orion-nb-browser" style="{_FONT};max-width:1100px;margin:2px 0">',
        f'<p style="margin:0 0 6px"><b>{_e(summary(total, caption))}</b></p>',
    ]
    if not listed:
        parts.append(f'<p style="{_MUTED}">No flow runs match.</p></div>')
        return "\n".join(parts)
    head = ["Flow", "Run", "State", "Start (UTC)", "Duration", "Task runs", "Deployment", "Tags"]
    parts.append(
        "<table><thead><tr>"
        + "".join(f'<th align="left"{_LEFT}>{h}</th>' for h in head)
        + "</tr></thead><tbody>"
    )
    for r in listed:
        state = str(r.get("state_name") or "Pending")
        start = r.get("start") if r.get("start") is not None else r.get("expected_start")
        deployment = r.get("deployment") or r.get("deployment_id") or NONE
        tags = ", ".join(str(t) for t in r.get("tags") or []) or NONE
        parts.append(
            "<tr>"
            + _cell(_e(r.get("flow_name"), 200))
            + _cell(_e(r.get("name"), 200))
            + _cell(_badge(state, str(r.get("state_type") or "")))
            + _cell(_e(_stamp(start)))
            + _cell(_e(_duration(r, now)))
            + _cell(_tasks(r.get("tasks")))
            + _cell(_e(deployment, 200))
            + _cell(_e(tags, 300))
            + "</tr>"
        )
    parts.append("</tbody></table>")
    if total > len(listed):
        parts.append(
            f'<p style="margin:4px 0;{_MUTED}">Showing the newest {len(listed):,} of '
            f"{total:,} runs. All of them: <code>orion_nb.flow_runs()</code></p>"
        )
    parts.append("</div>")
    return "\n".join(parts)
