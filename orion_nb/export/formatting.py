"""Formatting an exported script with ruff, and listing the lint rules it still breaks.

ruff is a dependency of orion_nb: the export promises "same notebook in, same bytes out",
which holds only with one formatter version; a script formatted on one machine and not on
another would break it. Without a ruff executable the export still works (a warning says the
script is not formatted).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from orion_nb.errors import ExportError

__all__ = ["format_python", "with_noqa"]


def _ruff() -> str | None:
    try:
        from ruff.__main__ import find_ruff_bin

        return str(find_ruff_bin())
    except Exception:
        here = Path(sys.executable).with_name("ruff")
        return str(here) if here.exists() else None


def format_python(
    text: str, filename: str = "script.py", where: Path | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """``text`` formatted by ruff, and ruff's findings on it (default rules, no user config).

    ``where`` is the directory the script goes to: ruff's import sorting tells first-party
    modules (those next to the script) from third-party ones by looking there.

    Raises
    ------
    FileNotFoundError
        When no ruff executable can be found.
    """
    exe = _ruff()
    if exe is None:
        raise FileNotFoundError("ruff")
    # without a destination, a fresh empty directory: the same notebook must give the same
    # bytes wherever the command is run from
    with tempfile.TemporaryDirectory(prefix="orion-nb-ruff-") as empty:
        cwd = str(where) if where is not None and where.is_dir() else empty

        def ruff(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [exe, *args, "--isolated", "--stdin-filename", filename, "-"],
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
                cwd=cwd,
            )

        fmt = ruff("format", stdin=text)
        if fmt.returncode != 0:
            raise ExportError(
                f"ruff could not format the exported script ({fmt.stderr.strip()[:500]}); "
                "this is a bug in orion-nb's export: please report it with the notebook."
            )
        # sorted import blocks (the notebook's and the script's own, merged at the top)
        fixed = ruff(
            "check", "--select", "I001", "--fix", "--exit-zero", "--quiet", stdin=fmt.stdout
        )
        formatted = fixed.stdout if fixed.returncode == 0 and fixed.stdout else fmt.stdout
        formatted = ruff("format", stdin=formatted).stdout or formatted
        check = ruff("check", "--output-format", "json", stdin=formatted)
    try:
        findings = json.loads(check.stdout or "[]")
    except ValueError:  # pragma: no cover - ruff always answers JSON here
        findings = []
    return formatted, findings


def with_noqa(text: str, codes: list[str]) -> str:
    """Insert the file-level ``# ruff: noqa:`` line right after the docstring."""
    tree = ast.parse(text)
    first = tree.body[0]
    end = first.end_lineno or 1
    lines = text.splitlines(keepends=True)
    note = (
        "\n# The notebook's code breaks these lint rules as written; fix them and delete this "
        f"line.\n# ruff: noqa: {', '.join(codes)}\n"
    )
    return "".join(lines[:end]) + note + "".join(lines[end:])
