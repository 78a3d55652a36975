"""Views of recorded runs: the static view (and its RunView widget) rebuilt from the database, and a plotly timeline.

A recorded run is turned back into the engine's own events and fed to the same
:class:`~orion_nb.notebook.model.RunModel` the live widget uses, so a past run looks as it did.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from orion_nb import history
from orion_nb._events import state_event
from orion_nb.errors import OrionNBError
from orion_nb.notebook.model import RunModel
from orion_nb.notebook.palette import STATE_COLORS, TYPE_COLORS
from orion_nb.notebook.static import RunReport

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["STATE_COLORS", "graph", "model_for", "resolve_run_id", "timeline", "view"]


def resolve_run_id(run: str) -> str:
    """A flow run id from a full id, a unique id prefix or suffix, a run name or a flow name."""
    df = history.flow_runs()
    if run in set(df["id"]):
        return run
    # a prefix of the full id, or its short form (the last digits, as tables show it)
    by_prefix = df[df["id"].str.startswith(run) | (df["id"].str.endswith(run) & (len(run) >= 6))]
    if len(by_prefix) == 1:
        return str(by_prefix.iloc[0]["id"])
    by_name = df[df["name"] == run]
    if len(by_name) >= 1:
        return str(by_name.iloc[0]["id"])
    by_flow = df[df["flow_name"] == run]
    if len(by_flow) >= 1:  # a flow's name: its newest run
        return str(by_flow.iloc[0]["id"])
    if len(by_prefix) > 1:
        raise OrionNBError(
            f"Run id prefix {run!r} matches {len(by_prefix)} flow runs; give more characters."
        )
    raise OrionNBError(
        f"No flow run with id or name {run!r} in this database; list recent runs with orion_nb.flow_runs()."
    )


def _ts(value: Any) -> float:
    return float(value.timestamp())


def model_for(run_id: str) -> RunModel:
    """Rebuild the view model of a recorded flow run."""
    run_id = resolve_run_id(run_id)
    tree = history.run_tree(run_id)
    flows, tasks, states, logs = tree["flows"], tree["tasks"], tree["states"], tree["logs"]
    events: list[tuple[float, int, tuple[Any, ...]]] = []
    for f in flows.itertuples():
        order = 0 if f.id == run_id else 2
        parent = f.parent_task_run_id if isinstance(f.parent_task_run_id, str) else None
        ev: tuple[Any, ...] = (
            "flow",
            f.id,
            f.flow_name,
            f.name,
            f.parameters,
            f.tags,
            parent,
            f.source,
            f.host,
            f.pid,
            _ts(f.created),
        )
        events.append((_ts(f.created) if order else float("-inf"), order, ev))
    for t in tasks.itertuples():
        ev = (
            "task",
            t.id,
            t.flow_run_id,
            t.task_name,
            t.task_key,
            t.dynamic_key,
            t.name,
            t.tags,
            _ts(t.created),
        )
        events.append((_ts(t.created), 1, ev))
        # issue 9: a task run that ran on a task runner's worker (its latest attempt's)
        worker = getattr(t, "worker", None)
        if isinstance(worker, str):
            events.append((_ts(t.created), 2, ("ran", t.id, t.host, t.pid, worker)))
    run_counts: dict[str, int] = {}
    for s in states.itertuples():
        if s.type == "RUNNING":
            run_counts[s.run_id] = run_counts.get(s.run_id, 0) + 1
        ts = _ts(s.timestamp)
        message = s.message if isinstance(s.message, str) else None
        ev = state_event(
            s.run_id,
            s.run_kind,
            str(s.type),
            str(s.name),
            ts,
            message,
            s.rule if isinstance(s.rule, str) else None,
            run_counts.get(s.run_id, 0),
        )
        events.append((ts, 3, ev))
    names = dict(zip(tasks["id"], tasks["name"], strict=False)) if not tasks.empty else {}
    names.update(dict(zip(flows["id"], flows["name"], strict=False)))
    for lg in logs.itertuples():
        rid = lg.task_run_id if isinstance(lg.task_run_id, str) else lg.flow_run_id
        ev = (
            "log",
            lg.flow_run_id,
            lg.task_run_id,
            str(lg.level),
            _ts(lg.timestamp),
            lg.message,
            names.get(rid, ""),
        )
        events.append((_ts(lg.timestamp), 4, ev))
    from orion_nb.store import browse

    for down, up, param in history._read(browse.edges, flush=False, flow_run_ids=list(flows["id"])):
        events.append((float("inf"), 5, ("edge", down, up, param)))
    events.sort(key=lambda e: (e[0], e[1]))
    model = RunModel()
    for _, _, ev in events:
        model.apply(ev)
    return model


def view(run_id: str) -> RunReport:
    """The static view of a recorded flow run (any session, any process that recorded it).

    It shows as HTML in a notebook and keeps showing after the kernel is gone (saved
    notebooks, HTML exports, code hosts); ``.widget()`` gives the interactive RunView.
    """
    model = model_for(run_id)
    end = model.run.get("end")
    return RunReport(model.snapshot(now=(end / 1000.0) if end else None))


def graph(run_id: str) -> Any:
    """The graph of a recorded flow run: its RunView at the Graph tab, static SVG when saved."""
    from orion_nb.notebook.widget import RunGraph

    model = model_for(run_id)
    end = model.run.get("end")
    widget = RunGraph()
    widget.set_snapshot({**model.snapshot(now=(end / 1000.0) if end else None), "tab": "graph"})
    return widget


def timeline(run_id: str) -> go.Figure:
    """A plotly Figure of a flow run's timeline: one bar per task run, one segment per attempt."""
    import pandas as pd
    import plotly.graph_objects as go

    model = model_for(run_id)
    snap = model.snapshot()
    rows = sorted(snap["tasks"], key=lambda r: (r[5] is None, r[5] or 0))
    fig = go.Figure()
    seen: set[str] = set()
    labels = []
    for r in rows:
        # plotly reads a few HTML tags in labels: user text is escaped so it shows as typed
        label = ("\u00a0\u00a0" * r[9]) + html.escape(r[2])
        labels.append(label)
        segments = r[7] or ([[r[5], r[6], r[3]]] if r[5] is not None else [])
        for i, (start, end, stype) in enumerate(segments):
            if start is None:
                continue
            end = end if end is not None else snap["now"]
            state_name = (
                r[4]
                if i == len(segments) - 1
                else ("Failed" if stype == "FAILED" else stype.title())
            )
            color = STATE_COLORS.get(state_name, TYPE_COLORS.get(stype, "#888"))
            legend = state_name not in seen
            seen.add(state_name)
            fig.add_trace(
                go.Bar(
                    y=[label],
                    x=[max(end - start, 1.0)],
                    base=[pd.Timestamp(start, unit="ms", tz="UTC")],
                    orientation="h",
                    marker_color=color,
                    name=state_name,
                    legendgroup=state_name,
                    showlegend=legend,
                    customdata=[[html.escape(r[2]), i + 1, state_name]],
                    hovertemplate="%{customdata[0]}<br>attempt %{customdata[1]}: %{customdata[2]}<br>%{x:.0f} ms<extra></extra>",
                )
            )
    run = snap["run"]
    fig.update_layout(
        title=html.escape(
            f"{run.get('flow_name', '')} / {run.get('name', '')}: {run.get('state_name', '')}"
        ),
        barmode="overlay",
        xaxis={"type": "date", "title": "time (UTC)"},
        yaxis={
            "autorange": "reversed",
            "categoryorder": "array",
            "categoryarray": labels,
            "title": None,
        },
        height=max(250, 22 * len(labels) + 120),
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return fig
