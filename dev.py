#!/usr/bin/env python3
"""Developer entry point: sets up its own virtual environment, then runs a job.

    python3 dev.py demo   # run notebooks/quickstart.ipynb headless, print the recorded runs
    python3 dev.py test   # lint, type-check, build the docs, run the whole test suite

Needs only Python 3.11+. The environment lives in .venv and is refreshed when pyproject.toml
changes. With CI=true the suite is strict: browser and Postgres tests must run, not skip.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def sh(*cmd: str | Path, **kw: object) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)  # type: ignore[call-overload]


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"orion_nb needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not PY.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".orion_nb-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        sh(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        sh(PY, "-m", "pip", "install", "--quiet", "-e", ".[test]")
        stamp.write_text(digest)


def demo() -> None:
    sh(PY, "scripts/run_quickstart.py")


LINTED = ("orion_nb", "tests", "benchmarks", "scripts", "dev.py")


def test(extra: list[str]) -> None:
    sh(PY, "-m", "ruff", "check", *LINTED)
    sh(PY, "-m", "ruff", "format", "--check", *LINTED)
    sh(PY, "-m", "mypy")
    site = ROOT / "build" / "site"
    sh(PY, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site))
    sh(PY, "-m", "pytest", *extra)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("demo", "test", "setup"):
        sys.exit(__doc__)
    ensure_venv()
    if argv[0] == "demo":
        demo()
    elif argv[0] == "test":
        test(argv[1:])


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode or 1)
