"""The history browser's filters and chart window, from Python arguments or the widget.

``orion_nb.browse(flow=..., state=...)`` and the widget's filter bar describe the same
:class:`~orion_nb.store.browse.RunFilter`. Arguments are checked here, with an error that
names the argument and what it accepts; the widget sends a dict (``filters`` trait) that goes
through the same function, so a value the front-end could never produce is refused the same
way. The chart shows runs per hour or per day (in the viewer's time zone) over the filter's
time range, or over the recent history when there is none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orion_nb.errors import ParameterError
from orion_nb.store.browse import RunFilter

__all__ = ["FILTER_KEYS", "chart_buckets", "chart_window", "describe", "parse_filters"]

FILTER_KEYS = ("flow", "state", "since", "until", "deployment", "tag", "text", "subflows")
HOUR_MS = 3_600_000.0
MAX_BUCKETS = 400


def _clean(value: str) -> str:
    """Text as stored: a lone surrogate cannot be encoded, so it is escaped (as names are)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value.replace("\x00", "\\x00")


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple | set | frozenset) or not all(
        isinstance(v, str) for v in values
    ):
        raise ParameterError(
            f"browse({key}=...) takes a string or a list of strings, not {type(value).__name__}."
        )
    return tuple(_clean(v) for v in values if v != "")


def _time(key: str, value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):  # epoch ms (the widget)
        return datetime.fromtimestamp(float(value) / 1000.0, UTC)
    if isinstance(value, timedelta):  # "the last day"
        return datetime.now(UTC) - value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ParameterError(
        f"browse({key}=...) takes a datetime, an ISO 8601 string or a timedelta (that long "
        f"ago), not {value!r:.60}."
    )


def parse_filters(values: dict[str, Any]) -> RunFilter:
    """A :class:`RunFilter` from ``browse()`` arguments or the widget's ``filters`` dict."""
    unknown = sorted(set(values) - set(FILTER_KEYS) - {"unit"})
    if unknown:
        raise ParameterError(
            f"browse() got unknown filters {unknown}; it accepts {', '.join(FILTER_KEYS)}."
        )
    text = values.get("text") or ""
    if not isinstance(text, str):
        raise ParameterError(f"browse(text=...) takes a string, not {type(text).__name__}.")
    subflows = values.get("subflows", False)
    if not isinstance(subflows, bool):
        raise ParameterError("browse(subflows=...) takes True or False.")
    since = _time("since", values.get("since"))
    until = _time("until", values.get("until"))
    if since is not None and until is not None and until <= since:
        raise ParameterError(
            f"browse(until=...) ({until.isoformat()}) must come after since ({since.isoformat()})."
        )
    return RunFilter(
        flow=_strings("flow", values.get("flow")),
        state=_strings("state", values.get("state")),
        since=since,
        until=until,
        deployment=_strings("deployment", values.get("deployment")),
        tag=_strings("tag", values.get("tag")),
        text=_clean(text),
        subflows=subflows,
    )


def to_trait(f: RunFilter, unit: str = "auto") -> dict[str, Any]:
    """The widget's ``filters`` dict of a filter (times as epoch ms)."""
    return {
        "flow": list(f.flow),
        "state": list(f.state),
        "since": None if f.since is None else f.since.timestamp() * 1000.0,
        "until": None if f.until is None else f.until.timestamp() * 1000.0,
        "deployment": list(f.deployment),
        "tag": list(f.tag),
        "text": f.text,
        "subflows": f.subflows,
        "unit": unit,
    }


def describe(f: RunFilter) -> str:
    """The filter in words, for the static table's caption (plain text)."""
    parts = []
    for label, values in (
        ("flow", f.flow),
        ("state", f.state),
        ("deployment", f.deployment),
        ("tag", f.tag),
    ):
        if values:
            parts.append(
                f"{label} {' or '.join(values) if label != 'tag' else ' and '.join(values)}"
            )
    if f.text:
        parts.append(f"name contains {f.text!r}")
    if f.since:
        parts.append(f"since {f.since.strftime('%Y-%m-%d %H:%M')} UTC")
    if f.until:
        parts.append(f"until {f.until.strftime('%Y-%m-%d %H:%M')} UTC")
    if f.subflows:
        parts.append("subflows included")
    return "; ".join(parts)


def zone(name: str | None) -> Any:
    """The viewer's time zone (an IANA name from the browser), UTC when unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def chart_window(
    f: RunFilter, oldest_ms: float | None, now: datetime, unit: str = "auto"
) -> tuple[str, datetime, datetime]:
    """(unit, start, end) of the chart: the filter's range, else the recent history.

    ``auto`` is hours when the runs span two days or less, else days; at most
    :data:`MAX_BUCKETS` bars (the start moves forward, never the end).
    """
    end = f.until or now
    if f.since is not None:
        start = f.since
    elif oldest_ms is not None:
        start = datetime.fromtimestamp(oldest_ms / 1000.0, UTC)
    else:
        start = end - timedelta(hours=24)
    start = min(start, end - timedelta(hours=1))
    if unit not in ("hour", "day"):
        unit = "hour" if end - start <= timedelta(days=2) else "day"
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    if f.since is None and unit == "hour":
        start = max(start, end - timedelta(hours=48))
    start = max(start, end - step * MAX_BUCKETS)
    return unit, start, end


def chart_buckets(
    hours: list[tuple[float, str, int]], unit: str, start: datetime, end: datetime, tz: Any
) -> dict[str, Any]:
    """The chart trait: bars of ``unit`` in ``tz`` from per-UTC-hour counts.

    Returns ``{unit, start, end, bars: [[bar start ms, {STATE_TYPE: n}], ...]}`` with a bar
    for every hour or local day of the window, empty ones included, so gaps show as gaps.
    """

    def bar_of(ms: float) -> float:
        when = datetime.fromtimestamp(ms / 1000.0, tz)
        if unit == "hour":
            when = when.replace(minute=0, second=0, microsecond=0)
        else:
            when = when.replace(hour=0, minute=0, second=0, microsecond=0)
        return when.timestamp() * 1000.0

    bars: dict[float, dict[str, int]] = {}
    cursor = bar_of(start.timestamp() * 1000.0)
    stop = end.timestamp() * 1000.0
    while cursor <= stop and len(bars) <= MAX_BUCKETS:
        bars[cursor] = {}
        step = HOUR_MS if unit == "hour" else 26 * HOUR_MS  # past the next midnight (DST-safe)
        cursor = bar_of(cursor + step)
    for ms, stype, n in hours:
        key = bar_of(ms)
        counts = bars.setdefault(key, {})
        counts[stype] = counts.get(stype, 0) + n
    return {
        "unit": unit,
        "start": start.timestamp() * 1000.0,
        "end": stop,
        "bars": [[k, v] for k, v in sorted(bars.items())],
    }
