#!/usr/bin/env python3
"""Export notebooks/daily_report.ipynb again and put the result where the docs show it.

    .venv/bin/python scripts/export_example.py

Writes notebooks/daily_report.py and the two code columns of docs/schedule.md ("A notebook and
its script, side by side"). tests/export/test_docs.py fails until this has been run after a
change to the notebook or to the export.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "daily_report.ipynb"
SCRIPT = ROOT / "notebooks" / "daily_report.py"
DOC = ROOT / "docs" / "schedule.md"


def exported() -> str:
    sys.path.insert(0, str(ROOT))
    from orion_nb.export.schedules import Schedule
    from orion_nb.export.script import export_notebook

    schedule = Schedule.parse(cron="0 6 * * *", timezone="Europe/Paris")
    return export_notebook(NOTEBOOK, schedule=schedule, script_path=SCRIPT).text


def notebook_column() -> str:
    """The notebook's cells as the left column shows them."""
    import nbformat

    parts = []
    for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
        if cell.cell_type == "markdown":
            lines = cell.source.splitlines()
            parts.append("# [markdown]\n" + "\n".join(f"# {x}" if x else "#" for x in lines))
        else:
            tags = cell.metadata.get("tags")
            head = f"# [code, tagged {', '.join(tags)}]" if tags else "# [code]"
            parts.append(f"{head}\n{cell.source}")
    return "\n\n".join(parts)


def columns(doc: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r"<pre><code>(.*?)</code></pre>", doc, re.S)]


def main() -> None:
    text = exported()
    SCRIPT.write_text(text)
    doc = DOC.read_text()
    blocks = iter([notebook_column(), text])
    doc = re.sub(
        r"<pre><code>.*?</code></pre>",
        lambda _m: f"<pre><code>{html.escape(next(blocks))}</code></pre>",
        doc,
        count=2,
        flags=re.S,
    )
    DOC.write_text(doc)
    print(f"wrote {SCRIPT.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
