"""Deployments: a notebook or script, a schedule and parameters, recorded in the history.

A deployment is what ``orion-nb serve`` runs; its runs are ordinary flow runs carrying its id,
so ``orion_nb.flow_runs()`` shows scheduled, late, skipped and finished runs next to the
notebook's own. This module is the Python side of ``orion-nb deployments``; the SQL is in
:mod:`orion_nb.store.deployments`, run here on the configured database through the process's
history writer (which has already created or migrated the schema).
"""

from __future__ import annotations

import ast
import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from orion_nb.errors import ConfigurationError, DeploymentError
from orion_nb.export.schedules import Schedule

__all__ = [
    "DeploymentSpec",
    "call",
    "find",
    "list_all",
    "now",
    "pause",
    "register",
    "remove",
    "script_defaults",
]

T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(conn, *args, **kwargs)`` in one transaction on the configured history database."""
    from orion_nb.engine import recorder
    from orion_nb.store import database

    writer = recorder.get_writer()
    if writer is None or writer.engine is None:
        raise ConfigurationError(
            "Run history is off (ORION_NB_PERSIST=0 or configure(persist=False)); deployments "
            "and scheduled runs live in the history, so turn it on."
        )
    engine = writer.engine
    if database.is_async(engine):

        async def go() -> T:
            async with engine.begin() as conn:
                return await conn.run_sync(fn, *args, **kwargs)  # type: ignore[no-any-return]

        return writer._lt.run(go())  # type: ignore[no-any-return]
    with engine.begin() as conn:
        return fn(conn, *args, **kwargs)


@dataclass
class DeploymentSpec:
    """What ``serve`` registers: a name, a notebook or script, a schedule and parameters."""

    name: str
    path: Path
    flow_name: str
    schedule: Schedule | None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "notebook" if self.path.suffix == ".ipynb" else "script"


def script_defaults(path: Path) -> dict[str, Any]:
    """What an exported script was written with, read from its text without running it.

    Returns the ``command_line(...)`` keywords (``name``, ``cron``, ``interval``, ``anchor``,
    ``timezone``), ``flow_name`` (the parent flow's name) and ``parameters`` (its defaults).
    An ordinary script gives ``{}``.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    out: dict[str, Any] = {}
    main = None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id.lstrip("_").startswith("command_line")
            and node.args
            and isinstance(node.args[0], ast.Name)
        ):
            main = node.args[0].id
            for kw in node.keywords:
                if kw.arg is not None:
                    try:
                        out[kw.arg] = ast.literal_eval(kw.value)
                    except ValueError:
                        continue
    constants: dict[str, Any] = {}  # module-level NAME = literal (an export's parameters)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == main:
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call):
                    for kw in deco.keywords:
                        if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                            out["flow_name"] = kw.value.value
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = list(
                zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True)
            )
            pairs += [
                (k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None
            ]
            params: dict[str, Any] = {}
            for arg, default in pairs:
                if isinstance(default, ast.Name) and default.id in constants:
                    params[arg.arg] = constants[default.id]
                    continue
                try:
                    params[arg.arg] = ast.literal_eval(default)
                except ValueError:
                    continue
            out["parameters"] = params
    return out


def register(spec: DeploymentSpec) -> dict[str, Any]:
    """Create or update the deployment ``spec.name``; returns its row."""
    from orion_nb.store import deployments as sql

    values: dict[str, Any] = {
        "name": spec.name,
        "flow_name": spec.flow_name,
        "path": str(spec.path),
        "parameters": json.loads(json.dumps(spec.parameters, default=repr)),
    }
    if spec.schedule is not None:
        values.update(spec.schedule.as_row())
    else:
        values.update(schedule=None, cron=None, interval_seconds=None, timezone=None, anchor=None)
    return call(sql.upsert_deployment, values, now())


def find(name: str) -> dict[str, Any]:
    """The deployment called ``name``, or a :class:`DeploymentError` with the names there are."""
    from orion_nb.store import deployments as sql

    found = call(sql.get_deployment, name)
    if found is not None:
        return found
    names = [d["name"] for d in call(sql.list_deployments)]
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        hint = f"; did you mean {close[0]!r}?"
    elif names:
        hint = f"; there are {', '.join(map(repr, names))}."
    else:
        hint = "; there are none yet: `orion-nb serve NOTEBOOK.ipynb --cron ...` makes one."
    raise DeploymentError(f"No deployment named {name!r}{hint}")


def list_all() -> list[dict[str, Any]]:
    from orion_nb.store import deployments as sql

    return call(sql.list_deployments)


def pause(name: str, paused: bool) -> tuple[dict[str, Any], int]:
    """Pause (or resume) the deployment; returns it and how many scheduled runs were removed."""
    from orion_nb.store import deployments as sql

    d = find(name)
    return d, call(sql.set_paused, d["id"], paused, now())


def remove(name: str) -> tuple[dict[str, Any], int]:
    """Delete the deployment; its past runs stay in the history."""
    from orion_nb.store import deployments as sql

    d = find(name)
    return d, call(sql.delete_deployment, d["id"])
