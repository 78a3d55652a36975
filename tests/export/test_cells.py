"""The ``%%flow`` line is read the same way by the magic and by the export."""

from __future__ import annotations

import pytest

from orion_nb.export.cells import compile_cell, flow_line_parser, parse_flow_line


def _actions(parser: object) -> dict[str, tuple[object, ...]]:
    return {
        a.dest: (tuple(a.option_strings), a.type, a.default, a.choices, a.nargs, type(a).__name__)
        for a in parser._actions  # type: ignore[attr-defined]
        if a.dest != "help"
    }


def test_the_export_reads_the_flow_line_with_the_magics_own_options():
    from orion_nb.notebook.magics import OrionMagics

    assert _actions(flow_line_parser()) == _actions(OrionMagics.flow.parser)  # type: ignore[attr-defined]


def test_flow_line_options():
    o = parse_flow_line(
        "etl --retries 2 --retry-delay 0.5 --timeout 30 --tag a --tag b --param n=3 "
        "--param label=x --task-runner sequential --quiet",
        "default",
    )
    assert (o.name, o.retries, o.retry_delay_seconds, o.timeout_seconds) == ("etl", 2, 0.5, 30.0)
    assert o.tags == ["a", "b"] and o.parameters == {"n": 3, "label": "x"}
    assert (o.task_runner, o.quiet) == ("sequential", True)
    assert parse_flow_line("", "nb-cell-1").name == "nb-cell-1"


@pytest.mark.parametrize(
    "line, message",
    [
        ("--retries -1", "--retries must be 0 or more"),
        ("--timeout 0", "--timeout must be a positive number"),
        ("--retry-delay -2", "--retry-delay must be 0 or more"),
        ("--task-runner gpu", "invalid choice: 'gpu'"),
        ("--param nope", "is not of the form NAME=VALUE"),
        ("--color red", "unrecognized arguments: --color"),
    ],
)
def test_bad_flow_lines_say_what_is_wrong(line: str, message: str):
    with pytest.raises(ValueError, match=message):
        parse_flow_line(line, "x")


def test_a_cell_body_with_ipython_syntax_compiles_through_ipythons_transformers():
    compiled = compile_cell("x = 1\n!echo {x}\nfiles = !ls\nx")
    assert compiled.last is not None and not compiled.is_async
    with pytest.raises(SyntaxError):
        compile_cell("x = (1,\n")
