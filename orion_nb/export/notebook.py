"""Reading a notebook for export or a headless run: its cells, tags and parameters.

Tags follow the conventions people already use:

- ``parameters`` (papermill): the cell whose literal assignments are the notebook's
  parameters and their defaults;
- ``injected-parameters`` (papermill's output notebooks): values a previous run injected.
  They are never replayed over new values; they become the defaults instead;
- ``skip-export``: left out of the exported script (other tags such as ``remove-cell`` are
  about rendering and leave the code in).
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orion_nb.errors import ExportError
from orion_nb.export.source import SourceEdits
from orion_nb.export.translate import CellRef, transform

__all__ = [
    "INJECTED_TAG",
    "PARAMETERS_TAG",
    "SKIP_TAG",
    "Cell",
    "NotebookSource",
    "Parameter",
    "read_notebook",
]

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
SKIP_TAG = "skip-export"


@dataclass(frozen=True)
class Cell:
    """One cell: ``kind`` is ``"code"``, ``"markdown"`` or ``"raw"``."""

    kind: str
    source: str
    tags: frozenset[str]
    ref: CellRef


@dataclass(frozen=True)
class Parameter:
    """A parameter of the notebook: its default value and how the notebook wrote it."""

    name: str
    value: Any
    text: str  # the literal as written (kept in the script when not overridden)
    annotation: str | None = None  # as written, e.g. "int"


@dataclass
class NotebookSource:
    """A notebook, read and validated."""

    path: Path
    sha256: str
    cells: list[Cell]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    def code_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.kind == "code"]

    def tagged(self, tag: str) -> list[Cell]:
        return [c for c in self.cells if c.kind == "code" and tag in c.tags]

    def parameters(self) -> tuple[dict[str, Parameter], list[str]]:
        """The parameters and their defaults; also the names a papermill run injected.

        The ``parameters`` cell's literal assignments come first; an ``injected-parameters``
        cell's values replace their defaults (and may add names).
        """
        params: dict[str, Parameter] = {}
        for cell in self.tagged(PARAMETERS_TAG):
            params.update(literal_assignments(cell)[0])
        injected: list[str] = []
        for cell in self.tagged(INJECTED_TAG):
            found = literal_assignments(cell)[0]
            for name, p in found.items():
                old = params.get(name)
                params[name] = Parameter(
                    name, p.value, p.text, p.annotation or (old.annotation if old else None)
                )
                injected.append(name)
        return params, injected


def read_notebook(path: str | Path) -> NotebookSource:
    """Read ``path`` with nbformat (v4); unreadable or invalid files raise :class:`ExportError`."""
    import nbformat

    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ExportError(f"Cannot read the notebook {str(p)!r}: {exc.strerror or exc}.") from None
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except UnicodeDecodeError as exc:
        raise ExportError(
            f"{p.name} is not a notebook: it is not UTF-8 text ({exc.reason} at byte "
            f"{exc.start}). Save it again from Jupyter."
        ) from None
    except Exception as exc:  # nbformat raises NotJSONError, JSONDecodeError, ValidationError...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(
            f"{p.name} is not a valid notebook ({type(exc).__name__}: {reason[:300]}). Open "
            "it in Jupyter to repair it, or check that the file is a .ipynb notebook."
        ) from None
    cells = []
    for i, c in enumerate(nb.cells, start=1):
        source = c.get("source", "")
        if isinstance(source, list):  # pragma: no cover - nbformat joins lists already
            source = "".join(source)
        tags = c.get("metadata", {}).get("tags", []) or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ExportError(f"Cell {i} of {p.name} has invalid tags {tags!r}; tags are strings.")
        cells.append(
            Cell(
                kind=str(c.get("cell_type", "code")),
                source=source,
                tags=frozenset(tags),
                ref=CellRef(p.name, i, c.get("id")),
            )
        )
    return NotebookSource(p, hashlib.sha256(raw).hexdigest(), cells, dict(nb.metadata))


def literal_assignments(cell: Cell) -> tuple[dict[str, Parameter], str]:
    """A cell's top-level ``NAME = <literal>`` assignments, and its code without them.

    The rest (imports, computed values) is returned as IPython-transformed source, still to be
    translated; removed lines leave a comment, so line numbers in messages stay right.
    """
    text = transform(cell.source)
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ExportError(
            f"Cannot export {cell.ref}, line {exc.lineno}: it is not valid Python ({exc.msg}). "
            "To go on, fix the syntax error."
        ) from None
    edits = SourceEdits(text)
    found: dict[str, Parameter] = {}
    for stmt in tree.body:
        target: ast.expr | None = None
        annotation = None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target = stmt.target
            annotation = edits.text(stmt.annotation)
        value_node = getattr(stmt, "value", None)
        if not isinstance(target, ast.Name) or value_node is None:
            continue
        try:
            value = ast.literal_eval(value_node)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        found[target.id] = Parameter(target.id, value, edits.text(value_node), annotation)
        note = f"# parameter {target.id}: its value comes from main()"
        edits.replace(*edits.span(stmt), note if edits.alone(stmt) else "pass")
    return found, edits.apply()
