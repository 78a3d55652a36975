"""``--param NAME=VALUE`` on a command line, checked against a notebook's parameter defaults.

A notebook's ``parameters`` cell (papermill's convention) gives each parameter a literal
default; its type decides how a command-line value is read:

=========== ===================================================================
default      the value on the command line
=========== ===================================================================
int          an integer (``10``, ``-3``, ``1_000``)
float        a number (``2``, ``0.5``, ``1e-3``)
bool         ``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``)
str          the text as it is (no quotes needed)
None         any Python literal or JSON value, else the text
list, tuple  a JSON or Python list (``[1, 2]``)
dict         a JSON or Python dict (``{"a": 1}``)
=========== ===================================================================

``null``/``None`` is accepted for any parameter. An unknown name gets "did you mean".
"""

from __future__ import annotations

import ast
import difflib
import json
import keyword
from collections.abc import Iterable, Mapping
from typing import Any

from orion_nb.errors import ParameterError

__all__ = ["apply_params", "coerce", "param_text", "split_param"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def split_param(text: str) -> tuple[str, str]:
    """``"NAME=VALUE"`` -> ``("NAME", "VALUE")`` with a clear error for anything else."""
    if "=" not in text:
        raise ParameterError(
            f"--param {text!r} is not of the form NAME=VALUE; write e.g. --param n=10."
        )
    name, raw = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ParameterError(f"--param name {name!r} is not a valid Python identifier.")
    return name, raw


def _literal(raw: str) -> Any:
    """A Python literal or JSON value; raises ValueError when ``raw`` is neither."""
    text = raw.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError(raw) from None


def coerce(name: str, raw: str, default: Any) -> Any:
    """Read ``raw`` for the parameter ``name`` as the type of its ``default``."""
    if raw.strip() in ("None", "null"):
        return None
    kind = type(default)

    def bad(what: str) -> ParameterError:
        return ParameterError(
            f"Parameter {name!r} expects {what} (its default is {default!r}), got {raw!r}."
        )

    if kind is bool:
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise bad("true or false")
    if kind is str:
        return raw
    try:
        value = _literal(raw)
    except ValueError:
        if default is None:
            return raw
        raise bad(_what(kind)) from None
    if default is None:
        return value
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad("an integer")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad("a number")
    if kind in (list, tuple, set, frozenset):
        if isinstance(value, (list, tuple, set, frozenset)):
            return kind(value)
        raise bad("a list, e.g. [1, 2]")
    if kind is dict:
        if isinstance(value, dict):
            return value
        raise bad('a dict, e.g. {"key": 1}')
    if isinstance(value, kind):
        return value
    raise bad(_what(kind))


def _what(kind: type) -> str:
    return {int: "an integer", float: "a number"}.get(kind, f"a {kind.__name__} literal")


def apply_params(
    defaults: Mapping[str, Any], given: Iterable[str], *, what: str = "The notebook"
) -> dict[str, Any]:
    """The defaults with ``NAME=VALUE`` overrides applied, each read as its default's type.

    Raises
    ------
    ParameterError
        For a malformed item, an unknown name ("did you mean ...?") or a value of the wrong
        type.
    """
    values = dict(defaults)
    for text in given:
        name, raw = split_param(text)
        if name not in defaults:
            close = difflib.get_close_matches(name, list(defaults), n=1)
            if close:
                hint = f"; did you mean {close[0]!r}?"
            elif defaults:
                hint = f"; its parameters are {', '.join(map(repr, defaults))}."
            else:
                hint = "; it has none (tag the cell that sets them 'parameters')."
            raise ParameterError(f"{what} has no parameter {name!r}{hint}")
        values[name] = coerce(name, raw, defaults[name])
    return values


def param_text(value: Any, default: Any = "") -> str:
    """The ``VALUE`` of ``--param NAME=VALUE`` that :func:`coerce` reads back as ``value``
    for a parameter whose default is ``default``."""
    if isinstance(value, str):
        return value if isinstance(default, str) else repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "None"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
