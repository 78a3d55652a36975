"""The journal: batches that could not be written, kept on disk until they can be.

When the database cannot be written (server down, file locked, disk full) the writer keeps
batches in memory up to ``max_pending_rows``; beyond that, and at exit, they go here, under
``$ORION_NB_HOME/journal/<key>/``, one file per batch. ``<key>`` identifies the database
(a hash of its URL without the password), so records are only ever replayed into the
database they were meant for; each file's first line names that database (masked) for
``orion-nb db replay`` and people.

File names sort in the order the batches were made, and replay follows that order: a run's
later state must not be overwritten by an earlier one. Files are written to a temporary
name, synced and renamed, so a file that exists is whole. Replay is exactly-once because
each batch keeps its id, which the database records in ``write_batches`` with its rows: a
file replayed twice (two processes at once, a crash after commit but before the file was
deleted) is recognised and skipped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orion_nb.errors import warn_in_background
from orion_nb.settings import mask_url
from orion_nb.store.batches import Batch

__all__ = ["Journal", "JournalFile", "database_key", "exit_report", "quarantine", "rows_of"]

_VERSION = 1
_seq = itertools.count()


def database_key(url: str) -> str:
    """A stable name for a database: its URL without the password, hashed."""
    from orion_nb.store.database import sqlite_path

    path = sqlite_path(url)  # the common case, without importing SQLAlchemy
    if path is not None:
        ident = f"sqlite:{Path(path).expanduser().absolute()}"
        return hashlib.sha256(ident.encode("utf-8", "backslashreplace")).hexdigest()[:16]
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        ident = u.set(password=None).render_as_string(hide_password=False)
        if u.get_backend_name() == "sqlite":
            ident = f"sqlite:{Path(u.database or '').expanduser().absolute()}"
        elif u.get_backend_name() in ("postgres", "postgresql"):
            ident = u.set(drivername="postgresql", password=None).render_as_string(
                hide_password=False
            )
    except Exception:
        ident = mask_url(url)
    return hashlib.sha256(ident.encode("utf-8", "backslashreplace")).hexdigest()[:16]


class JournalFile:
    """One journaled batch on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"JournalFile({self.path.name!r})"

    def header(self) -> dict[str, Any]:
        with self.path.open(encoding="utf-8") as fh:
            head: dict[str, Any] = json.loads(fh.readline())
        return head

    def load(self) -> Batch:
        with self.path.open(encoding="utf-8") as fh:
            head = json.loads(fh.readline())
            lines = [json.loads(line) for line in fh if line.strip()]
        return Batch.from_lines(lines, head["batch"])

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class Journal:
    """The journal directory of one database."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.key = database_key(url)
        self.dir = root / self.key

    def write(self, batch: Batch) -> JournalFile:
        """Save ``batch`` (heartbeats are left out: a replayed one would only mislead)."""
        batch = batch.without_heartbeats()
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_seq):06d}-{batch.id[:40]}.jsonl"
        path = self.dir / name
        tmp = self.dir / f".{name}.tmp"
        head = {
            "version": _VERSION,
            "database": mask_url(self.url),
            "key": self.key,
            "batch": batch.id,
            "rows": len(batch),
            "pid": os.getpid(),
            "created": time.time(),
        }
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(head) + "\n")
            for line in batch.to_lines():
                fh.write(json.dumps(line, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return JournalFile(path)

    def files(self) -> list[JournalFile]:
        """This database's journaled batches, oldest first."""
        if not self.dir.is_dir():
            return []
        return [JournalFile(p) for p in sorted(self.dir.glob("*.jsonl"))]

    @staticmethod
    def other_databases(
        root: Path, except_key: str | None = None
    ) -> Iterator[tuple[str, str, int]]:
        """``(key, masked database, files)`` for every other database with a journal."""
        if not root.is_dir():
            return
        for d in sorted(root.iterdir()):
            if not d.is_dir() or d.name == except_key:
                continue
            files = sorted(d.glob("*.jsonl"))
            if not files:
                continue
            try:
                name = str(JournalFile(files[0]).header().get("database", "?"))
            except (OSError, ValueError):
                name = "?"
            yield d.name, name, len(files)


def quarantine(file: Any, exc: BaseException) -> None:
    """Move a journal file that cannot be read aside (``unreadable/``) and say so."""
    bad = file.path.parent / "unreadable"
    try:
        bad.mkdir(exist_ok=True)
        file.path.replace(bad / file.path.name)
    except OSError:
        pass
    warn_in_background(
        f"The journal file {file.path} cannot be read ({type(exc).__name__}: {exc}); it was "
        f"moved to {bad} and its records were not written."
    )


def exit_report(report: dict[str, Any], masked_url: str, journal_dir: Any) -> str | None:
    """What a process that exits with history not written says (``None``: nothing to say)."""
    journaled, lost = report.get("journaled", 0), report.get("lost", 0)
    if not journaled and not lost:
        return None
    text = (
        f"orion_nb could not write {journaled + lost:,} run history records to "
        f"{masked_url} before exiting"
        f"{': ' + report['error'] if report.get('error') else '.'}"
    )
    if journaled:
        text += (
            f" {journaled:,} were saved to the journal in {journal_dir}; the next "
            "orion_nb process using this database, or `orion-nb db replay`, writes them "
            "(exactly once)."
        )
    if lost:
        text += (
            f" {lost:,} could not be saved there either ({report.get('journal_error')}) "
            "and are lost."
        )
    return text


def rows_of(file: Any) -> int:
    """The number of rows a journal file holds (0 when its header cannot be read)."""
    try:
        return int(file.header().get("rows", 0))
    except (OSError, ValueError):
        return 0
