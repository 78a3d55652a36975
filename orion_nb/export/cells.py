"""Turning a notebook cell into a flow.

The ``%%flow`` magic calls :func:`cell_flow`: the cell body runs in the notebook's user
namespace, names it assigns stay there for later cells, the value of a trailing expression is
the flow's result, and a cell with top-level ``await`` becomes an async flow. The script export
(:mod:`orion_nb.export.script`) writes the same thing as a ``@flow`` function whose body
declares those names ``global``; both read the magic's line with :func:`parse_flow_line`.

A cell body may use IPython syntax (``!cmd``, ``%time``) as any cell can: when it is not plain
Python, :func:`compile_cell` runs IPython's own input transformers on it first.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import keyword
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from orion_nb.engine.flows import Flow
from orion_nb.engine.tags import tags as tags_context
from orion_nb.errors import ParameterError

__all__ = [
    "CellFlowOptions",
    "CompiledCell",
    "cell_flow",
    "compile_cell",
    "default_flow_name",
    "flow_line_parser",
    "options_from_namespace",
    "parse_flow_line",
    "parse_param",
]

_TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


@dataclass
class CellFlowOptions:
    """What ``%%flow`` options (or an exported cell's header) ask for."""

    name: str
    retries: int = 0
    retry_delay_seconds: float = 0
    timeout_seconds: float | None = None
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    task_runner: str | None = None  # None: the configured default (configure(task_runner=))
    quiet: bool = False


@dataclass
class CompiledCell:
    body: Any  # code object of every statement but a trailing expression
    last: Any  # code object of the trailing expression, or None
    is_async: bool
    filename: str


def compile_cell(source: str, filename: str = "<cell>") -> CompiledCell:
    """Compile a cell, splitting off a trailing expression so its value can be returned.

    Raises ``SyntaxError`` with the cell's own line numbers. A body that is not plain Python
    is first given to IPython's input transformers (``!cmd`` becomes
    ``get_ipython().system(...)``), as the kernel does for any cell.
    """
    try:
        tree = ast.parse(source, filename=filename, mode="exec")
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        transformed = TransformerManager().transform_cell(source)
        if transformed == source or transformed == source + "\n":
            raise
        tree = ast.parse(transformed, filename=filename, mode="exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        tail = tree.body.pop()
        assert isinstance(tail, ast.Expr)
        expr = ast.Expression(tail.value)
        last = compile(expr, filename, "eval", flags=_TOP_LEVEL_AWAIT)
    body = compile(tree, filename, "exec", flags=_TOP_LEVEL_AWAIT)
    is_async = bool(body.co_flags & inspect.CO_COROUTINE) or bool(
        last is not None and last.co_flags & inspect.CO_COROUTINE
    )
    return CompiledCell(body, last, is_async, filename)


def parse_param(text: str) -> tuple[str, Any]:
    """``K=V`` to ``(K, value)``: V is a Python literal if it parses as one, else a string."""
    if "=" not in text:
        raise ParameterError(f"--param {text!r} is not of the form NAME=VALUE, e.g. --param n=10.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key.isidentifier() or keyword.iskeyword(key):
        raise ParameterError(f"--param name {key!r} is not a valid Python identifier.")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


class _LineError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and exit
        raise _LineError(message)


def flow_line_parser() -> argparse.ArgumentParser:
    """The options of the ``%%flow`` line, as the magic declares them (a test keeps them equal)."""
    p = _Parser(prog="%%flow", add_help=False)
    p.add_argument("name", nargs="?", default=None)
    p.add_argument("--retries", type=int, default=0)
    p.add_argument("--retry-delay", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--tag", action="append", default=[])
    p.add_argument("--param", action="append", default=[])
    p.add_argument(
        "--task-runner",
        default=None,
        choices=["threads", "sequential", "processes", "dask"],
        help="where .submit()/.map() run (default: the configured runner)",
    )
    p.add_argument("--quiet", action="store_true")
    return p


def parse_flow_line(line: str, default_name: str) -> CellFlowOptions:
    """The options of a ``%%flow`` line; raises ``ValueError`` with the reason."""
    try:
        args = flow_line_parser().parse_args(shlex.split(line))
    except _LineError as exc:
        raise ValueError(f"%%flow {line.strip()}: {exc}") from None
    return options_from_namespace(args, args.name or default_name)


def options_from_namespace(args: argparse.Namespace, name: str) -> CellFlowOptions:
    """Check parsed ``%%flow`` options (the magic's or :func:`flow_line_parser`'s).

    Raises
    ------
    ValueError
        With a sentence saying which option is wrong and what it accepts.
    """
    if args.retries < 0:
        raise ValueError(f"--retries must be 0 or more, not {args.retries}.")
    if args.retry_delay < 0:
        raise ValueError(f"--retry-delay must be 0 or more seconds, not {args.retry_delay}.")
    if args.timeout is not None and args.timeout <= 0:
        raise ValueError(f"--timeout must be a positive number of seconds, not {args.timeout}.")
    params: dict[str, Any] = {}
    for text in args.param:
        try:
            key, value = parse_param(text)
        except ParameterError as exc:
            raise ValueError(str(exc)) from None
        params[key] = value
    return CellFlowOptions(
        name=name,
        retries=args.retries,
        retry_delay_seconds=args.retry_delay,
        timeout_seconds=args.timeout,
        tags=list(args.tag),
        parameters=params,
        task_runner=args.task_runner,
        quiet=args.quiet,
    )


def default_flow_name(notebook: str | None, cell_key: str | None) -> str:
    """``<notebook stem>-cell-<key>``, e.g. ``analysis-cell-3f2a9c1e``."""
    stem = "notebook"
    if notebook:
        stem = re.sub(r"\.ipynb$", "", notebook.replace("\\", "/").rsplit("/", 1)[-1]) or stem
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "notebook"
    return f"{stem}-cell-{cell_key}" if cell_key else f"{stem}-cell"


def cell_flow(
    source: str, namespace: dict[str, Any], options: CellFlowOptions, filename: str = "<cell>"
) -> Flow[Any, Any]:
    """A flow whose body is the cell ``source`` run in ``namespace``.

    Parameters are assigned into the namespace before the body runs (as papermill does), and
    recorded as the flow run's parameters; tags apply to every task run of the cell.
    """
    compiled = compile_cell(source, filename)
    tag_list = list(options.tags)

    if compiled.is_async:

        async def body(**params: Any) -> Any:
            __tracebackhide__ = True
            namespace.update(params)
            with tags_context(*tag_list):
                result = eval(compiled.body, namespace)
                if inspect.iscoroutine(result):
                    await result
                if compiled.last is None:
                    return None
                value = eval(compiled.last, namespace)
                if inspect.iscoroutine(value):
                    value = await value
                return value

    else:

        def body(**params: Any) -> Any:  # type: ignore[misc]
            __tracebackhide__ = True
            namespace.update(params)
            with tags_context(*tag_list):
                exec(compiled.body, namespace)
                if compiled.last is None:
                    return None
                return eval(compiled.last, namespace)

    body.__name__ = options.name
    body.__qualname__ = options.name
    return Flow(
        body,
        name=options.name,
        retries=options.retries,
        retry_delay_seconds=options.retry_delay_seconds,
        timeout_seconds=options.timeout_seconds,
        task_runner=options.task_runner,
        validate_parameters=False,
        source=filename,
    )
