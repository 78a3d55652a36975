"""Awkward notebooks exported to scripts, and the scripts run for real against SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orion_nb.errors import ExportError, ParameterError
from orion_nb.export.schedules import Schedule
from orion_nb.export.script import export_notebook
from tests.export.helpers import lint, notebook, rows, run


def export(nb: Path, **kwargs: object) -> Path:
    script = nb.with_suffix(".py")
    result = export_notebook(nb, script_path=script, **kwargs)  # type: ignore[arg-type]
    script.write_text(result.text)
    return script


def flows(home: Path) -> list[tuple[str, str, bool]]:
    """(flow name, state, is a subflow) of every recorded flow run, oldest first."""
    return [
        (name, state, parent is not None)
        for name, state, parent in rows(
            home,
            "select flow_name, state_name, parent_task_run_id from flow_runs order by created",
        )
    ]


def test_the_same_notebook_gives_the_same_bytes_wherever_it_is_exported(tmp_path, monkeypatch):
    nb = notebook(
        tmp_path / "report.ipynb",
        ("md", "# Daily report\nWhat it does."),
        "import json\nimport os",
        ("n = 3", ["parameters"]),
        "%%flow build --retries 1\nrows = [i * n for i in range(n)]\nrows",
        "!echo {len(rows)}",
    )
    sched = Schedule.parse(cron="0 6 * * *", timezone="Europe/Paris")
    first = export_notebook(nb, schedule=sched, script_path=tmp_path / "report.py").text
    monkeypatch.chdir(tmp_path.parent)
    second = export_notebook(nb, schedule=sched, script_path=tmp_path / "report.py").text
    assert first == second
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert export_notebook(nb, schedule=sched, script_path=tmp_path / "report.py").text == first
    header = first.split('"""')[1]
    assert "Daily report: report.ipynb as a script" in header
    assert "Notebook: report.ipynb (sha256 " in header
    assert "Schedule: cron '0 6 * * *' (Europe/Paris)" in header
    assert "Parameters: n=3" in header
    assert 'command_line(main, cron="0 6 * * *", timezone="Europe/Paris")' in first


def test_a_script_runs_the_cells_as_one_flow_with_flow_cells_as_subflows(tmp_path):
    nb = notebook(
        tmp_path / "pipeline.ipynb",
        "from orion_nb import task\n\n@task\ndef double(x):\n    return 2 * x",
        ("n = 3\nlabel = 'daily'", ["parameters"]),
        "%%flow totals --param scale=10\nvalues = [double(i) * scale for i in range(n)]\nsum(values)",
        "%%flow again\nlast = double(values[-1])",
        "print('result', label, values, last, scale)",
        ("print('left out')", ["skip-export"]),
        ("print('kept despite remove-cell')", ["remove-cell"]),
    )
    script = export(nb)
    lint(script)
    text = script.read_text()
    assert 'print("left out")' not in text and "kept despite remove-cell" in text
    home = tmp_path / "home"
    res = run([str(script), "--param", "n=4"], home)
    assert res.returncode == 0, res.stderr
    assert "result daily [0, 20, 40, 60] 120 10" in res.stdout
    assert "120\n" in res.stdout  # the %%flow cell's value, displayed as in the notebook
    assert "kept despite remove-cell" in res.stdout and "left out" not in res.stdout
    assert flows(home) == [
        ("pipeline.ipynb", "Completed", False),
        ("totals", "Completed", True),
        ("again", "Completed", True),
    ]
    params = dict(rows(home, "select flow_name, parameters from flow_runs"))
    assert json.loads(params["pipeline.ipynb"]) == {"n": 4, "label": "daily"}
    assert json.loads(params["totals"]) == {"scale": 10}
    tasks = rows(
        home,
        "select f.flow_name, count(*) from task_runs t join flow_runs f on t.flow_run_id = f.id "
        "where t.task_name = 'double' group by f.flow_name order by f.flow_name",
    )
    assert tasks == [("again", 1), ("totals", 4)]


def test_a_papermill_output_notebook_uses_its_injected_values_as_defaults(tmp_path):
    nb = notebook(
        tmp_path / "pm.ipynb",
        ("n = 1\nregion = 'eu'", ["parameters"]),
        ("# Parameters\nn = 5\nregion = 'us'\nrun_date = '2024-01-01'\n", ["injected-parameters"]),
        "print(n, region, run_date)",
    )
    script = export(nb)
    text = script.read_text()
    assert "def main(n: int = n, region: str = region, run_date: str = run_date)" in text
    assert 'n = 5\nregion = "us"\nrun_date = "2024-01-01"' in text
    assert "# Parameters" not in text  # the injected cell is never replayed
    home = tmp_path / "home"
    res = run([str(script), "--param", "n=9"], home)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "9 us 2024-01-01"
    res = run([str(script), "--param", "n=nine"], home)
    assert res.returncode == 2 and "Parameter 'n' expects an integer" in res.stderr
    res = run([str(script), "--param", "regoin=x"], home)
    assert res.returncode == 2 and "did you mean 'region'?" in res.stderr


def test_export_time_parameters_become_the_defaults_and_are_checked(tmp_path):
    nb = notebook(tmp_path / "p.ipynb", ("n = 1", ["parameters"]), "print(n * 2)")
    script = tmp_path / "p.py"
    script.write_text(export_notebook(nb, params=["n=21"], script_path=script).text)
    res = run([str(script)], tmp_path / "home")
    assert res.stdout.splitlines()[0] == "42"
    with pytest.raises(ParameterError, match="expects an integer"):
        export_notebook(nb, params=["n=x"])


def test_future_imports_from_any_cell_move_to_the_top(tmp_path):
    nb = notebook(
        tmp_path / "fut.ipynb",
        "import math",
        "from __future__ import annotations\n\ndef area(r: Radius) -> Float:\n    return math.pi * r * r",
        "print(round(area(2), 2))",
    )
    script = export(nb)
    body = script.read_text().split('"""', 2)[2].splitlines()
    code = [line for line in body if line.strip() and not line.startswith("#")]
    assert code[0] == "from __future__ import annotations"
    res = run([str(script)], tmp_path / "home")
    assert res.returncode == 0, res.stderr
    assert "12.57" in res.stdout


def test_top_level_await_runs_the_whole_script_on_one_event_loop(tmp_path):
    nb = notebook(
        tmp_path / "aio.ipynb",
        "import asyncio\nloops = set()",
        "await asyncio.sleep(0)\nloops.add(id(asyncio.get_running_loop()))",
        "%%flow fetch\nawait asyncio.sleep(0.01)\nloops.add(id(asyncio.get_running_loop()))\n"
        "got = len(loops)",
        "print('loops', len(loops), got)",
    )
    script = export(nb)
    text = script.read_text()
    assert "async def main" in text and "async def fetch" in text
    lint(script)
    home = tmp_path / "home"
    res = run([str(script)], home)
    assert res.returncode == 0, res.stderr
    assert "loops 1 1" in res.stdout
    assert flows(home) == [("aio.ipynb", "Completed", False), ("fetch", "Completed", True)]


def test_a_failing_shell_command_fails_the_run_unlike_in_the_notebook(tmp_path):
    nb = notebook(
        tmp_path / "sh.ipynb",
        "print('before')",
        "!echo running && exit 7",
        "print('after')",
    )
    script = export(nb)
    home = tmp_path / "home"
    res = run([str(script)], home)
    assert res.returncode == 1
    assert "before" in res.stdout and "after" not in res.stdout
    assert "returned non-zero exit status 7" in res.stderr
    ((state, message),) = rows(home, "select state_name, message from flow_runs")
    assert state == "Failed" and "exit status 7" in message


def test_magics_in_blocks_and_timing_cells_export_and_run(tmp_path):
    nb = notebook(
        tmp_path / "magic.ipynb",
        "%load_ext orion_nb\n%matplotlib inline\nimport os",
        "for i in range(2):\n    # echo it\n    !echo item {i}\n    %time sq = i * i",
        "%%time\ntotal = sum(range(5))\ntotal",
        "try:\n    %pip install nothing\nexcept Exception:\n    pass\nfiles = !ls\nlen(files) > 0",
    )
    script = export(nb)
    lint(script)
    res = run([str(script)], tmp_path / "home")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[:4] == ["item 0", "item 1", "10", "True"]


def test_names_the_notebook_uses_are_never_taken_by_the_script(tmp_path):
    nb = notebook(
        tmp_path / "clash.ipynb",
        "flow = 'my flow'\nmain = 3\nrun_cells = 'x'\ndisplay = print",
        "%%flow f\nresult = flow + str(main)",
        "display(result, run_cells)",
    )
    script = export(nb)
    text = script.read_text()
    assert "from orion_nb import flow as _flow" in text
    lint(script)
    home = tmp_path / "home"
    res = run([str(script)], home)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "my flow3 x"
    assert flows(home) == [("clash.ipynb", "Completed", False), ("f", "Completed", True)]


def test_a_flow_cell_that_reassigns_its_parameter_is_refused(tmp_path):
    nb = notebook(tmp_path / "re.ipynb", "%%flow f --param n=1\nn = n + 1")
    with pytest.raises(ExportError, match="assigns to its --param 'n'"):
        export_notebook(nb)


def test_a_flow_cell_with_a_syntax_error_names_the_cell(tmp_path):
    nb = notebook(tmp_path / "bad.ipynb", ("md", "intro"), "x = 1", "%%flow load\ny = [1,\n")
    with pytest.raises(ExportError) as info:
        export_notebook(nb)
    assert "Cannot export cell 3 of bad.ipynb, line 2" in str(info.value)
    nb = notebook(tmp_path / "bad2.ipynb", "%%flow --retries=-1\nx = 1")
    with pytest.raises(ExportError, match=r"cell 1 of bad2\.ipynb.*--retries must be 0 or more"):
        export_notebook(nb)


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", "not a valid notebook"),
        ('{"cells": 3}', "not a valid notebook"),
        ("", "not a valid notebook"),
    ],
)
def test_a_file_that_is_not_a_notebook_is_refused_clearly(tmp_path, content: str, words: str):
    bad = tmp_path / "broken.ipynb"
    bad.write_text(content)
    with pytest.raises(ExportError, match=words):
        export_notebook(bad)
    with pytest.raises(ExportError, match="Cannot read the notebook"):
        export_notebook(tmp_path / "missing.ipynb")


def test_undefined_names_are_reported_as_a_note(tmp_path):
    nb = notebook(tmp_path / "u.ipynb", ("df = 1", ["skip-export"]), "print(df)")
    result = export_notebook(nb)
    assert any("df" in n and "skip-export" in n for n in result.notes)
    assert "# ruff: noqa: F821" in result.text
