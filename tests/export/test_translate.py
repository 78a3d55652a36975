"""One cell's IPython syntax in plain Python: translated in place, or refused naming the cell."""

from __future__ import annotations

import ast
import subprocess
import textwrap

import pytest

from orion_nb.errors import ExportError
from orion_nb.export import runtime
from orion_nb.export.source import indent_code
from orion_nb.export.translate import CellRef, translate_cell

REF = CellRef("awkward.ipynb", 7, "abc123")


def translate(source: str) -> str:
    return translate_cell(textwrap.dedent(source), REF).code


def run_translated(source: str, **names: object) -> dict[str, object]:
    """Execute a translated cell with the script's runtime helpers; returns its namespace."""
    t = translate_cell(textwrap.dedent(source), REF)
    ns: dict[str, object] = {
        "shell": runtime.shell,
        "shell_output": runtime.shell_output,
        "display": runtime.display,
        **names,
    }
    exec(compile(t.code, "<cell>", "exec"), ns)
    return ns


def test_shell_commands_inside_blocks_keep_their_place_and_indentation(capfd):
    ns = run_translated(
        """
        # a comment first
        for i in range(2):
            if i:
                !echo "second {i}"
            else:
                lines = !printf 'a\\nb\\n'
        """
    )
    out = capfd.readouterr().out
    assert "second 1" in out
    assert list(ns["lines"]) == ["a", "b"]  # type: ignore[call-overload]
    code = translate("for i in range(2):\n    !echo {i}\n")
    assert "    shell('echo {i}')" in code


def test_dollar_names_expand_from_python_but_shell_variables_stay_for_the_shell(capfd):
    run_translated("who = 'orion'\n!echo $who {1 + 1}\n")
    assert capfd.readouterr().out.strip() == "orion 2"
    # as in IPython: a name Python does not have leaves the whole command as written, for
    # the shell to expand ($who and $NOBODY_HAS_THIS are empty there)
    run_translated("who = 'orion'\n!echo $who {1 + 1} $NOBODY_HAS_THIS\n")
    assert capfd.readouterr().out.strip() == "{1 + 1}"


def test_a_failing_shell_command_raises_instead_of_going_on():
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_translated("!exit 3\nafter = True\n")
    assert info.value.returncode == 3
    with pytest.raises(subprocess.CalledProcessError):
        run_translated("x = !ls /no/such/dir/anywhere\n")


def test_time_and_timeit_keep_their_statement():
    ns = run_translated(
        """
        %time a = 2 * 21
        %timeit -n 3 -r 1 b = a + 1
        for i in range(1):
            %time c = i
        """
    )
    assert (ns["a"], ns["b"], ns["c"]) == (42, 43, 0)
    ns = run_translated("%%time\nx = 5\ny = x + 1\n")
    assert ns["y"] == 6
    ns = run_translated("%%timeit -n 2 setup = 10\nz = setup * 2\n")
    assert ns["z"] == 20


def test_interactive_magics_are_dropped_with_a_comment_and_pass_where_a_block_would_be_empty():
    code = translate(
        """
        %pip install pandas
        %matplotlib inline
        if True:
            %config InlineBackend.figure_format = 'svg'
        try:
            %load_ext autoreload
            %autoreload 2
        except ImportError:
            pass
        len?
        value = 1
        """
    )
    ast.parse(code)
    assert "# dropped %pip install pandas: install packages" in code
    assert "# dropped %matplotlib inline" in code
    assert "    pass  # dropped %config InlineBackend.figure_format = 'svg'" in code
    assert "    pass  # dropped %load_ext autoreload" in code
    assert "# dropped len?: help is for interactive use" in code
    assert run_translated(code)["value"] == 1


def test_the_last_expression_is_displayed_unless_the_cell_ends_with_a_semicolon(capfd):
    run_translated("x = {'a': 1}\nx\n")
    assert capfd.readouterr().out == "{'a': 1}\n"
    run_translated("x = 5\nx;\n")
    assert capfd.readouterr().out == ""
    run_translated("a, b = 1, 2\na, b\n")  # one tuple, as the notebook shows it
    assert capfd.readouterr().out == "(1, 2)\n"
    code = translate("print('hi')\n")
    assert code.strip() == "print('hi')"


def test_module_level_rewrites_for_a_function_body():
    t = translate_cell(
        textwrap.dedent(
            """
            from __future__ import annotations
            from math import *
            counts: dict[str, int] = {}  # kept
            declared: int
            global counts
            if True:
                inner: list[int] = []
            """
        ),
        REF,
    )
    assert t.future_imports == ["from __future__ import annotations"]
    assert t.star_imports == ["from math import *"]
    assert "counts = {}  # type: dict[str, int]  # kept" in t.code
    assert "# declared: int" in t.code
    assert "    inner = []  # type: list[int]" in t.code
    assert {"counts", "inner"} <= t.bound
    # it is valid inside a function that declares the names global
    body = "global counts, inner, declared\n" + t.code
    ast.parse("def run_cells():\n" + indent_code(body, "    "))


@pytest.mark.parametrize(
    "source, line, words",
    [
        ("x = 1\n%%bash\nls\n", 2, "%%bash is not on the first line"),
        ("%%bash\nls -l\n", 1, "%%bash has no equivalent"),
        ("%%capture out\nprint(1)\n", 1, "%%capture has no equivalent"),
        ("%%writefile a.txt\nhello\n", 1, "%%writefile has no equivalent"),
        ("import os\n%run other.py\n", 2, "%run has no equivalent"),
        ("%pylab inline\n", 1, "%pylab has no equivalent"),
        ("%load_ext sql\n", 1, "%load_ext sql loads an IPython extension"),
        ("%sql SELECT 1\n", 1, "%sql has no equivalent"),
        ("%who\n", 1, "%who has no equivalent"),
        ("r = %timeit -o sum([])\n", 1, "%timeit -o returns timing results"),
        ("ns = get_ipython().user_ns\n", 1, "calls get_ipython()"),
        ("x = (1,\n", 1, "not valid Python"),
        ("def f(:\n    pass\n", 1, "not valid Python"),
        ("return 5\n", 1, "'return' outside function"),
        ("if x:\n    from os import *\n", 2, "'import *' inside a block"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_what_a_script_cannot_do_stops_the_export_naming_the_cell_and_the_line(
    source: str, line: int, words: str
):
    with pytest.raises(ExportError) as info:
        translate_cell(source, REF)
    msg = str(info.value)
    assert msg.startswith(f"Cannot export cell 7 of awkward.ipynb, line {line}: ")
    assert words in msg
    quoted = source.splitlines()[line - 1].strip()
    assert f"\n    {quoted}\n" in msg
    assert "tag the cell 'skip-export'" in msg


def test_flow_cells_keep_their_line_and_return_their_last_value():
    t = translate_cell("%%flow etl --retries 2 --param n=3\ntotal = n * 2\ntotal\n", REF)
    assert t.flow is not None
    assert t.flow.line == "etl --retries 2 --param n=3"
    assert t.flow.body.code.strip().endswith("return total")
    assert t.flow.body.bound == {"total"}
    t = translate_cell("%%flow\nimport asyncio\nawait asyncio.sleep(0)\n", REF)
    assert t.is_async and t.flow is not None and t.flow.body.is_async


def test_a_syntax_error_in_a_flow_cell_names_the_cell_and_its_line():
    with pytest.raises(ExportError) as info:
        translate_cell("%%flow etl\nx = 1\ny = (2,\n", REF)
    assert "cell 7 of awkward.ipynb, line 3" in str(info.value)
    assert "y = (2," in str(info.value)


def test_indenting_leaves_multiline_strings_alone():
    code = 'x = """a\nb"""\nif x:\n    y = 1\n'
    assert indent_code(code, "    ") == '    x = """a\nb"""\n    if x:\n        y = 1\n'
