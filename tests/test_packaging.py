"""The wheel carries the widget front-end and the migrations, and finds them when installed."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_extensions_and_migrations_and_finds_them(tmp_path: Path):
    out = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(out.glob("orion_nb-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "orion_nb/_extensions/runview.js",
        "orion_nb/_extensions/runview.css",
        "orion_nb/store/migrations/env.py",
        "orion_nb/store/migrations/script.py.mako",
        "orion_nb/store/migrations/versions/0001_initial.py",
    ):
        assert required in names, required
    # installed from the wheel (not the source tree), the widget finds its front-end
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    code = (
        "import orion_nb.notebook.widget as w, pathlib; "
        "p = w.RunView._esm; print(pathlib.Path(str(w.__file__)).parent.parent, w.extensions_dir())"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    pkg, ext = res.stdout.split()
    assert Path(pkg) == target / "orion_nb"
    assert Path(ext) == target / "orion_nb" / "_extensions"
    assert (Path(ext) / "runview.js").read_text().startswith("// orion_nb RunView")
