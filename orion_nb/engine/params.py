"""Parameter records, run names and run ids.

How parameter values are recorded in the history (:func:`jsonable`), the memorable run names
(``swift-otter``) and name templates, and time-ordered run ids. Checking a call against a
signature lives in :mod:`orion_nb.engine.signature`.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

from orion_nb.errors import ParameterError

__all__ = ["format_name", "jsonable", "new_id", "parameters_json", "random_run_name"]


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe rendering of a parameter value for the history (``repr`` as a fallback)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
        )
    if depth < 3:
        if isinstance(value, (list, tuple)) and len(value) <= 50:
            return [jsonable(v, depth + 1) for v in value]
        if isinstance(value, dict) and len(value) <= 50 and all(isinstance(k, str) for k in value):
            return {k: jsonable(v, depth + 1) for k, v in value.items()}
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


def parameters_json(params: dict[str, Any]) -> dict[str, Any]:
    out = {k: jsonable(v) for k, v in params.items()}
    try:
        json.dumps(out)
    except (TypeError, ValueError):  # pragma: no cover - jsonable guarantees this
        out = {k: repr(v) for k, v in params.items()}
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
    B-trees, which keeps writing history fast as it grows. The other bits come from a PRNG
    seeded from ``os.urandom`` (reseeded in forked children): ids must be unique, not secret,
    and ``os.urandom`` per run is a system call on the hot path. :func:`short_id` shows the
    random end, since runs created together share their first digits.
    """
    value = (
        (time.time_ns() // 1_000_000) << 80 | (_id_rng.getrandbits(80) & _UUID_MASK) | _UUID_BITS
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def short_id(run_id: str) -> str:
    """The last 8 hex digits of a run id: what tables and messages show."""
    return run_id[-8:]


_UUID_MASK = ~((0xF << 76) | (0x3 << 62)) & ((1 << 80) - 1)
_UUID_BITS = (0x7 << 76) | (0x2 << 62)


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
            raise ParameterError(f"The run-name callable {template!r} failed: {exc!r}") from exc
    try:
        return template.format(**params)
    except KeyError as exc:
        raise ParameterError(
            f"The run name template {template!r} refers to {exc.args[0]!r}, which is not a "
            f"parameter; available: {', '.join(sorted(params)) or 'none'}."
        ) from None


def _accepts_kwargs(fn: Callable[..., Any], params: dict[str, Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return bool(sig.parameters)
