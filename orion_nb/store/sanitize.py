"""Making any value storable: the writer's first line of defence against poisoned batches.

Both databases refuse some strings. SQLite's driver cannot encode a lone surrogate (ordinary
in file names decoded with ``surrogateescape``, e.g. ``b"caf\\xe9.csv"``); Postgres refuses a
NUL character in ``text`` and ``jsonb`` and a ``\\udce9`` escape in JSON. One such value used to
fail its whole batch, forever. So every text column and every string inside a JSON column is
cleaned before it is written:

- a lone surrogate becomes its escape text (``\\udce9``) and a NUL becomes ``\\x00``: visible,
  and the same on both databases;
- text longer than :data:`MAX_TEXT` characters is cut, with a marker saying how much was cut;
- a value that is not a string (a custom object passed as a name) becomes its bounded ``str``.

Ordinary ASCII text takes the fast path: two C-level scans and no copy, so the writer's
per-row cost stays what it was (``benchmarks/writer_load.py`` measures it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_TEXT", "clean_json", "clean_text", "truncate"]

# a record is for people to read: a megabyte of text is already more than anyone will
MAX_TEXT = 1_000_000


def truncate(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to about ``limit`` characters, with a marker naming what was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated {len(text) - limit:,} characters]"


def _slow(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:
            value = f"<unprintable {type(value).__name__}>"
        if not isinstance(value, str):  # a __str__ that returns something odd
            value = f"<unprintable {type(value).__name__}>"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    return truncate(value, limit)


def clean_text(value: Any, limit: int = MAX_TEXT) -> Any:
    """``value`` made safe for a text column of either database (``None`` stays ``None``)."""
    if value.__class__ is str:
        if value.isascii() and len(value) <= limit and "\x00" not in value:
            return value
        return _slow(value, limit)
    if value is None:
        return None
    return _slow(value, limit)


def clean_json(value: Any, depth: int = 0) -> Any:
    """A JSON column's value with every string (keys too) cleaned; other scalars kept.

    Values come from :func:`orion_nb.engine.params.jsonable`, so they are already JSON types
    and bounded in size; this only removes what a database would refuse.
    """
    cls = value.__class__
    if cls is str:
        return clean_text(value)
    if value is None or cls is bool or cls is int or cls is float:
        if cls is int and value.bit_length() > 63:
            return clean_text(f"<int of {value.bit_length()} bits>")
        if cls is float and (value != value or value in (float("inf"), float("-inf"))):
            return repr(value)
        return value
    if depth > 20:
        return clean_text(repr(type(value)))
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v, depth + 1) for v in value]
    return clean_text(value)
