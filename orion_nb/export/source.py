"""Python source as text: spans, statement lists, scopes and indentation.

The export edits cells *as text* at the spans the parser reports (so comments and layout
survive) and moves code into function bodies (so indentation must not touch the inside of
multi-line strings). These helpers do that, and nothing else.
"""

from __future__ import annotations

import ast
import io
import symtable
import tokenize
from collections.abc import Iterable
from typing import Any

__all__ = [
    "SourceEdits",
    "blocks",
    "bound_names",
    "ends_quietly",
    "has_statement",
    "indent_code",
    "leading_blank_lines",
    "leading_imports",
    "module_scope",
]


def leading_blank_lines(source: str) -> int:
    n = 0
    for line in source.splitlines():
        if line.strip():
            break
        n += 1
    return n


class SourceEdits:
    """Byte-span replacements on one text, applied back to front."""

    def __init__(self, text: str) -> None:
        self.data = text.encode()
        self.starts = [0]
        for line in text.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line.encode()))
        self.spans: list[tuple[int, int, str]] = []

    def pos(self, lineno: int, col: int) -> int:
        return self.starts[lineno - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        n: Any = node
        return self.pos(n.lineno, n.col_offset), self.pos(n.end_lineno, n.end_col_offset)

    def text(self, node: ast.AST) -> str:
        a, b = self.span(node)
        return self.data[a:b].decode()

    def replace(self, start: int, end: int, new: str) -> None:
        self.spans.append((start, end, new))

    def alone(self, node: ast.AST) -> bool:
        """Nothing but blanks before the statement on its first line and after it on its last."""
        n: Any = node
        a, b = self.span(node)
        before = self.data[self.starts[n.lineno - 1] : a]
        after = self.data[b : self.starts[n.end_lineno]]
        after = after.split(b"#", 1)[0]
        return not before.strip() and not after.strip(b" \t\r\n;")

    def apply(self) -> str:
        data = self.data
        for start, end, new in sorted(self.spans, key=lambda s: s[0], reverse=True):
            data = data[:start] + new.encode() + data[end:]
        return data.decode()


def ends_quietly(text: str) -> bool:
    """The cell ends with ``;``: IPython shows no value for it."""
    last = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type not in (
                tokenize.NEWLINE,
                tokenize.NL,
                tokenize.COMMENT,
                tokenize.ENDMARKER,
                tokenize.DEDENT,
                tokenize.INDENT,
            ):
                last = tok
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def blocks(tree: ast.AST) -> list[tuple[ast.AST, list[ast.stmt], int]]:
    """Every statement list with its owner and scope depth (0 = the cell's own scope)."""
    out: list[tuple[ast.AST, list[ast.stmt], int]] = []

    def walk(node: ast.AST, depth: int) -> None:
        inner = depth + isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
        )
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                out.append((node, value, inner if name != "decorator_list" else depth))
            if isinstance(value, list):
                for v in value:
                    if isinstance(v, ast.AST):
                        walk(v, inner)
            elif isinstance(value, ast.AST):
                walk(value, inner)

    walk(tree, 0)
    return out


def module_scope(tree: ast.AST) -> Iterable[ast.AST]:
    """Nodes evaluated in the module's scope (not inside def, class or lambda bodies)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if node is not tree and isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
        ):
            continue
        stack.extend(ast.iter_child_nodes(node))


def leading_imports(code: str) -> tuple[str, str]:
    """Split ``code`` into its leading import statements (with their comments) and the rest."""
    try:
        tree = ast.parse(code)
    except SyntaxError:  # pragma: no cover - translated code always parses
        return "", code
    end = 0
    for stmt in tree.body:
        if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
            break
        end = stmt.end_lineno or stmt.lineno
    lines = code.splitlines(keepends=True)
    return "".join(lines[:end]), "".join(lines[end:])


def bound_names(code: str) -> set[str]:
    """Names ``code`` binds at its top level (assigned, imported, defined, declared global)."""
    table = symtable.symtable(code, "<cell>", "exec")
    return {
        s.get_name()
        for s in table.get_symbols()
        if s.is_assigned() or s.is_imported() or s.is_declared_global()
    }


def has_statement(code: str) -> bool:
    try:
        return bool(ast.parse(code).body)
    except SyntaxError:
        return True


def indent_code(code: str, prefix: str) -> str:
    """``code`` with every line indented by ``prefix``, except lines inside multi-line strings."""
    skip: set[int] = set()
    strings = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in strings and tok.end[0] > tok.start[0]:
                skip.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass
    out = []
    for n, line in enumerate(code.splitlines(keepends=True), start=1):
        out.append(line if n in skip or not line.strip() else prefix + line)
    return "".join(out)
