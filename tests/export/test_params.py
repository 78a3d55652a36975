"""``--param NAME=VALUE``: read as the type of the notebook's default, or a clear error."""

from __future__ import annotations

import pytest

from orion_nb.errors import ParameterError
from orion_nb.export.params import apply_params, coerce, param_text

DEFAULTS = {
    "n": 10,
    "rate": 0.5,
    "verbose": False,
    "label": "daily",
    "extra": None,
    "days": [1, 2],
    "pair": (1, 2),
    "options": {"a": 1},
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("n=12", 12),
        ("n=-3", -3),
        ("n=1_000", 1000),
        ("rate=2", 2.0),
        ("rate=1e-3", 0.001),
        ("verbose=true", True),
        ("verbose=No", False),
        ("verbose=1", True),
        ("label=10", "10"),
        ("label=a=b c", "a=b c"),
        ("label=", ""),
        ("extra=[1, 2]", [1, 2]),
        ("extra=hello", "hello"),
        ("extra=null", None),
        ("n=None", None),
        ("days=[3, 4]", [3, 4]),
        ("pair=[5, 6]", (5, 6)),
        ('options={"b": [1, true]}', {"b": [1, True]}),
    ],
)
def test_values_are_read_as_the_type_of_their_default(text: str, expected: object):
    name = text.split("=", 1)[0]
    value = apply_params(DEFAULTS, [text])[name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "text, message",
    [
        ("n=1.5", "Parameter 'n' expects an integer (its default is 10), got '1.5'."),
        ("n=ten", "Parameter 'n' expects an integer (its default is 10), got 'ten'."),
        ("n=true", "Parameter 'n' expects an integer"),
        ("rate=fast", "Parameter 'rate' expects a number"),
        ("verbose=maybe", "Parameter 'verbose' expects true or false"),
        ("days={}", "Parameter 'days' expects a list"),
        ("options=[1]", "Parameter 'options' expects a dict"),
        ("nn=3", "The notebook has no parameter 'nn'; did you mean 'n'?"),
        ("zzz=3", "The notebook has no parameter 'zzz'; its parameters are 'n', 'rate'"),
        ("n", "--param 'n' is not of the form NAME=VALUE"),
        ("1x=2", "--param name '1x' is not a valid Python identifier."),
        ("class=2", "--param name 'class' is not a valid Python identifier."),
    ],
)
def test_wrong_values_and_names_are_refused_with_the_fix(text: str, message: str):
    with pytest.raises(ParameterError) as info:
        apply_params(DEFAULTS, [text])
    assert str(info.value).startswith(message)


def test_a_notebook_without_parameters_says_how_to_declare_them():
    with pytest.raises(ParameterError, match="tag the cell that sets them 'parameters'"):
        apply_params({}, ["n=1"])


@pytest.mark.parametrize("value", [12, 0.25, True, False, None, "text", "10", [1, "a"], {"k": 2}])
def test_values_survive_the_round_trip_through_the_command_line(value: object):
    for default in (value, None, "s"):
        if isinstance(default, str) and not isinstance(value, str):
            continue
        back = coerce("p", param_text(value, default), default)
        assert back == value and type(back) is type(value)
