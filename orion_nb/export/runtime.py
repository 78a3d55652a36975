"""What an exported script imports: its command line and IPython's conveniences, for scripts.

- :func:`command_line` runs the script's parent flow with ``--param NAME=VALUE`` overrides
  (type-checked against the flow's defaults), or serves it on its schedule (``--serve``).
- :func:`shell` and :func:`shell_output` are ``!cmd`` and ``x = !cmd``: the command runs in
  ``$SHELL`` (``/bin/sh`` when unset) after IPython's ``{expr}``/``$name`` expansion with the
  caller's variables (a field that cannot be expanded leaves the command as written, exactly
  as IPython does). Unlike the notebook, a command that fails raises
  :class:`subprocess.CalledProcessError`, so a scheduled run does not carry on silently.
- :func:`display` prints a plain-text representation (what a notebook shows as text/plain).

This module is imported by every exported script, so it imports nothing heavy at load time.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["command_line", "display", "shell", "shell_output"]


def _expand(cmd: str, depth: int) -> str:
    """IPython's ``var_expand``: ``{expr}`` and ``$name`` from the caller's namespace."""
    from IPython.utils.text import DollarFormatter

    frame = sys._getframe(depth + 1)
    ns = dict(frame.f_globals)
    ns.update(frame.f_locals)
    try:
        return DollarFormatter().vformat(cmd, args=[], kwargs=ns)
    except Exception:  # as IPython: a command it cannot expand runs as written
        return cmd


def _run(cmd: str, capture: bool) -> subprocess.CompletedProcess[str]:
    sys.stdout.flush()
    sys.stderr.flush()
    executable = os.environ.get("SHELL") if os.name == "posix" else None
    return subprocess.run(
        cmd,
        shell=True,
        executable=executable or None,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        check=False,
    )


def shell(cmd: str) -> None:
    """Run ``cmd`` in the shell like ``!cmd``; raise if it fails.

    Raises
    ------
    subprocess.CalledProcessError
        When the command exits with a non-zero status.
    """
    expanded = _expand(cmd, 1)
    done = _run(expanded, capture=False)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, expanded)


def shell_output(cmd: str) -> Any:
    """Run ``cmd`` like ``x = !cmd``: its output lines (stdout and stderr) as IPython's ``SList``.

    Raises
    ------
    subprocess.CalledProcessError
        When the command exits with a non-zero status (its output is on the exception).
    """
    from IPython.utils.text import SList

    expanded = _expand(cmd, 1)
    done = _run(expanded, capture=True)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, expanded, output=done.stdout)
    return SList(done.stdout.splitlines())


def display(*objs: Any, **_options: Any) -> None:
    """Print each object's plain-text representation (``None`` shows nothing).

    A notebook shows rich output (HTML, images); a script prints what the notebook would show
    as text: Markdown as its source, everything else as IPython's pretty representation.
    """
    for obj in objs:
        if obj is None:
            continue
        text = None
        markdown = getattr(obj, "_repr_markdown_", None)
        if callable(markdown):
            try:
                text = markdown()
            except Exception:
                text = None
        if not isinstance(text, str):
            from IPython.lib.pretty import pretty

            text = pretty(obj)
        print(text, flush=True)


def _defaults(main: Any) -> dict[str, Any]:
    fn = getattr(main, "fn", main)
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def command_line(
    main: Any,
    *,
    name: str | None = None,
    cron: str | None = None,
    interval: float | str | None = None,
    anchor: str | None = None,
    timezone: str | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Run ``main`` (an exported script's parent flow) as the command line asks.

    ``python SCRIPT.py [--param NAME=VALUE ...]`` runs it once; ``--serve`` registers a
    deployment (named ``name``, default the script's file name) with the schedule given here
    or on the command line, and runs it on that schedule until SIGTERM or Ctrl-C.
    """
    from orion_nb.errors import OrionNBError
    from orion_nb.export.params import apply_params

    path = Path(inspect.getfile(getattr(main, "fn", main))).resolve()
    flow_name = getattr(main, "name", path.name)
    parser = argparse.ArgumentParser(
        prog=path.name,
        description=f"Run the flow {flow_name!r} (exported from a notebook by orion-nb).",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Set a parameter, read as the type of its default (repeatable).",
    )
    parser.add_argument("--serve", action="store_true", help="Run on a schedule until stopped.")
    parser.add_argument("--cron", help=f"Cron schedule for --serve (default: {cron!r}).")
    parser.add_argument(
        "--interval", help=f"Interval in seconds for --serve (default: {interval!r})."
    )
    parser.add_argument("--anchor", help="Anchor of an interval schedule.")
    parser.add_argument("--timezone", help=f"Time zone of the schedule (default: {timezone!r}).")
    parser.add_argument("--name", default=name, help="Deployment name for --serve.")
    parser.add_argument(
        "--catch-up", action="store_true", help="With --serve: also run missed slots."
    )
    args = parser.parse_args(argv)
    try:
        values = apply_params(_defaults(main), args.param, what=f"Flow {flow_name!r}")
        given = {
            k: values[k] for k in dict.fromkeys(p.split("=", 1)[0].strip() for p in args.param)
        }
        if args.serve:
            from orion_nb.export.serve import serve_paths

            if args.cron is None and args.interval is None:  # the schedule it was exported with
                args.cron, args.interval, args.anchor = cron, interval, args.anchor or anchor
            code = serve_paths(
                [path],
                name=args.name,
                cron=args.cron,
                interval=args.interval,
                anchor=args.anchor,
                timezone=args.timezone or timezone,
                params=args.param,
                catch_up=args.catch_up,
            )
            sys.exit(code)
    except OrionNBError as exc:
        print(f"{path.name}: {exc}", file=sys.stderr)
        sys.exit(2)
    result = main(**given)
    if inspect.iscoroutine(result):
        asyncio.run(result)
