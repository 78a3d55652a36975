"""The operating system's schedulers: a crontab line, or a systemd service and timer.

For people who would rather let cron or systemd start the script than keep ``serve``
running. Each start is an ordinary run of the script (recorded in the history, without a
deployment). Nothing secret is written: a database URL with a password is left for the
reader to put in the environment.

Translating schedules:

- cron -> crontab: the expression itself; a time zone other than UTC becomes a ``CRON_TZ=``
  line (cronie, used by Fedora, RHEL and Arch, reads it; Debian's cron does not, and the
  line says so).
- cron -> systemd ``OnCalendar=``: field by field (lists, ranges, steps, names), with the
  time zone appended. Cron runs a job when *either* a restricted day of month *or* a
  restricted day of week matches; systemd needs both, so that combination is refused.
- interval -> crontab: only intervals cron can express (whole minutes dividing an hour,
  whole hours dividing a day, one day); interval -> systemd: ``OnUnitActiveSec=``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from orion_nb.errors import ScheduleError
from orion_nb.export.schedules import Schedule

__all__ = ["cron_to_oncalendar", "crontab", "systemd_units"]

_DOW = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_DOW_NAMES = {n.upper(): i for i, n in enumerate(_DOW[:7])}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}


def _command(script: Path) -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script.resolve()))}"


def _env_lines(database_url: str | None, home: str | None, fmt: str) -> list[str]:
    from orion_nb.settings import mask_url

    lines = []
    if home:
        lines.append(fmt.format(k="ORION_NB_HOME", v=home))
    if database_url:
        if mask_url(database_url) != database_url:
            lines.append(
                "# ORION_NB_DATABASE_URL has a password: set it in the environment yourself"
            )
        else:
            lines.append(fmt.format(k="ORION_NB_DATABASE_URL", v=database_url))
    return lines


def _interval_as_cron(schedule: Schedule) -> str:
    assert schedule.interval is not None and schedule.anchor is not None
    seconds = schedule.interval
    anchor = schedule.anchor
    if anchor.second or anchor.microsecond:
        raise ScheduleError("cron runs on whole minutes; use an anchor on a whole minute.")
    if seconds % 60 == 0 and 60 % (seconds // 60) == 0 and seconds < 3600:
        step = int(seconds // 60)
        start = anchor.minute % step
        minutes = f"{start}-59/{step}" if start else f"*/{step}" if step > 1 else "*"
        return f"{minutes} * * * *"
    if seconds % 3600 == 0 and 24 % (seconds // 3600) == 0 and seconds < 86400:
        step = int(seconds // 3600)
        start = anchor.hour % step
        hours = f"{start}-23/{step}" if start else f"*/{step}" if step > 1 else "*"
        return f"{anchor.minute} {hours} * * *"
    if seconds == 86400:
        return f"{anchor.minute} {anchor.hour} * * *"
    raise ScheduleError(
        f"crontab cannot run something every {seconds:g} s; use --emit systemd, orion-nb serve, "
        "or a cron schedule."
    )


def crontab(
    schedule: Schedule, script: Path, *, database_url: str | None = None, home: str | None = None
) -> str:
    """A crontab entry (with its environment lines) that runs ``script`` on ``schedule``."""
    if schedule.cron is not None:
        expr = schedule.cron
        tz = schedule.timezone
    else:
        expr = _interval_as_cron(schedule)
        tz = "UTC"
    lines = [f"# orion-nb: run {script.name} on {schedule.describe()}"]
    if tz != "UTC":
        lines.append(f"# CRON_TZ is read by cronie; with Debian's cron, convert to the {tz!r} zone")
        lines.append(f"CRON_TZ={tz}")
    else:
        lines.append("CRON_TZ=UTC")
    lines += _env_lines(database_url, home, "{k}={v}")
    lines.append(f"{expr} cd {shlex.quote(str(script.resolve().parent))} && {_command(script)}")
    return "\n".join(lines) + "\n"


def _field(text: str, low: int, high: int, names: dict[str, int] | None, width: int) -> str:
    """One cron field in systemd's calendar syntax."""
    if text == "*":
        return "*"
    out = []
    for part in text.split(","):
        step = None
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            lo, hi = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            lo, hi = _num(a, names), _num(b, names)
        else:
            lo = hi = _num(part, names)
        if step is None:
            out.append(f"{lo:0{width}d}" if lo == hi else f"{lo:0{width}d}..{hi:0{width}d}")
        elif hi == high:
            out.append(f"{lo:0{width}d}/{step}")
        else:
            out.extend(f"{v:0{width}d}" for v in range(lo, hi + 1, step))
    return ",".join(out)


def _num(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    return int(text)


def _dow_field(text: str) -> str:
    days: list[int] = []
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            lo, hi = 0, 6
        elif "-" in part:
            a, b = part.split("-", 1)
            lo, hi = _num(a, _DOW_NAMES), _num(b, _DOW_NAMES)
        else:
            lo = hi = _num(part, _DOW_NAMES)
        days.extend(range(lo, hi + 1, step))
    order = sorted({d % 7 for d in days}, key=lambda d: (d + 6) % 7)  # Monday first
    return ",".join(_DOW[d] for d in order)


def cron_to_oncalendar(expr: str, timezone: str) -> str:
    """``0 6 * * MON-FRI`` in Europe/Paris -> ``Mon,Tue,Wed,Thu,Fri *-*-* 06:00:00 Europe/Paris``."""
    minute, hour, dom, month, dow = expr.split()
    if dom != "*" and dow != "*":
        raise ScheduleError(
            f"Cron {expr!r} restricts both the day of month and the day of week (cron runs on "
            "either, systemd only on both); use --emit crontab or orion-nb serve."
        )
    try:
        date = f"*-{_field(month, 1, 12, _MONTHS, 2)}-{_field(dom, 1, 31, None, 2)}"
        time_ = f"{_field(hour, 0, 23, None, 2)}:{_field(minute, 0, 59, None, 2)}:00"
        days = "" if dow == "*" else _dow_field(dow) + " "
    except ValueError:
        raise ScheduleError(f"Cron {expr!r} cannot be written as a systemd calendar.") from None
    return f"{days}{date} {time_} {timezone}"


def systemd_units(
    schedule: Schedule,
    script: Path,
    unit: str,
    *,
    database_url: str | None = None,
    home: str | None = None,
) -> str:
    """A ``.service`` and a ``.timer`` (as one text, with file names in comments)."""
    if schedule.cron is not None:
        timer = f"OnCalendar={cron_to_oncalendar(schedule.cron, schedule.timezone)}"
    else:
        assert schedule.interval is not None
        timer = f"OnActiveSec=0\nOnUnitActiveSec={schedule.interval:g}s\nAccuracySec=1s"
    env = _env_lines(database_url, home, "Environment={k}={v}")
    service = "\n".join(
        [
            f"# ~/.config/systemd/user/{unit}.service",
            "[Unit]",
            f"Description=orion-nb: {script.name}",
            "",
            "[Service]",
            "Type=oneshot",
            f"WorkingDirectory={script.resolve().parent}",
            *env,
            f"ExecStart={_command(script)}",
        ]
    )
    timer_text = "\n".join(
        [
            f"# ~/.config/systemd/user/{unit}.timer",
            "[Unit]",
            f"Description=orion-nb: {script.name} on {schedule.describe()}",
            "",
            "[Timer]",
            timer,
            "Persistent=false",
            "",
            "[Install]",
            "WantedBy=timers.target",
        ]
    )
    enable = f"# then: systemctl --user daemon-reload && systemctl --user enable --now {unit}.timer"
    return f"{service}\n\n{timer_text}\n\n{enable}\n"
