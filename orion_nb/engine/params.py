"""Parameter records, run names and run ids.

How parameter values are recorded in the history (:func:`jsonable`), the memorable run names
(``swift-otter``) and name templates, and time-ordered run ids. Checking a call against a
signature lives in :mod:`orion_nb.engine.signature`.

Whatever a parameter is, recording it and talking about it stay cheap and cannot fail:
:func:`jsonable` and :func:`short_repr` bound what they build (a 50 MB string is stored cut,
with a marker; a list of two million items is described, not printed; an int of 5,000 digits,
which ``repr`` refuses, is described by its size), and a ``__repr__`` that raises is replaced
by the type's name.
"""

from __future__ import annotations

import inspect
import os
import random
import time
from collections.abc import Callable
from typing import Any

from orion_nb.errors import ParameterError

__all__ = ["format_name", "jsonable", "new_id", "parameters_json", "random_run_name", "short_repr"]

# a recorded parameter value (a string, or the text standing for any other value)
MAX_PARAM_TEXT = 10_000
# what an error message shows of a value
MAX_REPR = 200


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated {len(text) - limit:,} characters]"


def _int_text(value: int, limit: int) -> str:
    if value.bit_length() > 10_000:  # ~3,000 digits: repr may refuse it, and costs time
        digits = int(value.bit_length() * 0.30103) + 1
        return f"<int of about {digits:,} digits>"
    return _cut(repr(value), limit)


def short_repr(value: Any, limit: int = MAX_REPR) -> str:
    """``repr(value)`` bounded in size and cost, and never raising.

    Containers are summarised by :mod:`reprlib` (a few items, then ``...``), so describing a
    list of two million items costs microseconds, not a 17-million-character string.
    """
    import reprlib

    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value, limit)
    r = reprlib.Repr()
    r.maxstring = r.maxother = max(20, limit)
    r.maxlong = 60
    try:
        text = r.repr(value)
    except Exception:
        return f"<{type(value).__name__} (repr failed)>"
    return _cut(text, limit)


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, bounded rendering of a parameter value for the history.

    JSON scalars are kept (long strings cut with a marker, ints beyond 64 bits as text);
    small lists and dicts are rendered item by item; anything else is its bounded ``repr``.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value) if value.bit_length() <= 63 else _int_text(value, MAX_PARAM_TEXT)
    if isinstance(value, str):
        return _cut(value, MAX_PARAM_TEXT) if len(value) > MAX_PARAM_TEXT else value
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
        )
    if depth < 3:
        if isinstance(value, (list, tuple)) and len(value) <= 50:
            return [jsonable(v, depth + 1) for v in value]
        if isinstance(value, dict) and len(value) <= 50 and all(isinstance(k, str) for k in value):
            return {k: jsonable(v, depth + 1) for k, v in value.items()}
    return short_repr(value, MAX_REPR)


def parameters_json(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a run as the history stores them (never raises)."""
    out = {}
    for k, v in params.items():
        try:
            out[str(k)] = jsonable(v)
        except Exception:  # a container whose iteration raises, say
            out[str(k)] = f"<{type(v).__name__}>"
    return out


_ADJECTIVES = [
    "amber",
    "azure",
    "bold",
    "brave",
    "bright",
    "calm",
    "clever",
    "cosmic",
    "crimson",
    "dapper",
    "eager",
    "fancy",
    "fearless",
    "gentle",
    "golden",
    "happy",
    "hidden",
    "icy",
    "jolly",
    "keen",
    "lively",
    "lucky",
    "merry",
    "mighty",
    "nimble",
    "noble",
    "olive",
    "polished",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "royal",
    "rustic",
    "shiny",
    "silver",
    "smart",
    "snowy",
    "solar",
    "spry",
    "steady",
    "sunny",
    "swift",
    "teal",
    "tidy",
    "vivid",
    "warm",
    "witty",
    "zesty",
]
_ANIMALS = [
    "albatross",
    "badger",
    "beaver",
    "bison",
    "cheetah",
    "cobra",
    "condor",
    "coyote",
    "crane",
    "dingo",
    "dolphin",
    "eagle",
    "falcon",
    "ferret",
    "fox",
    "gazelle",
    "gecko",
    "heron",
    "ibis",
    "jackal",
    "jaguar",
    "koala",
    "lemur",
    "lynx",
    "marmot",
    "mongoose",
    "moose",
    "narwhal",
    "ocelot",
    "orca",
    "otter",
    "owl",
    "panda",
    "pelican",
    "puffin",
    "quail",
    "raven",
    "salmon",
    "seal",
    "shrike",
    "sloth",
    "swan",
    "tapir",
    "tiger",
    "toucan",
    "walrus",
    "wombat",
    "yak",
    "zebra",
]

_rng = random.Random(os.urandom(8))


def random_run_name() -> str:
    """A memorable run name such as ``'swift-otter'``."""
    return f"{_rng.choice(_ADJECTIVES)}-{_rng.choice(_ANIMALS)}"


_id_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _id_rng.seed(os.urandom(32)))


def new_id() -> str:
    """A new time-ordered UUID (version 7) as text.

    The first 48 bits are the Unix time in milliseconds, so a new run's id sorts after older
    ones: primary-key and index inserts append instead of landing at random places in the
    B-trees, which keeps writing history fast as it grows. The other 74 bits come from a PRNG
    seeded from ``os.urandom`` (reseeded in forked children): ids must be unique, not secret,
    and ``os.urandom`` per run is a system call on the hot path. :func:`short_id` shows the
    random end, since runs created together share their first digits.

    The text of the millisecond (``xxxxxxxx-xxxx-7``) is made once per millisecond and the
    random part in one ``bytes.hex``: a third of the cost of formatting the whole 128-bit
    number each time (it is about a tenth of a task call).
    """
    global _ms_prefix
    ms = time.time_ns() // 1_000_000
    cached = _ms_prefix  # one read: another thread may replace it meanwhile
    if cached[0] != ms:
        h = f"{ms:012x}"
        cached = _ms_prefix = (ms, f"{h[:8]}-{h[8:]}-7")
    # 76 bits: rand_a (12), then 64 bits whose top two are the variant (binary 10)
    h = ((_id_rng.getrandbits(76) & _RAND_MASK) | _VARIANT).to_bytes(10, "big").hex()
    return f"{cached[1]}{h[1:4]}-{h[4:8]}-{h[8:]}"


# (millisecond, the id text it starts) of the last id made
_ms_prefix: tuple[int, str] = (-1, "")
_RAND_MASK = ((1 << 76) - 1) & ~(0b11 << 62)
_VARIANT = 0b10 << 62


def short_id(run_id: str) -> str:
    """The last 8 hex digits of a run id: what tables and messages show."""
    return run_id[-8:]


def format_name(
    template: str | Callable[..., str] | None, params: dict[str, Any], default: str
) -> str:
    """Render ``flow_run_name`` / ``task_run_name`` (a format string or a callable)."""
    if template is None:
        return default
    if callable(template):
        try:
            return str(template(**params)) if _accepts_kwargs(template, params) else str(template())
        except Exception as exc:
            raise ParameterError(
                f"The run-name callable {short_repr(template)} failed: "
                f"{type(exc).__name__}: {short_repr(str(exc))}"
            ) from exc
    try:
        return template.format(**params)
    except KeyError as exc:
        raise ParameterError(
            f"The run name template {template!r} refers to {exc.args[0]!r}, which is not a "
            f"parameter; available: {', '.join(sorted(params)) or 'none'}."
        ) from None
    except Exception as exc:  # a value whose format fails (an int too long to print, ...)
        raise ParameterError(
            f"The run name template {short_repr(template)} cannot be filled in: "
            f"{type(exc).__name__}: {short_repr(str(exc))}."
        ) from None


def _accepts_kwargs(fn: Callable[..., Any], params: dict[str, Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return bool(sig.parameters)
