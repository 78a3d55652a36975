"""Query results into the history frames users see: from driver rows, or from Arrow.

A history frame has one fixed meaning whatever read it: timezone-aware UTC datetimes, JSON
columns decoded (tags as tuples, parameters as dicts), ids as text. Two sources produce it:

- **Rows** (:func:`from_rows`), as the ``sqlite3`` driver or asyncpg hand them out: one Python
  object per cell, turned into columns by ``DataFrame.from_records``. This is the reference:
  what pandas infers from those objects *is* the frame's dtypes, on any pandas version.
- **Arrow** (:func:`from_arrow`), as an ADBC driver hands it out: whole columns, converted in
  C without a Python object per cell (a million task runs in about a second instead of six).
  Each column's dtype is not guessed: it is the dtype :func:`from_rows` gives for a two-row
  sample of the same column (its first value, and a missing one if the column has any), so the
  two paths agree by construction, including pandas' data-dependent choices (an integer column
  with a missing value is float64, a column with no value at all is ``object``).

Whatever this module cannot reproduce exactly raises :class:`Unrepresentable`, and the caller
reads the rows instead: a slower frame, never a different one.

With ``dtype_backend="pyarrow"`` every column (but the categorical state columns and the
``parameters`` dicts) is a ``pd.ArrowDtype`` with a type that depends on the column, never on
the data: tags are ``list<string>``, timestamps ``timestamp[us, UTC]``, counts ``int64``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "Arrival",
    "Categories",
    "Kinds",
    "Unrepresentable",
    "decode_json",
    "from_arrow",
    "from_rows",
    "newest_first",
    "to_pyarrow_backend",
]

# What a column holds, from its SQLAlchemy type (see ``queries.kinds``): "text", "id" (a run
# id: text on SQLite, uuid on Postgres), "int", "time" (a UTC timestamp) or "json".
Kinds = dict[str, str]
# columns shown as categoricals, with their categories in display order
Categories = dict[str, list[str]]
# SQLite holds SQLAlchemy's DATETIME text: one exact format, parsed in C
_SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class Unrepresentable(Exception):
    """The Arrow result holds something the Arrow path cannot turn into the reference frame."""


# -- the reference: rows -------------------------------------------------------------------------
def decode_json(series: pd.Series, immutable: bool) -> pd.Series:
    """Decode JSON text once per distinct value.

    Tags become tuples, which can safely be shared between rows; dicts (parameters) are
    copied per row so that editing one cell never changes another.
    """
    cache: dict[Any, Any] = {}

    def decode(value: Any) -> Any:
        if not isinstance(value, str):
            return tuple(value) if immutable and isinstance(value, list) else value
        hit = cache.get(value, cache)
        if hit is cache:
            hit = _loads(value, immutable)
            cache[value] = hit
        return hit if immutable else _own_copy(hit)

    return series.map(decode).astype(object)


def _loads(text: str, immutable: bool) -> Any:
    value = json.loads(text)
    return tuple(value) if immutable and isinstance(value, list) else value


def _own_copy(value: Any) -> Any:
    return type(value)(value) if isinstance(value, (list, dict)) else value


def from_rows(
    rows: Sequence[Sequence[Any]],
    kinds: Kinds,
    *,
    sqlite: bool,
    categories: Categories | None = None,
) -> pd.DataFrame:
    """The frame of driver rows (the reference conversion); ``kinds`` in column order."""
    df = pd.DataFrame.from_records(rows, columns=list(kinds))
    for name, kind in kinds.items():
        if kind == "time":
            df[name] = pd.to_datetime(
                df[name], utc=True, format=_SQLITE_TIME_FORMAT if sqlite else "ISO8601"
            )
        elif kind == "json":
            df[name] = decode_json(df[name], immutable=name == "tags")
        elif kind == "id" and not sqlite:
            # asyncpg hands out uuid.UUID objects; pandas may have turned a missing one into
            # NaN, which must stay missing (str() of it would be the id "nan")
            df[name] = df[name].map(lambda v: None if v is None or v != v else str(v))
    for name, known in (categories or {}).items():
        values = df[name].astype(object)
        cats = _with_extras(known, values.dropna().unique())
        df[name] = pd.Categorical.from_codes(pd.Index(cats).get_indexer(values), categories=cats)
    return df


def _with_extras(known: list[str], present: Any) -> list[str]:
    """The known categories in their display order, then any other names present, sorted:
    a run may end in a state named by the user (``Completed(name="Skipped")``) or log at a
    custom level, and those names must come back, not turn into NaN."""
    known_set = set(known)
    return [*known, *sorted(str(v) for v in present if v not in known_set)]


# -- the same frame from Arrow ---------------------------------------------------------------------
def from_arrow(
    table: Any,
    kinds: Kinds,
    *,
    sqlite: bool,
    categories: Categories | None = None,
    newest_first: Arrival | None = None,
    pyarrow_backend: bool = False,
) -> pd.DataFrame:
    """The frame of an Arrow table, equal to :func:`from_rows` of the same result (followed
    by :func:`newest_first` when asked).

    ``table`` is a ``pyarrow.Table`` as an ADBC driver returns it: on SQLite, timestamps and
    JSON are text; on Postgres, ids and JSON were cast to text in the query and timestamps
    are ``timestamptz``. Sorting happens on the Arrow columns, before any pandas column
    exists, where taking rows in a new order costs least.
    """
    categories = categories or {}
    if table.column_names != list(kinds):
        raise Unrepresentable(f"columns {table.column_names} are not {list(kinds)}")
    if table.num_rows == 0:
        df = from_rows([], kinds, sqlite=sqlite, categories=categories)
        return to_pyarrow_backend(df, kinds) if pyarrow_backend else df
    raw = {name: table[name].combine_chunks() for name in kinds}
    arrays = {name: _timestamps(arr) if kinds[name] == "time" else arr for name, arr in raw.items()}
    if newest_first is not None:
        order = _newest_first_order(arrays["created"].cast("int64").to_numpy(), newest_first)
        if order is not None:
            arrays = {name: arr.take(order) for name, arr in arrays.items()}
    columns: dict[str, pd.Series] = {}
    for name, arr in arrays.items():
        if name in categories:
            columns[name] = _categorical(arr, categories[name])
        elif pyarrow_backend:
            columns[name] = _arrow_column(arr, name, kinds[name])
        else:
            columns[name] = _column(arr, name, kinds[name])
    if not pyarrow_backend:
        # the dtypes the reference conversion gives these values
        sample = [_sample(raw[name]) for name in kinds]
        reference = from_rows(list(zip(*sample, strict=True)), kinds, sqlite=sqlite).dtypes
        for name, col in columns.items():
            if name not in categories and col.dtype != reference[name]:
                try:
                    columns[name] = col.astype(reference[name])
                except (TypeError, ValueError) as exc:
                    raise Unrepresentable(f"column {name!r}: {exc}") from exc
    return pd.DataFrame(columns, copy=False)


def _categorical(arr: Any, known: list[str]) -> pd.Series:
    """The categories of :func:`from_rows` (known, then extras), codes looked up in C."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if arr.null_count == len(arr):
        return pd.Series(pd.Categorical.from_codes(np.full(len(arr), -1), categories=known))
    if not pa.types.is_string(arr.type):
        raise Unrepresentable(f"categories of Arrow type {arr.type}")
    cats = _with_extras(known, pc.unique(arr).drop_null().to_pylist())
    codes = pc.index_in(arr, value_set=pa.array(cats, pa.string())).fill_null(-1)
    return pd.Series(pd.Categorical.from_codes(codes.to_numpy(), categories=cats))


def _column(arr: Any, name: str, kind: str) -> pd.Series:
    """One column with the reference's values (its dtype is fixed afterwards)."""
    import pyarrow as pa

    if arr.null_count == len(arr):
        return pd.Series(np.full(len(arr), None, dtype=object))
    if kind == "json":
        return pd.Series(_decode_json_array(arr, immutable=name == "tags"))
    # a type the column's kind does not explain (SQLite stores what it is given): read rows
    if kind == "int" and not pa.types.is_integer(arr.type):
        raise Unrepresentable(f"column {name!r} holds {arr.type}, not integers")
    if kind in ("text", "id") and not pa.types.is_string(arr.type):
        raise Unrepresentable(f"column {name!r} holds {arr.type}, not text")
    if kind == "time":
        # pyarrow would attach zoneinfo's UTC; pandas' own parsing attaches datetime's, and
        # concatenating frames that differ there silently gives an object column
        naive = arr.cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)
        return pd.Series(naive).dt.tz_localize(UTC)
    return arr.to_pandas()


def _sample(arr: Any) -> list[Any]:
    """Two values of a column, as the driver would hand them out: the first present value
    (or a missing one), then a missing one if the column has any, else that value again."""
    present = arr.drop_null()
    first = present[0].as_py() if len(present) else None
    return [first, None if arr.null_count else first]


def _timestamps(arr: Any) -> Any:
    """A column of UTC timestamps: SQLite's DATETIME text parsed in C, Postgres' as it is."""
    import pyarrow as pa
    import pyarrow.compute as pc

    utc = pa.timestamp("us", tz="UTC")
    if arr.null_count == len(arr):
        return pa.nulls(len(arr), utc)
    if pa.types.is_timestamp(arr.type) and arr.type.tz is not None:
        return arr.cast(utc)
    if not pa.types.is_string(arr.type):
        raise Unrepresentable(f"timestamps of Arrow type {arr.type}")
    try:  # naive-UTC text, the one format SQLAlchemy and the writer store
        return pc.cast(arr, pa.timestamp("us")).cast(utc)
    except pa.ArrowException as exc:
        raise Unrepresentable(f"timestamps: {exc}") from exc


def _decode_json_array(arr: Any, immutable: bool) -> np.ndarray[Any, Any]:
    """JSON text decoded once per distinct value, as :func:`decode_json` does per row."""
    import pyarrow as pa

    if arr.null_count == len(arr):
        return np.full(len(arr), None, dtype=object)
    if not pa.types.is_string(arr.type):
        raise Unrepresentable(f"JSON of Arrow type {arr.type}")
    encoded = arr.dictionary_encode()
    texts = encoded.dictionary.to_pylist()
    values = np.empty(len(texts) + 1, dtype=object)  # the last slot is for missing values
    for i, text in enumerate(texts):
        values[i] = _loads(text, immutable)
    values[-1] = None
    out: np.ndarray[Any, Any] = values[encoded.indices.fill_null(len(texts)).to_numpy()]
    if not immutable:
        for i, v in enumerate(out):
            out[i] = _own_copy(v)
    return out


# -- dtype_backend="pyarrow" ----------------------------------------------------------------------
def _arrow_type(name: str, kind: str) -> Any:
    """The Arrow type of a column of a ``dtype_backend="pyarrow"`` frame (None: objects)."""
    import pyarrow as pa

    if kind == "time":
        return pa.timestamp("us", tz="UTC")
    if kind == "int":
        return pa.int64()
    if kind == "json":
        return pa.list_(pa.string()) if name == "tags" else None
    return pa.string()


def _arrow_series(arr: Any) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(arr))


def _arrow_column(arr: Any, name: str, kind: str) -> pd.Series:
    import pyarrow as pa

    target = _arrow_type(name, kind)
    if target is None:  # parameters: dicts, one per row
        return pd.Series(_decode_json_array(arr, immutable=False))
    if arr.null_count == len(arr):
        return _arrow_series(pa.nulls(len(arr), target))
    if kind == "time":
        return _arrow_series(_timestamps(arr))
    if kind == "json":  # tags: each distinct list built once, then taken by index in C
        if not pa.types.is_string(arr.type):
            raise Unrepresentable(f"JSON of Arrow type {arr.type}")
        encoded = arr.dictionary_encode()
        lists = [_loads(text, immutable=True) for text in encoded.dictionary.to_pylist()]
        if any(not isinstance(v, tuple) for v in lists):
            raise Unrepresentable(f"column {name!r} holds JSON that is not a list")
        distinct = pa.array([list(v) for v in lists], target)
        return _arrow_series(distinct.take(encoded.indices))
    try:
        return _arrow_series(arr.cast(target))
    except pa.ArrowException as exc:
        raise Unrepresentable(f"column {name!r}: {exc}") from exc


def to_pyarrow_backend(df: pd.DataFrame, kinds: Kinds) -> pd.DataFrame:
    """A reference frame with ``pd.ArrowDtype`` columns (when the rows were read)."""
    import pyarrow as pa

    out = {}
    for name, col in df.items():
        kind = kinds.get(str(name), "text")
        target = _arrow_type(str(name), kind)
        if target is None or isinstance(col.dtype, pd.CategoricalDtype):
            out[name] = col
            continue
        if kind == "json":
            values: Any = [None if v is None else list(v) for v in col]
        elif kind == "time":
            values = col.astype("datetime64[us, UTC]")
        elif kind == "int":
            values = col.astype("Int64")
        else:
            values = [None if pd.isna(v) else v for v in col.astype(object)]
        out[name] = pd.Series(
            pd.arrays.ArrowExtensionArray(pa.array(values, target)), index=df.index
        )
    return pd.DataFrame(out, copy=False)


# -- order ----------------------------------------------------------------------------------------
# How rows arrived from the database, for sorting them newest first: "read" when they came
# last-recorded first (SQLite's ORDER BY rowid DESC), "reversed" when they came in table
# order (Postgres) and must be reversed first. Either way, among equal ``created`` the row
# recorded last comes first.
Arrival = Literal["read", "reversed"]


def _newest_first_order(created: np.ndarray[Any, Any], arrival: Arrival) -> Any:
    """Positions that put rows newest ``created`` (an int64 key) first, or None when the
    rows already are in that order."""
    n = len(created)
    key = created[::-1] if arrival == "reversed" else created
    in_order = n < 2 or bool(np.all(key[:-1] >= key[1:]))
    # stable: among equal keys the order of arrival (last recorded first) is kept
    order = None if in_order else np.argsort(-key, kind="stable")
    if arrival == "read":
        return order
    return np.arange(n - 1, -1, -1) if order is None else (n - 1) - order


def newest_first(df: pd.DataFrame, arrival: Arrival) -> pd.DataFrame:
    """``df`` sorted newest ``created`` first (see :data:`Arrival`)."""
    created = df["created"]
    if isinstance(created.dtype, pd.ArrowDtype):
        created = created.astype("datetime64[us, UTC]")
    order = _newest_first_order(created.array.asi8, arrival)
    return df if order is None else df.take(order).reset_index(drop=True)
