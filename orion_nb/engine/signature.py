"""Checking a call against a flow's or task's signature, with errors that say what to write.

:class:`Signature` is built once per definition, so checking a call costs a few set
operations, not ``inspect.Signature.bind``. Flows also *validate* their parameters against
their annotations, as Prefect does through pydantic: ``int``, ``float``, ``str`` and ``bool``
are checked (and obvious strings coerced, "3" -> 3) without importing anything; any other
annotation (``list[int]``, ``dict[str, float]``, a pydantic model, ``datetime``, ``X | None``)
is validated by pydantic, imported on first need only, so a notebook that never uses such an
annotation never pays for pydantic.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from orion_nb.engine.params import short_repr
from orion_nb.errors import ParameterError

__all__ = ["Signature"]

_SIMPLE = {int: "int", float: "float", str: "str", bool: "bool"}
_SIMPLE_NAMES = {"int": int, "float": float, "str": str, "bool": bool}
_NOT_CHECKED = (inspect.Parameter.empty, Any, object)


def _type_name(ann: Any) -> str:
    if isinstance(ann, type) and not getattr(ann, "__args__", None):
        return ann.__name__
    return str(ann).replace("typing.", "")


class Signature:
    """A function's parameters in a form that is cheap to check on every call."""

    __slots__ = (
        "_adapters",
        "annotations",
        "has_var_kw",
        "has_var_pos",
        "kind",
        "name",
        "names",
        "positional",
        "required",
        "rich",
        "sig",
    )

    def __init__(self, fn: Callable[..., Any], kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        self.sig = inspect.signature(fn)
        params = list(self.sig.parameters.values())
        P = inspect.Parameter
        self.positional = [
            p.name for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
        ]
        self.names = frozenset(
            p.name
            for p in params
            if p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD, P.POSITIONAL_ONLY)
        )
        self.required = [
            p.name
            for p in params
            if p.default is P.empty and p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)
        ]
        self.has_var_pos = any(p.kind is P.VAR_POSITIONAL for p in params)
        self.has_var_kw = any(p.kind is P.VAR_KEYWORD for p in params)
        annotations = _resolved_annotations(fn, params)
        # simple annotations are checked here; the rest by pydantic, when first needed
        self.annotations: dict[str, type] = {}
        self.rich: dict[str, Any] = {}
        for p in params:
            if p.kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD):
                continue
            ann = annotations.get(p.name, P.empty)
            if isinstance(ann, str):
                ann = _SIMPLE_NAMES.get(ann, P.empty)  # an unresolvable string: not checked
            if ann in _SIMPLE:
                self.annotations[p.name] = ann
            elif not any(ann is n for n in _NOT_CHECKED):
                self.rich[p.name] = ann
        self._adapters: dict[str, Any] = {}

    def check(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise :class:`ParameterError` if ``args``/``kwargs`` do not fit; otherwise return."""
        npos = len(self.positional)
        if len(args) > npos and not self.has_var_pos:
            raise ParameterError(
                f"{self.kind.capitalize()} {self.name!r} takes {npos} positional parameter"
                f"{'s' if npos != 1 else ''} ({', '.join(self.positional) or 'none'}) but got {len(args)}."
            )
        if kwargs:
            for key in kwargs:
                if key not in self.names and not self.has_var_kw:
                    raise ParameterError(self._unknown(key))
            for key in self.positional[: len(args)]:
                if key in kwargs:
                    raise ParameterError(
                        f"{self.kind.capitalize()} {self.name!r} got parameter {key!r} twice "
                        "(positionally and by keyword)."
                    )
        if len(self.required) > len(args):
            given = set(self.positional[: len(args)])
            for key in self.required:
                if key not in kwargs and key not in given:
                    raise ParameterError(
                        f"{self.kind.capitalize()} {self.name!r} is missing the required "
                        f"parameter {key!r}; call it as "
                        f"{self.name}({', '.join(f'{r}=...' for r in self.required)})."
                    )

    def _unknown(self, key: str) -> str:
        close = difflib.get_close_matches(key, sorted(self.names), n=1)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else f"; it accepts {', '.join(map(repr, sorted(self.names))) or 'no parameters'}."
        )
        return f"{self.kind.capitalize()} {self.name!r} got an unexpected parameter {key!r}{hint}"

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Map a call's arguments to parameter names (defaults included)."""
        try:
            bound = self.sig.bind(*args, **kwargs)
        except TypeError as exc:  # check() runs first; this is a last line of defence
            raise ParameterError(f"{self.kind.capitalize()} {self.name!r}: {exc}") from None
        bound.apply_defaults()
        out = dict(bound.arguments)
        for name, p in self.sig.parameters.items():
            if p.kind is inspect.Parameter.VAR_KEYWORD and name in out:
                out.update(out.pop(name))  # **kwargs are parameters in their own right
        return out

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` checked against the annotations, with values coerced as Prefect does.

        Raises
        ------
        ParameterError
            Naming the parameter, the expected type and the value.
        """
        for key, typ in self.annotations.items():
            if key in params:
                params[key] = self._simple(key, typ, params[key])
        for key, ann in self.rich.items():
            if key in params:
                params[key] = self._rich(key, ann, params[key])
        return params

    def _fail(self, key: str, expected: str, value: Any, why: str = "") -> ParameterError:
        return ParameterError(
            f"{self.kind.capitalize()} {self.name!r} parameter {key!r} expects {expected}, got "
            f"{short_repr(value)} ({type(value).__name__}){why}; pass a {expected} or set "
            "validate_parameters=False."
        )

    def _simple(self, key: str, typ: type, value: Any) -> Any:
        if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
            return value
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            if typ is bool and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if typ in (int, float) and len(value) <= 100:
                try:
                    return typ(value)
                except ValueError:
                    pass
        raise self._fail(key, _SIMPLE[typ], value)

    def _rich(self, key: str, ann: Any, value: Any) -> Any:
        adapter = self._adapters.get(key)
        if adapter is None:
            adapter = self._adapters[key] = _adapter(ann)
        if adapter is False:
            return value  # pydantic cannot describe this annotation: accepted as it is
        from pydantic import ValidationError

        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            errors = exc.errors()
            where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
            msg = errors[0]["msg"] if errors else str(exc)
            raise self._fail(
                key, _type_name(ann), value, f" ({where + ': ' if where else ''}{msg})"
            ) from None


def _resolved_annotations(
    fn: Callable[..., Any], params: list[inspect.Parameter]
) -> dict[str, Any]:
    """Annotations as objects (``from __future__ import annotations`` makes them strings)."""
    out = {p.name: p.annotation for p in params}
    if not any(isinstance(a, str) for a in out.values()):
        return out
    try:
        resolved = inspect.signature(fn, eval_str=True)
    except Exception:  # a name only the caller's scope knows: leave those unchecked
        return out
    return {name: p.annotation for name, p in resolved.parameters.items()}


def _adapter(ann: Any) -> Any:
    try:
        from pydantic import ConfigDict, TypeAdapter
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return False
    try:
        return TypeAdapter(ann, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:
        try:
            return TypeAdapter(ann)
        except Exception:
            return False
