"""A notebook as a plain Python script: one parent flow that runs the cells in order.

Layout of an exported script (top to bottom):

1. a docstring saying where it came from (path and sha256 of the notebook), its flow, its
   parameters, its schedule and how to run it;
2. ``from __future__`` imports from any cell, then the notebook's leading imports (the run of
   import statements the notebook starts with, lifted out of the cells so the script reads
   like a script; later imports stay where they are), then the script's own imports;
3. ``main``: the parent ``@flow``, whose parameters are the ``parameters`` cell's
   assignments; it makes them module-level names and calls ``run_cells``;
4. ``run_cells``: every code cell in order, markdown cells as comments. The cells share
   module-level names exactly as they share the kernel's namespace: ``run_cells`` declares
   ``global`` every name a cell binds at its top level. A ``%%flow NAME`` cell becomes a
   ``@flow`` function defined and called in place (a subflow), declaring ``global`` the names
   it binds, so they stay visible to later cells as they do in the kernel;
5. ``if __name__ == "__main__":`` ``command_line(main)``: ``--param``, ``--serve``. The guard
   matters: Dask and process-pool workers re-import the script.

If any cell uses top-level ``await``, ``main`` and ``run_cells`` are ``async`` and the whole
script runs on one event loop (``asyncio.run`` in :func:`~orion_nb.export.runtime.command_line`).

The text is formatted with ruff (a dependency of orion_nb: the promise "same notebook in,
same bytes out" holds only with one formatter version, and a script that is formatted on one
machine and not on another would break it). Lint rules the notebook's own code breaks as
written are listed in a ``# ruff: noqa:`` line, so the script passes ``ruff check`` and the
reader sees what to fix.
"""

from __future__ import annotations

import ast
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orion_nb.errors import ExportError, OrionNBWarning
from orion_nb.export.cells import CellFlowOptions, default_flow_name, parse_flow_line
from orion_nb.export.formatting import format_python, with_noqa
from orion_nb.export.names import scan
from orion_nb.export.notebook import (
    INJECTED_TAG,
    PARAMETERS_TAG,
    SKIP_TAG,
    Cell,
    NotebookSource,
    Parameter,
    literal_assignments,
    read_notebook,
)
from orion_nb.export.params import apply_params
from orion_nb.export.schedules import Schedule, default_anchor
from orion_nb.export.source import bound_names, has_statement, indent_code, leading_imports
from orion_nb.export.translate import Translated, translate_cell

__all__ = ["ScriptExport", "export_notebook", "format_python"]

_LINE = 88


@dataclass
class ScriptExport:
    """The result of :func:`export_notebook`."""

    text: str
    notebook: NotebookSource
    flow_name: str
    parameters: dict[str, Any]
    schedule: Schedule | None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Chunk:
    kind: str  # "comment" | "code"
    text: str
    bound: set[str] = field(default_factory=set)
    imports_only: bool = False


def _comment(text: str) -> str:
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return "\n".join(f"# {line}" if line else "#" for line in lines) + "\n"


class _Builder:
    def __init__(
        self,
        nb: NotebookSource,
        flow_name: str,
        overrides: Sequence[str],
        schedule: Schedule | None,
        deployment: str | None,
    ) -> None:
        self.nb = nb
        self.flow_name = flow_name
        self.schedule = schedule
        self.deployment = deployment
        self.notes: list[str] = []
        codes = [c.source for c in nb.code_cells()]
        self.names = scan(codes)
        taken: set[str] = set()
        self.helper = {
            key: self.names.pick(key, taken)
            for key in ("flow", "tags", "display", "shell", "shell_output", "command_line")
        }
        self.main_name = self.names.fresh("main", taken)
        self.cells_name = self.names.fresh("run_cells", taken)
        self.taken = taken
        self.allowed = {n for n, b in self.names.bindings.items() if b}
        params, _injected = nb.parameters()
        values = apply_params({k: p.value for k, p in params.items()}, overrides)
        self.params: dict[str, Parameter] = {}
        for name, value in values.items():
            p = params[name]
            changed = type(value) is not type(p.value) or value != p.value
            self.params[name] = Parameter(
                name, value, repr(value) if changed else p.text, p.annotation
            )
        self.helpers_used: set[str] = set()
        self.futures: list[str] = []
        self.stars: list[str] = []
        self.is_async = False
        self.flow_count = 0

    # -- cells ----------------------------------------------------------------------------------
    def chunks(self) -> list[_Chunk]:
        out: list[_Chunk] = []
        for cell in self.nb.cells:
            if cell.kind == "markdown":
                if cell.source.strip():
                    out.append(_Chunk("comment", _comment(cell.source)))
                continue
            if cell.kind != "code" or not cell.source.strip():
                continue
            if SKIP_TAG in cell.tags:
                out.append(
                    _Chunk(
                        "comment", f"# {cell.ref}: tagged {SKIP_TAG!r}, left out of the script\n"
                    )
                )
                continue
            if INJECTED_TAG in cell.tags:
                out.append(
                    _Chunk(
                        "comment",
                        f"# {cell.ref}: values injected by a papermill run; they are the "
                        "defaults of main() now\n",
                    )
                )
                continue
            source = cell.source
            if PARAMETERS_TAG in cell.tags:
                source = literal_assignments(cell)[1]
            out.append(self._cell(cell, source))
        return out

    def _cell(self, cell: Cell, source: str) -> _Chunk:
        t = translate_cell(source, cell.ref, names=self.helper, allowed=self.allowed)
        self.futures += t.future_imports
        self.stars += t.star_imports
        self.helpers_used |= t.helpers
        self.is_async |= t.is_async
        first = source.strip().splitlines()[0] if source.strip() else ""
        header = f"# %% cell {cell.ref.number}"
        if t.flow is not None:
            header += f": {first.strip()}"
            text, assigned = self._flow(cell, t)
            # the call site assigns the --param values: module-level names, as in the kernel
            return _Chunk("code", header + "\n" + text, bound=assigned)
        code = t.code.strip("\n") + "\n"
        imports, rest = leading_imports(code)
        return _Chunk(
            "code",
            header + "\n" + code,
            bound=t.bound,
            imports_only=bool(imports) and not rest.strip(),
        )

    def _flow(self, cell: Cell, t: Translated) -> tuple[str, set[str]]:
        assert t.flow is not None
        key = (cell.ref.cell_id or "")[:8] or str(cell.ref.number)
        try:
            options = parse_flow_line(t.flow.line, default_flow_name(self.nb.name, key))
        except ValueError as exc:
            raise ExportError(
                f"Cannot export {cell.ref}, line 1: {exc}\n    %%flow {t.flow.line.strip()}\n"
                "To go on, fix the %%flow options (see %%flow? in Jupyter), or tag the cell "
                f"{SKIP_TAG!r}."
            ) from None
        body = t.flow.body
        clash = sorted(set(options.parameters) & body.bound)
        if clash:
            raise ExportError(
                f"Cannot export {cell.ref}: the %%flow cell assigns to its --param "
                f"{clash[0]!r}; in a script a flow's parameters are its own, so that value "
                f"would not reach later cells.\nTo go on, assign the result to another name, "
                f"or tag the cell {SKIP_TAG!r}."
            )
        self.flow_count += 1
        fn = self.names.fresh(options.name, self.taken)
        return self._flow_text(fn, options, body), set(options.parameters)

    def _flow_text(self, fn: str, options: CellFlowOptions, body: Translated) -> str:
        args = [f"name={options.name!r}"]
        if options.retries:
            args.append(f"retries={options.retries!r}")
        if options.retry_delay_seconds:
            args.append(f"retry_delay_seconds={options.retry_delay_seconds!r}")
        if options.timeout_seconds is not None:
            args.append(f"timeout_seconds={options.timeout_seconds!r}")
        if options.task_runner is not None:
            args.append(f"task_runner={options.task_runner!r}")
        params = ", ".join(f"{k}={v!r}" for k, v in options.parameters.items())
        lines = [f"@{self.helper['flow']}({', '.join(args)})"]
        lines.append(f"{'async ' if body.is_async else ''}def {fn}({params}):")
        inner = ""
        declared = sorted(body.bound - set(options.parameters))
        if declared:
            inner += _globals(declared, 4)
        code = body.code.strip("\n") + "\n"
        if not code.strip() or not has_statement(code):
            code += "pass\n"
        if options.tags:
            self.helpers_used.add("tags")
            inner += f"with {self.helper['tags']}({', '.join(map(repr, options.tags))}):\n"
            inner += indent_code(code, "    ")
        else:
            inner += code
        lines.append(indent_code(inner, "    ").rstrip("\n"))
        out = "\n".join(lines) + "\n\n"
        for k, v in options.parameters.items():
            out += f"{k} = {v!r}\n"
        call = f"{fn}({', '.join(f'{k}={k}' for k in options.parameters)})"
        if body.is_async:
            call = f"await {call}"
        if _returns_value(body.code):
            self.helpers_used.add("display")
            call = f"{self.helper['display']}({call})"
        return out + call + "\n"

    # -- the whole script -----------------------------------------------------------------------
    def build(self, script_path: Path | None) -> str:
        chunks = self.chunks()
        hoisted: list[str] = []
        for i, chunk in enumerate(chunks):
            if chunk.kind == "comment":
                continue
            head, code = chunk.text.split("\n", 1)
            if chunk.imports_only:
                hoisted.append(code)
                chunks[i] = _Chunk("comment", "")
                continue
            if not has_statement(code):  # only comments (e.g. a parameters cell's remains)
                continue
            imports, rest = leading_imports(code)
            if imports:
                hoisted.append(imports)
                # names only those imports bound are module-level already: not `global` here
                rest = rest.lstrip("\n")
                chunks[i] = _Chunk("code", head + "\n" + rest, bound=bound_names(rest))
            break
        declared = sorted({n for c in chunks for n in c.bound})
        body = ""
        if declared:
            body += _globals(declared, 4) + "\n"
        for chunk in chunks:
            if chunk.text.strip():
                body += chunk.text.rstrip("\n") + "\n\n"
        if not has_statement(body):
            body += "pass\n"
        return self._assemble(hoisted, body, script_path)

    def _assemble(self, hoisted: list[str], body: str, script_path: Path | None) -> str:
        h = self.helper
        a = "async " if self.is_async else ""
        aw = "await " if self.is_async else ""
        out = [self._docstring(script_path), ""]
        for line in dict.fromkeys(self.futures):
            out.append(line)
        if self.futures:
            out.append("")
        if hoisted:
            out.append("".join(hoisted).rstrip("\n"))
            out.append("")
        out += self._own_imports()
        out.append("")
        out.append("")
        if self.params:
            out.append("# The notebook's parameters: the defaults of each run of main().")
            out += [f"{p.name} = {p.text}" for p in self.params.values()]
            out.append("")
            out.append("")
        sig = ", ".join(self._param_text(p) for p in self.params.values())
        out.append(f"@{h['flow']}(name={self.flow_name!r})")
        out.append(f"{a}def {self.main_name}({sig}) -> None:")
        out.append(
            f'    """Run {_doc(self.nb.name)}: set its parameters, then run its code cells in '
            'order."""'
        )
        if self.params:
            assigns = ", ".join(f"{n}={n}" for n in self.params)
            out.append("    # each run's values are module-level names, as in the notebook")
            out.append(f"    globals().update({assigns})")
        out.append(f"    {aw}{self.cells_name}()")
        out.append("")
        out.append("")
        out.append(f"{a}def {self.cells_name}() -> None:")
        out.append(
            '    """The code cells in order; names they bind at top level are module-level '
            'names."""'
        )
        out.append(indent_code(body, "    ").rstrip("\n"))
        out.append("")
        out.append("")
        out.append('if __name__ == "__main__":')
        kwargs = []
        if self.deployment:
            kwargs.append(f"name={self.deployment!r}")
        if self.schedule is not None:
            if self.schedule.cron is not None:
                kwargs.append(f"cron={self.schedule.cron!r}")
            else:
                kwargs.append(f"interval={self.schedule.interval!r}")
                anchor = self.schedule.anchor
                if anchor is not None and anchor != default_anchor(self.schedule.timezone):
                    kwargs.append(f"anchor={anchor.isoformat()!r}")
            if self.schedule.timezone != "UTC":
                kwargs.append(f"timezone={self.schedule.timezone!r}")
        out.append(f"    {h['command_line']}({', '.join([self.main_name, *kwargs])})")
        return "\n".join(out) + "\n"

    def _param_text(self, p: Parameter) -> str:
        annotation = p.annotation or _annotation(p.value)
        return f"{p.name}: {annotation} = {p.name}" if annotation else f"{p.name}={p.name}"

    def _own_imports(self) -> list[str]:
        h = self.helper
        lines = []
        orion = ["flow"] + (["tags"] if "tags" in self.helpers_used else [])
        lines.append("from orion_nb import " + ", ".join(_alias(k, h[k]) for k in orion))
        used = sorted(k for k in ("display", "shell", "shell_output") if k in self.helpers_used)
        runtime = ["command_line", *used]
        lines.append(
            "from orion_nb.export.runtime import " + ", ".join(_alias(k, h[k]) for k in runtime)
        )
        for star in dict.fromkeys(self.stars):
            lines.append(star)
        return lines

    def _docstring(self, script_path: Path | None) -> str:
        nb = self.nb
        shown = _shown_path(nb.path, script_path)
        title = _title(nb)
        lines = [
            f"{title}: {nb.name} as a script, exported by orion-nb."
            if title
            else f"{nb.name} as a script, exported by orion-nb."
        ]
        lines.append("")
        lines.append(f"Notebook: {shown} (sha256 {nb.sha256[:16]})")
        flows = ""
        if self.flow_count == 1:
            flows = "; its %%flow cell runs as a subflow"
        elif self.flow_count:
            flows = f"; its {self.flow_count} %%flow cells run as subflows"
        lines.append(f"Flow: {self.flow_name!r} runs the code cells in order{flows}.")
        if self.params:
            listed = ", ".join(f"{p.name}={p.text}" for p in self.params.values())
            lines.append(f"Parameters: {listed}")
        me = script_path.name if script_path is not None else "SCRIPT.py"
        lines.append(f"Schedule: {self.schedule.describe()}" if self.schedule else "Schedule: none")
        lines.append("")
        lines.append(f"    python {me} [--param NAME=VALUE ...]   run once")
        if self.schedule is not None:
            lines.append(f"    python {me} --serve [--catch-up]       run on this schedule")
        lines.append("")
        lines.append("Unlike in the notebook, a shell command (!cmd) that fails stops the run, and")
        lines.append("display() prints a plain-text representation.")
        text = "\n".join(lines).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        return f'"""{text}\n"""'


def _alias(canonical: str, name: str) -> str:
    return canonical if canonical == name else f"{canonical} as {name}"


def _annotation(value: Any) -> str | None:
    kind = type(value)
    if kind in (bool, int, float, str, list, dict, tuple, set, bytes):
        return kind.__name__
    return None


def _doc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _title(nb: NotebookSource) -> str | None:
    for cell in nb.cells:
        if cell.kind == "markdown":
            for line in cell.source.splitlines():
                m = re.match(r"#\s+(.+)", line.strip())
                if m:
                    return m.group(1).strip().rstrip(".")
            return None
        if cell.kind == "code" and cell.source.strip():
            return None
    return None


def _shown_path(notebook: Path, script: Path | None) -> str:
    target = notebook.resolve()
    if script is not None:
        try:
            return Path(os.path.relpath(target, script.resolve().parent)).as_posix()
        except ValueError:  # another drive on Windows
            return target.as_posix()
    try:
        return Path(os.path.relpath(target)).as_posix()
    except ValueError:
        return target.as_posix()


def _globals(names: list[str], width_indent: int) -> str:
    """``global a, b, ...`` statements that fit the line length."""
    out, line = [], ""
    limit = _LINE - width_indent - len("global ")
    for name in names:
        if line and len(line) + 2 + len(name) > limit:
            out.append(f"global {line}")
            line = ""
        line = f"{line}, {name}" if line else name
    if line:
        out.append(f"global {line}")
    return "\n".join(out) + "\n"


def _returns_value(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:  # pragma: no cover - validated by the translation
        return False
    return bool(tree.body) and isinstance(tree.body[-1], ast.Return)


def export_notebook(
    path: str | Path,
    *,
    name: str | None = None,
    schedule: Schedule | None = None,
    params: Sequence[str] = (),
    script_path: str | Path | None = None,
) -> ScriptExport:
    """Export the notebook at ``path`` as a script (see the module docstring).

    Parameters
    ----------
    path
        The ``.ipynb`` file.
    name
        The parent flow's name (default: the notebook's file name, e.g. ``etl.ipynb``); also
        the deployment name ``--serve`` registers.
    schedule
        Baked into the script for ``python SCRIPT.py --serve`` and into its docstring.
    params
        ``NAME=VALUE`` items that replace parameter defaults, type-checked against them.
    script_path
        Where the script will be written: the docstring names the notebook relative to it.

    Raises
    ------
    ExportError
        When a cell has no script equivalent (the message names the cell and the fix) or the
        notebook cannot be read.
    ParameterError
        For a ``params`` item that does not fit the notebook's parameters.
    """
    nb = read_notebook(path)
    out_path = Path(script_path) if script_path is not None else None
    flow_name = name or nb.name
    builder = _Builder(nb, flow_name, params, schedule, name)
    text = builder.build(out_path)
    notes: list[str] = []
    filename = out_path.name if out_path is not None else f"{nb.path.stem}.py"
    try:
        where = out_path.resolve().parent if out_path is not None else None
        formatted, findings = format_python(text, filename, where)
    except FileNotFoundError:
        message = (
            "ruff was not found, so the exported script is not formatted (it is valid Python); "
            "install ruff (pip install ruff) for a formatted, reproducible script."
        )
        warnings.warn(message, OrionNBWarning, stacklevel=2)
        notes.append(message)
        formatted, findings = text, []
    codes = sorted({str(f.get("code")) for f in findings if f.get("code")})
    undefined = sorted(
        {
            re.sub(r"^Undefined name `(.*)`.*$", r"\1", str(f.get("message", "")))
            for f in findings
            if f.get("code") == "F821"
        }
    )
    if undefined:
        notes.append(
            "The script uses names no exported cell defines: "
            + ", ".join(undefined)
            + " (defined in a cell tagged 'skip-export', or by IPython?)."
        )
    if codes:
        formatted = with_noqa(formatted, codes)
    try:
        compile(formatted, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:  # pragma: no cover - a bug of the export
        raise ExportError(
            f"The exported script does not compile ({exc.msg}, line {exc.lineno}); this is a "
            "bug in orion-nb's export: please report it with the notebook."
        ) from None
    values = {k: p.value for k, p in builder.params.items()}
    return ScriptExport(formatted, nb, flow_name, values, schedule, notes)
