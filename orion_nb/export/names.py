"""Which names a notebook uses, so the script's own names never take one of them.

The script adds a few names of its own (``main``, ``run_cells``, one function per ``%%flow``
cell, and the helpers it imports: ``flow``, ``tags``, ``display``, ``shell``, ...). A helper
keeps its usual name when the notebook never binds it at module level, or binds it to the very
same object (``from orion_nb import flow``); otherwise it is imported under an alias
(``flow as _flow``). The script's functions get names the notebook uses nowhere.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from orion_nb.export.source import module_scope
from orion_nb.export.translate import transform

__all__ = ["Names", "scan"]

# what a name used by the script may already be bound to in the notebook without clashing
_SAME = {
    "flow": {"orion_nb.flow", "orion_nb.engine.flows.flow"},
    "tags": {"orion_nb.tags", "orion_nb.engine.tags.tags"},
    "display": {
        "IPython.display.display",
        "IPython.core.display.display",
        "IPython.core.display_functions.display",
    },
}


@dataclass
class Names:
    """Every identifier the notebook uses, and what it binds at module level."""

    used: set[str] = field(default_factory=set)
    bindings: dict[str, set[str]] = field(default_factory=dict)  # name -> {"mod.attr" | "?"}

    def pick(self, want: str, taken: set[str]) -> str:
        """``want`` if the notebook leaves it free (or binds it to the same thing), else ``_want``."""
        bound = self.bindings.get(want)
        if want not in taken and (bound is None or bound <= _SAME.get(want, set())):
            # never bound at module level (local uses cannot shadow a module-level name), or
            # bound to the very same object
            taken.add(want)
            return want
        candidate, n = f"_{want}", 2
        while candidate in self.used or candidate in taken:
            candidate, n = f"_{want}_{n}", n + 1
        taken.add(candidate)
        return candidate

    def fresh(self, want: str, taken: set[str]) -> str:
        """A new name for the script's own functions, used nowhere in the notebook."""
        base = re.sub(r"\W", "_", want) or "flow"
        if base[0].isdigit() or keyword.iskeyword(base):
            base = f"flow_{base}"
        candidate, n = base, 2
        while candidate in self.used or candidate in taken or hasattr(builtins, candidate):
            candidate, n = f"{base}_{n}", n + 1
        taken.add(candidate)
        return candidate


def scan(sources: Iterable[str]) -> Names:
    names = Names()
    for source in sources:
        try:
            tree = ast.parse(transform(source))
        except Exception:  # the translation reports it, with the cell's position
            continue
        bodies = [tree]
        only = tree.body[0] if len(tree.body) == 1 else None
        if isinstance(only, ast.Expr) and isinstance(only.value, ast.Call):
            args = only.value.args
            if len(args) == 3 and all(isinstance(a, ast.Constant) for a in args):
                try:
                    bodies.append(ast.parse(transform(str(args[2].value))))  # type: ignore[attr-defined]
                except Exception:
                    pass
        for body in bodies:
            _scan_tree(body, names)
    return names


def _scan_tree(tree: ast.Module, names: Names) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.used.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.used.add(node.name)
        elif isinstance(node, ast.arg):
            names.used.add(node.arg)
        elif isinstance(node, ast.alias):
            names.used.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.used.update(node.names)
    for node in module_scope(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                bound = (a.asname or a.name).split(".")[0]
                source = f"{node.module}.{a.name}" if isinstance(node, ast.ImportFrom) else a.name
                names.bindings.setdefault(bound, set()).add(source)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.bindings.setdefault(node.id, set()).add("?")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.bindings.setdefault(node.name, set()).add("?")
