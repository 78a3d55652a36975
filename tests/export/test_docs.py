"""The docs show what the export makes today, and the example script is that export."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _example() -> object:
    spec = importlib.util.spec_from_file_location(
        "export_example", ROOT / "scripts" / "export_example.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_script_and_the_docs_show_the_current_export():
    ex: object = _example()
    text = ex.exported()  # type: ignore[attr-defined]
    hint = "run .venv/bin/python scripts/export_example.py"
    assert (ROOT / "notebooks" / "daily_report.py").read_text() == text, hint
    notebook, script = ex.columns((ROOT / "docs" / "schedule.md").read_text())  # type: ignore[attr-defined]
    assert script == text, hint
    assert notebook == ex.notebook_column(), hint  # type: ignore[attr-defined]
