"""IPython magics: ``%%flow`` runs a cell as a flow run; ``%orion`` looks at the history.

Loaded with ``%load_ext orion_nb``. Options are declared with ``magic_arguments`` so that
``%%flow?`` prints real help; bad options raise ``UsageError`` (shown without a traceback).
The cell-to-flow translation itself lives in :mod:`orion_nb.export.cells`, shared with the
script export.
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from rich.console import Console

from orion_nb import _terminal as tables
from orion_nb.errors import OrionNBError
from orion_nb.export.cells import (
    CellFlowOptions,
    cell_flow,
    default_flow_name,
    options_from_namespace,
)

__all__ = ["OrionMagics", "load_ipython_extension", "unload_ipython_extension"]


def _notebook_path(shell: Any) -> str | None:
    ns = getattr(shell, "user_ns", {})
    return (
        ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or ns.get("__vsc_ipynb_file__")
    )


@magics_class
class OrionMagics(Magics):
    """The ``%%flow`` cell magic and the ``%orion`` line magic."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._cell_id: str | None = None

    def pre_run_cell(self, info: Any) -> None:
        self._cell_id = getattr(info, "cell_id", None)

    @magic_arguments()
    @argument(
        "name", nargs="?", default=None, help="Flow name (default: <notebook>-cell-<cell id>)."
    )
    @argument(
        "--retries",
        type=int,
        default=0,
        metavar="N",
        help="Re-run the cell up to N times if it fails.",
    )
    @argument(
        "--retry-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="Seconds to wait between retries.",
    )
    @argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="Fail the run as TimedOut after S seconds.",
    )
    @argument(
        "--tag",
        action="append",
        default=[],
        metavar="T",
        help="Tag the run and its task runs (repeatable).",
    )
    @argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="Set variable K to V (a Python literal or a string) before the cell runs; recorded as a flow parameter (repeatable).",
    )
    @argument(
        "--task-runner",
        default=None,
        choices=["threads", "sequential", "processes", "dask"],
        help="Where .submit()/.map() task runs execute (default: the runner set with "
        "orion_nb.configure(task_runner=...), else threads). dask starts a temporary local "
        "cluster; configure a DaskTaskRunner(address=...) to use your own.",
    )
    @argument("--quiet", action="store_true", help="Show no live view.")
    @line_cell_magic
    def flow(self, line: str, cell: str | None = None) -> Any:
        """Run the cell as the body of an orion_nb flow run.

        The cell runs as usual: names it assigns stay in the notebook, its last expression
        is displayed, ``print`` output appears and ``await`` works. Tasks it calls are
        recorded under the flow run, which is shown live (RunView widget) and stored in the
        history. Re-running the cell makes a new run.
        """
        __tracebackhide__ = True
        if cell is None:
            raise UsageError(
                "%%flow is a cell magic: write it (with two %) on the first line of a cell, "
                "followed by the code to run as a flow. See %%flow? for the options."
            )
        args = _parse_flow_line(self.flow, line)
        options = self.options_from_args(args)
        filename = self._filename(cell)
        try:
            f = cell_flow(cell, self.shell.user_ns, options, filename=filename)
        except SyntaxError:
            raise
        if options.quiet:
            f = f.with_options(display="none")
        return f(**options.parameters)

    def options_from_args(self, args: argparse.Namespace) -> CellFlowOptions:
        name = args.name
        if name is None:
            key = (self._cell_id or "")[:8] or str(getattr(self.shell, "execution_count", "") or "")
            name = default_flow_name(_notebook_path(self.shell), key)
        try:  # the export reads a %%flow line with the same checks
            return options_from_namespace(args, name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def _filename(self, cell: str) -> str:
        compiler = getattr(self.shell, "compile", None)
        if compiler is not None and hasattr(compiler, "cache"):
            try:
                return str(compiler.cache(cell, getattr(self.shell, "execution_count", 0)))
            except Exception:  # pragma: no cover - older IPython
                pass
        return "<flow cell>"

    @line_magic
    def orion(self, line: str) -> Any:
        """Look at orion_nb's run history.

        Usage::

            %orion runs [--limit N] [--flow NAME] [--state S]   recent flow runs as a table
            %orion view RUN [--widget]                            a past run (static; --widget: interactive)
            %orion timeline RUN                                   the run's timeline (plotly)
            %orion graph RUN                                      the run's dependency graph
            %orion browse [--flow F] [--state S] [--tag T] [--deployment D]
                          [--text Q] [--since ISO] [--until ISO] [--subflows]
                                                                  the history browser (live)
            %orion config                                         database (masked), home, display

        RUN is a flow run id, a unique id prefix or a run name. The browser's options may
        be repeated (``--state FAILED --state CRASHED``).
        """
        __tracebackhide__ = True
        parser = _OrionParser(prog="%orion", add_help=False)
        sub = parser.add_subparsers(dest="command")
        p_runs = sub.add_parser("runs", add_help=False)
        p_runs.add_argument("--limit", type=int, default=20)
        p_runs.add_argument("--flow", default=None)
        p_runs.add_argument("--state", default=None)
        p_browse = sub.add_parser("browse", add_help=False)
        for option in ("--flow", "--state", "--tag", "--deployment"):
            p_browse.add_argument(option, action="append", default=None)
        for option in ("--text", "--since", "--until"):
            p_browse.add_argument(option, default=None)
        p_browse.add_argument("--subflows", action="store_true")
        for name in ("view", "timeline", "graph"):
            p = sub.add_parser(name, add_help=False)
            p.add_argument("run")
            if name == "view":
                p.add_argument("--widget", action="store_true")
        sub.add_parser("config", add_help=False)
        try:
            args = parser.parse_args(shlex.split(line))
        except _ParseError as exc:
            raise UsageError(f"{exc}\n\n{self.orion.__doc__}") from None
        if args.command is None:
            raise UsageError(f"%orion needs a subcommand.\n\n{self.orion.__doc__}")
        try:
            if args.command == "runs":
                if args.limit <= 0:
                    raise UsageError("--limit must be a positive number.")
                return Console().print(tables.runs_table(args.limit, args.flow, args.state))
            if args.command == "config":
                return Console().print(tables.config_table())
            if args.command == "browse":
                from orion_nb.notebook.browser import HistoryBrowser

                filters = {
                    k: getattr(args, k)
                    for k in ("flow", "state", "tag", "deployment", "text", "since", "until")
                    if getattr(args, k) is not None
                }
                return HistoryBrowser(**filters, subflows=args.subflows)
            from orion_nb.notebook import views

            if args.command == "graph":
                return views.graph(args.run)

            if args.command == "view":
                report = views.view(args.run)
                return report.widget() if args.widget else report
            return views.timeline(args.run)
        except OrionNBError as exc:
            raise UsageError(str(exc)) from None


def _parse_flow_line(magic: Any, line: str) -> argparse.Namespace:
    """``%%flow`` options split as a shell does, so ``--param title="hello world"`` is one value.

    (IPython's own splitting keeps the quotes and splits at the space inside them.)
    """
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(
            f"The %%flow options {line!r} cannot be split ({exc}); close the quotes, e.g. "
            '--param title="hello world".'
        ) from None
    return magic.parser.parse_args(argv)  # type: ignore[no-any-return]


class _ParseError(Exception):
    pass


class _OrionParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and exit
        raise _ParseError(message)


def load_ipython_extension(ipython: Any) -> None:
    magics = OrionMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.pre_run_cell)
    ipython.user_ns.setdefault("orion_nb", __import__("orion_nb"))
    _install_await_transformer(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    for cb in list(ipython.events.callbacks.get("pre_run_cell", [])):
        if getattr(cb, "__self__", None).__class__ is OrionMagics:
            ipython.events.unregister("pre_run_cell", cb)
    ipython.input_transformers_cleanup[:] = [
        t for t in ipython.input_transformers_cleanup if t is not _await_transformer
    ]


def _install_await_transformer(ipython: Any) -> None:
    if _await_transformer not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.insert(0, _await_transformer)


def _await_transformer(lines: list[str]) -> list[str]:
    """Run ``%%flow`` cells that use top-level ``await`` on the kernel's own event loop.

    A cell magic is a plain function call, so it cannot await. For such cells the source is
    rewritten into ``await <run the cell as an async flow>`` and IPython's autoawait runs it
    in the kernel's loop, exactly like any other cell with ``await``.
    """
    if not lines or not lines[0].lstrip().startswith("%%flow"):
        return lines
    first = lines[0].strip()
    if first.endswith("?"):
        return lines
    body = "".join(lines[1:])
    from orion_nb.export.cells import compile_cell

    try:
        if not compile_cell(body).is_async:
            return lines
    except SyntaxError:
        return lines
    line = first[len("%%flow") :].strip()
    return [
        f"await __import__('orion_nb.notebook.magics', fromlist=['_run_async_cell'])._run_async_cell({line!r}, {body!r})\n",
    ]


async def _run_async_cell(line: str, cell: str) -> Any:
    __tracebackhide__ = True
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("OrionMagics")
    args = _parse_flow_line(magics.flow, line)
    options = magics.options_from_args(args)
    f = cell_flow(cell, shell.user_ns, options, filename=magics._filename(cell))
    if options.quiet:
        f = f.with_options(display="none")
    return await f(**options.parameters)
