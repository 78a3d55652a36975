"""One notebook cell's IPython syntax, translated in place into plain Python.

IPython's own input transformers (:class:`IPython.core.inputtransformer2.TransformerManager`,
the code the kernel runs on every cell) turn ``!cmd``, ``x = !cmd``, ``%magic`` and ``obj?`` into
ordinary calls such as ``get_ipython().system('cmd')``, wherever they are: mid-cell, after a
comment, inside ``for``/``try``/``def`` bodies. The result is parsed with :mod:`ast`, and each
such call is replaced *in the text*, at the exact byte span the parser reports, so that
comments, blank lines and layout survive for the reader of the script:

========================================  ================================================
notebook                                  script
========================================  ================================================
``!cmd``, ``%system cmd``                 ``shell("cmd")``: a failing command raises
``x = !cmd``, ``%sx cmd``                 ``x = shell_output("cmd")`` (lines, like IPython)
``%time stmt``, ``%timeit stmt``          ``stmt`` (``%%time``/``%%timeit`` keep the body)
``%pip``, ``%conda``, ``%matplotlib``,    dropped with a comment (``pass`` where a block
``%config``, ``%autoreload``, ``obj?``    would be empty)
``%load_ext orion_nb``                    ``import orion_nb`` (the name it defines)
a trailing expression                     ``display(expr)`` (unless it ends with ``;``)
========================================  ================================================

Anything else IPython-specific stops the export with an :class:`~orion_nb.errors.ExportError`
that names the cell, quotes the line and says how to proceed.

Names a cell binds at its top level are reported (:attr:`Translated.bound`): in the script the
cells run inside a function, where those names must be declared ``global`` to stay visible to
later cells, as they are in the kernel. Two statements are therefore rewritten at the top
level: an annotated assignment (``x: int = 1`` cannot be ``global``; the annotation becomes a
``# type:`` comment) and a ``global`` statement (meaningless there). ``from __future__`` and
``from m import *`` imports are lifted out to the top of the script.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from orion_nb.errors import ExportError
from orion_nb.export.source import (
    SourceEdits,
    blocks,
    bound_names,
    ends_quietly,
    leading_blank_lines,
)

__all__ = [
    "CellRef",
    "FlowCell",
    "Translated",
    "transform",
    "translate_cell",
]

_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_CO_COROUTINE = 0x0080

# line magics that mean nothing in a script: name -> why it is dropped
_DROPPED = {
    "pip": "install packages before running the script",
    "conda": "install packages before running the script",
    "mamba": "install packages before running the script",
    "matplotlib": "a script uses matplotlib's default backend",
    "config": "IPython configuration has no effect in a script",
    "autoreload": "a script imports its modules once",
    "aimport": "a script imports its modules once",
    "pinfo": "help is for interactive use",
    "pinfo2": "help is for interactive use",
    "psearch": "help is for interactive use",
}
# extensions whose loading means nothing in a script
_DROPPED_EXTENSIONS = {"autoreload": "a script imports its modules once"}
# magics that stop the export, with the way out
_HINTS = {
    "capture": "remove %%capture (a script prints its output), or use contextlib.redirect_stdout",
    "writefile": "write the file from Python, e.g. pathlib.Path('name').write_text(...)",
    "bash": "use !cmd lines or subprocess.run([...], check=True)",
    "sh": "use !cmd lines or subprocess.run([...], check=True)",
    "script": "use !cmd lines or subprocess.run([...], check=True)",
    "run": "import the other file's functions, or call runpy.run_path('file.py')",
    "pylab": "import numpy and matplotlib.pyplot explicitly",
    "load_ext": "call the extension's Python API instead of its magics",
    "reload_ext": "call the extension's Python API instead of its magics",
    "sql": "query the database with its Python driver or SQLAlchemy",
    "env": "set it from Python: os.environ['NAME'] = 'value'",
    "cd": "change directory from Python: os.chdir('path')",
}
_TIMEIT_OPTS = re.compile(r"^\s*((?:-[tcqo]+\s+|-[nrp]\s*\d+\s+)*)(.*)$", re.S)


@dataclass(frozen=True)
class CellRef:
    """Where a cell is, for messages: ``cell 5 of etl.ipynb``."""

    notebook: str
    number: int  # 1-based position among all cells, markdown included
    cell_id: str | None = None

    def __str__(self) -> str:
        return f"cell {self.number} of {self.notebook}"


@dataclass
class FlowCell:
    """A ``%%flow`` cell: the magic's line and its translated body."""

    line: str
    body: Translated


@dataclass
class Translated:
    """A cell in plain Python, and what the script around it needs to know."""

    code: str
    is_async: bool = False
    bound: set[str] = field(default_factory=set)
    future_imports: list[str] = field(default_factory=list)
    star_imports: list[str] = field(default_factory=list)
    helpers: set[str] = field(default_factory=set)  # canonical runtime names the code calls
    flow: FlowCell | None = None


def transform(source: str) -> str:
    """IPython's own translation of a cell into Python calls (``get_ipython().system(...)``)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _ipython_call(node: ast.AST) -> tuple[str, list[ast.expr]] | None:
    """``get_ipython().METHOD(args)`` -> ``(METHOD, args)``."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
        and not node.func.value.args
    ):
        return node.func.attr, node.args
    return None


def _strings(args: list[ast.expr]) -> list[str] | None:
    out = []
    for a in args:
        if not (isinstance(a, ast.Constant) and isinstance(a.value, str)):
            return None
        out.append(a.value)
    return out


class _Cell:
    """The translation of one cell (see the module docstring)."""

    def __init__(
        self, source: str, ref: CellRef, *, as_flow: bool, names: dict[str, str], allowed: set[str]
    ) -> None:
        self.source = source
        self.ref = ref
        self.as_flow = as_flow
        self.names = names
        self.allowed = allowed  # names the notebook binds itself (e.g. get_ipython imported)
        self.offset = leading_blank_lines(source)

    # -- errors -------------------------------------------------------------------------------
    def fail(self, lineno: int | None, problem: str, fix: str | None = None) -> ExportError:
        quoted = ""
        where = str(self.ref)
        if lineno is not None:
            lines = self.text.splitlines() if hasattr(self, "text") else self.source.splitlines()
            line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
            original = self.source.splitlines()
            n = lineno + self.offset
            if 0 < n <= len(original) and original[n - 1].strip():
                line = original[n - 1]
            where += f", line {n}"
            quoted = f"\n    {line.strip()}\n"
        else:
            quoted = "\n"
        fix = fix or "rewrite it in plain Python"
        return ExportError(
            f"Cannot export {where}: {problem}{quoted}To go on, {fix}, or tag the cell "
            "'skip-export' to leave it out of the script."
        )

    # -- translation --------------------------------------------------------------------------
    def run(self) -> Translated:
        try:
            self.text = transform(self.source)
        except Exception as exc:  # IPython's tokenizer on code that is not Python at all
            raise self.fail(None, f"IPython cannot read the cell ({exc}).") from None
        tree = self._parse(self.text)
        magic = self._cell_magic(tree)
        if magic is not None:
            return magic
        edits = SourceEdits(self.text)
        out = Translated(code="")
        parents = self._parents(tree)
        dropped: dict[int, str] = {}  # id(stmt) -> comment
        removed: set[int] = set()
        handled: set[int] = set()  # the get_ipython names of translated calls
        for node in ast.walk(tree):
            call = _ipython_call(node)
            if call is not None:
                self._magic(node, call, parents, edits, dropped, out)
                handled.add(id(node.func.value.func))  # type: ignore[attr-defined]
        if "get_ipython" not in self.allowed:
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Name)
                    and node.id == "get_ipython"
                    and id(node) not in handled
                ):
                    raise self.fail(
                        node.lineno,
                        "the cell calls get_ipython(), which only exists inside IPython.",
                        "do the same thing with plain Python",
                    )
        for _owner, body, depth in blocks(tree):
            if depth:
                continue
            for stmt in body:
                self._module_level(stmt, body is tree.body, edits, dropped, removed, out)
        self._drop(tree, edits, dropped, removed)
        # validate before the last value becomes a `return` (which compiles anywhere in a
        # function body but must be refused at a cell's top level)
        self._finish(edits.apply(), out)
        self._last_value(tree, edits, out)
        out.code = edits.apply()
        return out

    def _parse(self, text: str) -> ast.Module:
        try:
            return ast.parse(text)
        except SyntaxError as exc:
            raise self.fail(
                exc.lineno, f"it is not valid Python ({exc.msg}).", "fix the syntax error"
            ) from None

    def _parents(self, tree: ast.AST) -> dict[int, ast.AST]:
        parents: dict[int, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[id(child)] = node
        return parents

    def _cell_magic(self, tree: ast.Module) -> Translated | None:
        if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
            return None
        call = _ipython_call(tree.body[0].value)
        if call is None or call[0] != "run_cell_magic":
            return None
        args = _strings(call[1])
        if args is None or len(args) != 3:
            return None
        name, line, body = args
        if name == "flow":
            inner = _Cell(body, self.ref, as_flow=True, names=self.names, allowed=self.allowed)
            inner.offset = self.offset + 1
            translated = inner.run()
            return Translated(
                code="",
                is_async=translated.is_async,
                future_imports=translated.future_imports,
                star_imports=translated.star_imports,
                helpers=translated.helpers,
                flow=FlowCell(line, translated),
            )
        if name in ("time", "timeit"):
            setup = ""
            if name == "time" and line.strip():
                raise self.fail(1, "%%time takes no statement on its first line.")
            if name == "timeit":
                setup = self._timeit_options(line, 1)[1]
            inner = _Cell(
                (setup + "\n" if setup.strip() else "") + body,
                self.ref,
                as_flow=self.as_flow,
                names=self.names,
                allowed=self.allowed,
            )
            inner.offset = self.offset + (0 if setup.strip() else 1)
            return inner.run()
        if name == "flow?":
            raise self.fail(1, "'%%flow?' shows help; it is not code.", "delete the cell")
        hint = _HINTS.get(name)
        raise self.fail(
            1,
            f"the cell magic %%{name} has no equivalent in a script.",
            hint or "rewrite the cell in plain Python",
        )

    def _timeit_options(self, line: str, lineno: int) -> tuple[str, str]:
        m = _TIMEIT_OPTS.match(line)
        assert m is not None
        opts, stmt = m.group(1), m.group(2)
        if re.search(r"-[tcq]*o", opts):
            raise self.fail(
                lineno,
                "%timeit -o returns timing results, which a script does not measure.",
                "time the code with time.perf_counter()",
            )
        return opts, stmt

    def _magic(
        self,
        node: ast.AST,
        call: tuple[str, list[ast.expr]],
        parents: dict[int, ast.AST],
        edits: SourceEdits,
        dropped: dict[int, str],
        out: Translated,
    ) -> None:
        method, raw_args = call
        lineno: int = node.lineno  # type: ignore[attr-defined]
        args = _strings(raw_args)
        parent = parents.get(id(node))
        statement = isinstance(parent, ast.Expr)
        assigned = isinstance(parent, (ast.Assign, ast.AnnAssign)) and parent.value is node
        if args is None:
            raise self.fail(lineno, f"get_ipython().{method}(...) with computed arguments.")
        if method in ("system", "getoutput") and (statement or assigned):
            helper = "shell" if method == "system" else "shell_output"
            out.helpers.add(helper)
            edits.replace(*edits.span(node), f"{self.names[helper]}({args[0]!r})")
            return
        if method == "run_cell_magic":
            raise self.fail(
                lineno,
                f"the cell magic %%{args[0]} is not on the first line of the cell.",
                "make it the cell's first line, or rewrite the cell in plain Python",
            )
        if method != "run_line_magic" or len(args) != 2 or not (statement or assigned):
            raise self.fail(lineno, f"IPython syntax ({method}) inside an expression.")
        name, line = args
        if name.startswith("%"):
            raise self.fail(
                lineno,
                f"the cell magic %{name} is not on the first line of the cell.",
                "make it the cell's first line, or rewrite the cell in plain Python",
            )
        if name in ("system", "sx"):
            helper = "shell" if name == "system" else "shell_output"
            out.helpers.add(helper)
            edits.replace(*edits.span(node), f"{self.names[helper]}({line!r})")
            return
        if name in ("time", "timeit"):
            stmt = line if name == "time" else self._timeit_options(line, lineno)[1]
            if assigned and name == "timeit":
                raise self.fail(lineno, "%timeit returns nothing a script can assign.")
            target = parent if statement else node
            assert target is not None
            self._check_snippet(stmt, lineno, expression=assigned)
            edits.replace(*edits.span(target), stmt.strip())
            return
        if name in ("load_ext", "reload_ext") and line.strip() == "orion_nb" and statement:
            # the extension also puts `orion_nb` in the namespace: keep that name bound
            assert parent is not None
            edits.replace(*edits.span(parent), f"import orion_nb  # was %{name} orion_nb")
            return
        why = _DROPPED.get(name)
        if name in ("load_ext", "reload_ext"):
            why = _DROPPED_EXTENSIONS.get(line.strip())
        if why is not None and statement:
            shown = f"{name} {line}".strip() if name not in ("pinfo", "pinfo2") else f"{line}?"
            if name == "psearch":
                shown = f"{line}?"
            dropped[id(parent)] = (
                f"# dropped %{shown}: {why}" if "?" not in shown else (f"# dropped {shown}: {why}")
            )
            return
        hint = _HINTS.get(name)
        if name in ("load_ext", "reload_ext"):
            problem = f"%{name} {line.strip()} loads an IPython extension a script cannot use."
        else:
            problem = f"the magic %{name} has no equivalent in a script."
        raise self.fail(lineno, problem, hint)

    def _check_snippet(self, code: str, lineno: int, *, expression: bool) -> None:
        try:
            ast.parse(code.strip(), mode="eval" if expression else "exec")
        except SyntaxError:
            raise self.fail(lineno, "the timed statement is not plain Python.") from None

    def _module_level(
        self,
        stmt: ast.stmt,
        top: bool,
        edits: SourceEdits,
        dropped: dict[int, str],
        removed: set[int],
        out: Translated,
    ) -> None:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            annotation = " ".join(edits.text(stmt.annotation).split())
            if stmt.value is None:
                dropped[id(stmt)] = f"# {stmt.target.id}: {annotation}"
                return
            start = edits.span(stmt.target)[1]
            value_start = edits.span(stmt.value)[0]
            edits.replace(start, value_start, " = ")
            if edits.alone(stmt):
                end = edits.span(stmt)[1]
                edits.replace(end, end, f"  # type: {annotation}")
        elif isinstance(stmt, ast.Global):
            dropped[id(stmt)] = f"# global {', '.join(stmt.names)}: cell names are global already"
        elif isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            out.future_imports.append(" ".join(edits.text(stmt).split()))
            removed.add(id(stmt))
        elif isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            if not top:
                raise self.fail(
                    stmt.lineno,
                    "'import *' inside a block cannot run inside the script's function.",
                    "import the names you use explicitly",
                )
            out.star_imports.append(" ".join(edits.text(stmt).split()))
            removed.add(id(stmt))

    def _drop(
        self, tree: ast.Module, edits: SourceEdits, dropped: dict[int, str], removed: set[int]
    ) -> None:
        gone = set(dropped) | removed
        for _owner, body, _depth in blocks(tree):
            empty = body is not tree.body and all(id(s) in gone for s in body)
            first = True
            for stmt in body:
                if id(stmt) not in gone:
                    continue
                comment = dropped.get(id(stmt))
                if empty and first:
                    new = f"pass  {comment}" if comment else "pass"
                elif not edits.alone(stmt):
                    new = "pass"
                else:
                    new = comment or ""
                if empty and first:
                    first = False
                edits.replace(*edits.span(stmt), new)

    def _last_value(self, tree: ast.Module, edits: SourceEdits, out: Translated) -> None:
        """The value of a trailing expression: displayed, or a ``%%flow`` cell's result.

        As in IPython, only the cell's very last statement counts, and a magic's value
        (``!cmd``, ``%time``) is not shown.
        """
        if not tree.body or not isinstance(tree.body[-1], ast.Expr):
            return
        last = tree.body[-1]
        if _ipython_call(last.value) is not None:
            return
        call = last.value
        if (
            not self.as_flow
            and isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id in ("print", "display")
        ):
            return  # shows nothing more in a notebook: keep the line as written
        value = edits.text(last.value)
        if isinstance(last.value, ast.Tuple) and not value.startswith("("):
            value = f"({value})"  # one value, as the notebook shows it: `a, b` is a tuple
        if self.as_flow:
            edits.replace(*edits.span(last), f"return {value}")
        elif not ends_quietly(self.text):
            out.helpers.add("display")
            edits.replace(*edits.span(last), f"{self.names['display']}({value})")

    def _finish(self, code: str, out: Translated) -> None:
        try:
            compiled = compile(code, f"<{self.ref}>", "exec", flags=_AWAIT, dont_inherit=True)
        except SyntaxError as exc:
            lineno = exc.lineno
            raise self.fail(
                lineno, f"it is not valid Python ({exc.msg}).", "fix the error"
            ) from None
        out.is_async = bool(compiled.co_flags & _CO_COROUTINE)
        out.bound = bound_names(code)
        if re.search(r"\bdisplay\b", code) and "display" not in self.allowed:
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Name) and node.id == "display":
                    out.helpers.add("display")
                    break


def translate_cell(
    source: str,
    ref: CellRef,
    *,
    names: dict[str, str] | None = None,
    allowed: set[str] | None = None,
) -> Translated:
    """Translate one code cell (see the module docstring).

    Parameters
    ----------
    source
        The cell's source as saved in the notebook.
    ref
        Where the cell is, for error messages.
    names
        The names the script gives its helpers (``display``, ``shell``, ``shell_output``),
        when the notebook itself uses the usual ones for something else.
    allowed
        Names the notebook binds itself at module level (``get_ipython`` imported explicitly
        is then the user's business, and ``display`` theirs).

    Raises
    ------
    ExportError
        When the cell has no script equivalent; the message names the cell, quotes the line
        and says how to proceed.
    """
    helper_names = {"display": "display", "shell": "shell", "shell_output": "shell_output"}
    helper_names.update(names or {})
    return _Cell(source, ref, as_flow=False, names=helper_names, allowed=allowed or set()).run()
