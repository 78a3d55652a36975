"""Cron and interval schedules: wall-clock times across daylight-saving changes, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orion_nb.errors import ScheduleError
from orion_nb.export.emit import cron_to_oncalendar, crontab, systemd_units
from orion_nb.export.schedules import Schedule

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def local_slots(s: Schedule, start: datetime, end: datetime, zone: ZoneInfo) -> list[str]:
    return [
        t.astimezone(zone).strftime("%m-%d %H:%M %Z")
        for t in s.slots(start.astimezone(UTC), end.astimezone(UTC))
    ]


def test_a_daily_cron_keeps_its_wall_clock_time_across_both_dst_changes():
    s = Schedule.parse(cron="0 9 * * *", timezone="Europe/Paris")
    assert s is not None
    spring = local_slots(
        s, datetime(2024, 3, 29, tzinfo=PARIS), datetime(2024, 4, 2, tzinfo=PARIS), PARIS
    )
    assert spring == ["03-29 09:00 CET", "03-30 09:00 CET", "03-31 09:00 CEST", "04-01 09:00 CEST"]
    autumn = local_slots(
        s, datetime(2024, 10, 26, tzinfo=PARIS), datetime(2024, 10, 29, tzinfo=PARIS), PARIS
    )
    assert autumn == ["10-26 09:00 CEST", "10-27 09:00 CET", "10-28 09:00 CET"]
    # the UTC instants move by an hour, which is the point
    utc = [
        t.hour for t in s.slots(datetime(2024, 3, 30, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    ]
    assert utc == [8, 7]


def test_a_time_skipped_by_spring_forward_runs_once_an_hour_later():
    s = Schedule.parse(cron="30 2 * * *", timezone="Europe/Paris")
    assert s is not None
    got = local_slots(
        s, datetime(2024, 3, 30, 12, tzinfo=PARIS), datetime(2024, 4, 1, 12, tzinfo=PARIS), PARIS
    )
    assert got == ["03-31 03:30 CEST", "04-01 02:30 CEST"]
    hourly = Schedule.parse(cron="0 * * * *", timezone="America/New_York")
    assert hourly is not None
    got = local_slots(
        hourly,
        datetime(2024, 3, 10, 0, 30, tzinfo=NEW_YORK),
        datetime(2024, 3, 10, 4, 30, tzinfo=NEW_YORK),
        NEW_YORK,
    )
    assert got == ["03-10 01:00 EST", "03-10 03:00 EDT", "03-10 04:00 EDT"]


def test_a_time_repeated_by_fall_back_runs_once():
    s = Schedule.parse(cron="30 1 * * *", timezone="America/New_York")
    assert s is not None
    start = datetime(2024, 11, 2, 12, tzinfo=NEW_YORK)
    got = list(s.slots(start.astimezone(UTC), (start + timedelta(days=2)).astimezone(UTC)))
    assert [t.astimezone(NEW_YORK).strftime("%m-%d %H:%M %Z") for t in got] == [
        "11-03 01:30 EDT",  # the first of the two 01:30s
        "11-04 01:30 EST",
    ]
    assert got[1] - got[0] == timedelta(hours=25)


def test_intervals_count_from_the_anchor_so_every_process_agrees():
    s = Schedule.parse(interval="15m")
    assert s is not None
    assert s.next_after(datetime(2024, 5, 1, 10, 7, 59, tzinfo=UTC)) == datetime(
        2024, 5, 1, 10, 15, tzinfo=UTC
    )
    assert s.next_after(datetime(2024, 5, 1, 10, 15, tzinfo=UTC)) == datetime(
        2024, 5, 1, 10, 30, tzinfo=UTC
    )
    anchored = Schedule.parse(interval=3600, anchor="2024-01-01T06:20", timezone="Europe/Paris")
    assert anchored is not None
    slot = anchored.next_after(datetime(2024, 7, 1, 12, 0, tzinfo=UTC))
    assert (slot.minute, slot.second) == (20, 0)
    sub = Schedule.parse(interval=0.5)
    assert sub is not None
    t = datetime(2024, 1, 1, 0, 0, 0, 300_000, tzinfo=UTC)
    assert list(sub.slots(t, t + timedelta(seconds=1))) == [
        datetime(2024, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cron": "0 6 * *"}, "has 4 fields; it needs 5"),
        ({"cron": "0 6 * * * 2024"}, "has 6 fields; it needs 5"),
        ({"cron": "61 * * * *"}, "is invalid"),
        ({"cron": "0 6 * * funday"}, "is invalid"),
        ({"cron": "@reboot"}, "is not supported"),
        ({"cron": "0 6 * * *", "timezone": "Europe/Pariss"}, "did you mean 'Europe/Paris'?"),
        ({"cron": "0 6 * * *", "interval": 5}, "either --cron or --interval"),
        ({"interval": "0"}, "must be a positive number"),
        ({"interval": "soon"}, "is not a number of seconds"),
        ({"interval": 60, "anchor": "yesterday"}, "is not an ISO date"),
        ({"cron": "0 6 * * *", "anchor": "2024-01-01"}, "--anchor applies to --interval"),
    ],
)
def test_invalid_schedules_fail_with_the_reason(kwargs: dict[str, object], message: str):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace("?", r"\?")):
        Schedule.parse(**kwargs)  # type: ignore[arg-type]


def test_aliases_and_descriptions():
    daily = Schedule.parse(cron="@daily", timezone="Asia/Tokyo")
    assert daily is not None and daily.cron == "0 0 * * *"
    assert daily.describe() == "cron '0 0 * * *' (Asia/Tokyo)"
    every = Schedule.parse(interval="2h")
    assert every is not None and every.describe() == "every 2 h"
    assert Schedule.parse() is None


def test_crontab_and_systemd_texts(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("print(1)\n")
    s = Schedule.parse(cron="*/15 9-17 * * MON-FRI", timezone="Europe/Paris")
    assert s is not None
    line = crontab(s, script, home="/srv/orion")
    assert "CRON_TZ=Europe/Paris" in line
    assert "ORION_NB_HOME=/srv/orion" in line
    assert f"\n*/15 9-17 * * MON-FRI cd {tmp_path} && " in line
    assert line.rstrip().endswith(f"{script}")
    units = systemd_units(s, script, "orion-nb-job", database_url="postgresql://u:secret@db/x")
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 09..17:00/15:00 Europe/Paris" in units
    assert "secret" not in units and "set it in the environment yourself" in units
    assert cron_to_oncalendar("0 6 1 * *", "UTC") == "*-*-01 06:00:00 UTC"
    with pytest.raises(ScheduleError, match="either"):
        cron_to_oncalendar("0 6 1 * MON", "UTC")
    hourly = Schedule.parse(interval=1800)
    assert hourly is not None
    assert "*/30 * * * *" in crontab(hourly, script)
    with pytest.raises(ScheduleError, match="crontab cannot run something every 90 s"):
        crontab(Schedule.parse(interval=90), script)  # type: ignore[arg-type]
