"""Schedules: when a deployment runs.

Two kinds, both computed in UTC instants so that every ``serve`` process, on any host, derives
exactly the same slots from the same schedule (a slot is claimed by its instant, see
:mod:`orion_nb.store.deployments`):

- **cron**: five fields (minute hour day-of-month month day-of-week, or ``@daily`` and friends)
  read by croniter in the schedule's *wall-clock* time zone. croniter walks naive local times;
  each one is then placed in the zone with ``zoneinfo`` (``fold=0``), which settles the two
  daylight-saving edge cases the way people expect of cron:

  * a local time that does not exist (spring forward, e.g. 02:30 in Europe/Paris on the last
    Sunday of March) runs at the same instant it would have had without the jump, i.e. one
    hour later on the wall clock (03:30); a schedule that hits the gap twice (hourly) runs once;
  * a local time that happens twice (fall back) runs once, at its first occurrence.

- **interval**: every N seconds of absolute time, counted from an *anchor* (default
  2000-01-01 00:00 in the schedule's time zone), so ``--interval 900`` runs at :00, :15, :30
  and :45, and two processes agree without talking to each other. Intervals ignore
  daylight-saving changes (they are durations); use cron for "every day at 06:00".

Everything here is pure: no clock is read, ``after`` is always passed in.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from orion_nb.errors import ScheduleError

__all__ = ["DEFAULT_ANCHOR", "Schedule", "default_anchor", "parse_interval", "parse_timezone"]

#: Intervals count from here (in the schedule's time zone) unless an anchor is given.
DEFAULT_ANCHOR = datetime(2000, 1, 1)

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MICRO = timedelta(microseconds=1)


def parse_timezone(name: str | None) -> ZoneInfo:
    """The ``zoneinfo`` zone called ``name`` (``None`` means UTC), or a :class:`ScheduleError`."""
    if name is None or name == "":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ScheduleError(
            f"Unknown time zone {name!r}: use an IANA name such as 'Europe/Paris', "
            f"'America/New_York' or 'UTC'{hint}"
        ) from None


def parse_interval(value: str | float) -> float:
    """Seconds from ``90``, ``"90"``, ``"90s"``, ``"15m"``, ``"2h"`` or ``"1d"`` (must be > 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", str(value).lower())
        if m is None:
            raise ScheduleError(
                f"Interval {value!r} is not a number of seconds; write e.g. 90, '90s', '15m', "
                "'2h' or '1d'."
            )
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ScheduleError(f"Interval {value!r} must be a positive number of seconds.")
    return seconds


def _check_cron(expr: str) -> str:
    """The expression with aliases expanded, or a :class:`ScheduleError` saying what is wrong."""
    from croniter import croniter

    text = " ".join(str(expr).split())
    text = _ALIASES.get(text.lower(), text)
    fields = text.split(" ")
    if text.startswith("@"):
        raise ScheduleError(
            f"Cron expression {expr!r} is not supported; use five fields or one of "
            f"{', '.join(sorted(_ALIASES))}."
        )
    if len(fields) != 5:
        raise ScheduleError(
            f"Cron expression {expr!r} has {len(fields)} field{'s' if len(fields) != 1 else ''}; "
            "it needs 5: minute hour day-of-month month day-of-week, e.g. '0 6 * * *' "
            "(every day at 06:00)."
        )
    try:
        croniter(text, DEFAULT_ANCHOR)
    except Exception as exc:  # croniter's errors are plain ValueError/KeyError subclasses
        raise ScheduleError(
            f"Cron expression {expr!r} is invalid: {exc}. Fields are minute (0-59), hour "
            "(0-23), day of month (1-31), month (1-12 or JAN-DEC) and day of week (0-7 or "
            "SUN-SAT), e.g. '*/15 9-17 * * MON-FRI'."
        ) from None
    return text


def default_anchor(timezone: str | None = None) -> datetime:
    """Where interval slots are counted from when no anchor is given (aware, UTC)."""
    return _aware(DEFAULT_ANCHOR, parse_timezone(timezone))


def _aware(value: datetime | str, tz: ZoneInfo) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ScheduleError(
                f"Anchor {value!r} is not an ISO date and time; write e.g. '2024-01-01T06:00'."
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Schedule:
    """A cron or interval schedule in a time zone.

    Build one with :meth:`parse`; it validates everything at once, so a bad expression fails
    when a deployment is exported or served, not at 3 a.m.

    Attributes
    ----------
    cron
        Five-field cron expression (aliases expanded), or ``None`` for an interval schedule.
    interval
        Seconds between runs, or ``None`` for a cron schedule.
    timezone
        IANA time zone name the cron fields (and a naive anchor) are read in.
    anchor
        The instant (aware, UTC) interval slots are counted from.
    """

    cron: str | None = None
    interval: float | None = None
    timezone: str = "UTC"
    anchor: datetime | None = None

    @classmethod
    def parse(
        cls,
        cron: str | None = None,
        interval: str | float | None = None,
        timezone: str | None = None,
        anchor: datetime | str | None = None,
    ) -> Schedule | None:
        """Validate the options of ``export``/``serve``; ``None`` when none is given."""
        if cron is not None and interval is not None:
            raise ScheduleError("Give either --cron or --interval, not both.")
        tz = parse_timezone(timezone)
        tz_name = str(tz.key)
        if cron is not None:
            if anchor is not None:
                raise ScheduleError("--anchor applies to --interval schedules, not to --cron.")
            return cls(cron=_check_cron(cron), timezone=tz_name)
        if interval is not None:
            seconds = parse_interval(interval)
            start = _aware(anchor if anchor is not None else DEFAULT_ANCHOR, tz)
            return cls(interval=seconds, timezone=tz_name, anchor=start)
        if anchor is not None:
            raise ScheduleError("--anchor needs an --interval.")
        return None

    @cached_property
    def _zone(self) -> ZoneInfo:
        return parse_timezone(self.timezone)

    def next_after(self, after: datetime) -> datetime:
        """The first slot strictly after the aware instant ``after`` (aware, UTC)."""
        if after.tzinfo is None:
            raise ValueError("next_after() needs an aware datetime")
        after = after.astimezone(UTC)
        if self.interval is not None:
            anchor = self.anchor or _aware(DEFAULT_ANCHOR, self._zone)
            step = round(self.interval * 1_000_000)
            k = ((after - anchor) // _MICRO) // step + 1
            return anchor + timedelta(microseconds=k * step)
        from croniter import croniter

        assert self.cron is not None
        zone = self._zone
        it = croniter(self.cron, after.astimezone(zone).replace(tzinfo=None))
        while True:
            local: datetime = it.get_next(datetime)
            slot = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
            if slot > after:
                return slot

    def slots(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Every slot in ``(after, until]``, oldest first."""
        slot = self.next_after(after)
        while slot <= until:
            yield slot
            slot = self.next_after(slot)

    def describe(self) -> str:
        """A short human description, e.g. ``cron '0 6 * * *' (Europe/Paris)``."""
        if self.cron is not None:
            return f"cron '{self.cron}' ({self.timezone})"
        assert self.interval is not None
        return f"every {_seconds_text(self.interval)}"

    def as_row(self) -> dict[str, Any]:
        """The ``deployments`` columns that hold this schedule."""
        return {
            "schedule": self.describe(),
            "cron": self.cron,
            "interval_seconds": self.interval,
            "timezone": self.timezone,
            "anchor": self.anchor,
        }

    @classmethod
    def from_row(cls, row: Any) -> Schedule | None:
        """The schedule stored in a ``deployments`` row (``None`` when it has none)."""
        cron, interval = row.get("cron"), row.get("interval_seconds")
        if cron is None and interval is None:
            return None
        anchor = row.get("anchor")
        if anchor is not None and anchor.tzinfo is None:
            anchor = anchor.replace(tzinfo=UTC)
        return cls(
            cron=cron, interval=interval, timezone=row.get("timezone") or "UTC", anchor=anchor
        )


def _seconds_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"
