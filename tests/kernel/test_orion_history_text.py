"""``%orion runs`` and ``%%flow --param`` in a real kernel: user text stays text, quotes work."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.kernel

HOSTILE = '[link=x"><img/src="x"/onerror=alert(1)>]x[/link]'


@pytest.fixture(scope="module", autouse=True)
def loaded(kernel):
    r = kernel.run("%load_ext orion_nb\nimport orion_nb\norion_nb.configure(display='none')")
    assert r["status"] == "ok", r["errors"]


def test_orion_runs_shows_hostile_names_as_text_in_the_notebook_html(kernel):
    code = (
        "@orion_nb.flow(name=" + json.dumps(HOSTILE) + ")\n"
        "def hostile():\n    return 1\n"
        "@orion_nb.flow(name='etl[/b]')\n"
        "def broken():\n    return 2\n"
        "hostile(); broken()"
    )
    assert kernel.run(code)["status"] == "ok"
    r = kernel.run("%orion runs")
    assert r["status"] == "ok", r["errors"]
    html = "".join(d.get("text/html", "") for d in r["displays"])
    text = "".join(d.get("text/plain", "") for d in r["displays"]) + r["stdout"]
    # the table folds long names over lines: look for pieces that markup would have eaten
    assert "etl[/b]" in text and '[link=x"' in text and "[/link]" in text
    if html:  # rich renders HTML in a notebook: the name must be escaped there
        assert "<img" not in html and "&lt;img" in html


def test_flow_params_with_quoted_spaces(kernel):
    r = kernel.run('%%flow quoted --param title="hello world" --param n=3\n(title, n)')
    assert r["status"] == "ok", r["errors"]
    assert r["results"][0]["text/plain"] == "('hello world', 3)"
    params = kernel.value("orion_nb.flow_runs(limit=1).iloc[0]['parameters']")
    assert params == {"title": "hello world", "n": 3}
    r = kernel.run('%%flow --param title="unclosed\n1')
    assert r["status"] == "error" and "close the quotes" in str(r["errors"]) + r["stderr"]
