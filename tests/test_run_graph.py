"""A run's graph: edges in the view model (live and rebuilt), the static picture, the linker."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.notebook import graph_static
from orion_nb.notebook._bundle import bundle
from orion_nb.notebook.model import RunModel
from orion_nb.notebook.views import model_for

EVIL = "<img src=x onerror=alert(1)>"
EXT = Path(__file__).resolve().parents[1] / "extensions"


@task
def make(x: int) -> list[int]:
    return [x]


@task
def join(a: list[int], b: list[int]) -> list[int]:
    return a + b


@flow(name="inner")
def inner(x: list[int]) -> list[int]:
    return make(len(x))


@flow(name="diamond")
def diamond() -> None:
    a = make.submit(1)
    b = make.submit(a)
    c = make.submit(a)
    join.submit(b, c).result()
    inner(a.result())


def test_a_recorded_run_has_its_edges_with_subflow_edges_on_the_subflow_row():
    diamond()
    rid = orion_nb.flow_runs(flow_name="diamond")["id"][0]
    snap = model_for(rid).snapshot()
    kind = {r[0]: (r[1], r[11]) for r in snap["tasks"]}
    edges = sorted((kind[up][0], kind[down][0], p) for down, up, p in snap["edges"])
    assert edges == [
        ("make", "inner", "x"),
        ("make", "join", "a"),
        ("make", "join", "b"),
        ("make", "make", "x"),
        ("make", "make", "x"),
    ]
    assert kind[next(d for d, u, p in snap["edges"] if kind[d][0] == "inner")][1] == "flow"


def test_live_edges_wait_for_both_ends_and_travel_in_diffs_once():
    m = RunModel()
    m.apply(("flow", "root", "f", "run", {}, [], None, None, None, None, 0.0))
    m.apply(("task", "t1", "root", "make", "k", "0", "make-0", [], 0.0))
    m.apply(("task", "mirror", "root", "inner", "subflow:inner", "0", "inner-0", [], 0.0))
    m.apply(("edge", "mirror", "t1", "x"))  # the subflow itself is not known yet
    assert m.take_diff()["edges"] == []
    m.apply(("flow", "child", "inner", "inner-run", {}, [], "mirror", None, None, None, 0.0))
    assert m.take_diff()["edges"] == [["child", "t1", "x"]]
    assert m.take_diff()["edges"] == []
    assert m.snapshot()["edges"] == [["child", "t1", "x"]]


def test_static_graph_layers_the_diamond_and_collapses_a_map():
    columns = ["id", "task_name", "name", "state_type", "state_name", "start", "end", "attempts"]
    columns += ["parent", "depth", "error", "kind"]

    def row(i: str, task: str, state: str = "Completed", name: str | None = None) -> list:
        stype = state.upper()
        return [i, task, name or task, stype, state, 1.0, 2.0, [], None, 0, None, "task"]

    rows = [row("a", "A"), row("b", "B"), row("c", "C", name=EVIL), row("d", "D", "Failed")]
    rows += [row(f"m{i}", "M") for i in range(1000)]
    edges = [["b", "a", "x"], ["c", "a", "x"], ["d", "b", "x"], ["d", "c", "y"]]
    edges += [[f"m{i}", "d", "v"] for i in range(1000)]
    snap = {"run": {"flow_name": "f", "name": EVIL}, "task_columns": columns, "tasks": rows}
    snap["edges"] = edges
    nodes, merged = graph_static.nodes_and_edges(snap)
    assert sorted(n.label for n in nodes.values()) == sorted(["A", "B", "D", "M", EVIL])
    (mapped,) = [n for n in nodes.values() if n.members > 1]
    assert mapped.members == 1000
    layer = graph_static.layers(list(nodes), list(merged))
    by = {nodes[n].label: depth for n, depth in layer.items()}
    assert by["A"] < by["B"] == by[EVIL] < by["D"] < by["M"]
    page = graph_static.render_html(snap)
    assert EVIL not in page and html.escape(EVIL) in page and "<img" not in page
    assert "\u00d71,000" in page


def test_graph_widget_opens_at_the_graph_tab_and_leaves_the_static_picture():
    diamond()
    g = orion_nb.graph(orion_nb.flow_runs(flow_name="diamond")["id"][0])
    assert g.tab == "graph" and len(g.edges) == 5
    data, _ = g._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "<svg" in data["text/html"] and "Upstream" in data["text/html"]


def test_every_front_end_entry_links_into_one_module_without_relative_imports(tmp_path: Path):
    for entry in ("runview.js", "browser.js"):
        text = bundle(EXT / entry)
        assert 'from "./' not in text and "sourceMappingURL" not in text
        assert "__orionNbImport" in text
    bad = tmp_path / "bad.js"
    bad.write_text('import "./side-effect.js";\nexport default {};\n')
    with pytest.raises(ValueError, match="cannot link"):
        bundle(bad)
    (tmp_path / "a.js").write_text('import * as b from "./b.js";\n')
    (tmp_path / "b.js").write_text('import * as a from "./a.js";\n')
    with pytest.raises(ValueError, match="circle"):
        bundle(tmp_path / "a.js")
