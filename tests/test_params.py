"""Parameters of any size or kind: the run starts or fails cleanly, records stay bounded."""

from __future__ import annotations

import io
import time

import orion_nb
from orion_nb import flow
from orion_nb.engine.params import parameters_json
from orion_nb.engine.signature import Signature
from orion_nb.errors import ParameterError


def test_a_5000_digit_int_parameter_runs_and_is_recorded_by_its_size():
    @flow(name="big-int")
    def f(n):
        return n % 7

    assert f(10**5000) == 10**5000 % 7
    params = orion_nb.flow_runs().iloc[0]["parameters"]
    assert params == {"n": "<int of about 5,001 digits>"}


def test_a_50_mb_string_parameter_is_stored_cut_with_a_marker():
    @flow(name="big-str")
    def f(s):
        return len(s)

    assert f("x" * 50_000_000) == 50_000_000
    stored = orion_nb.flow_runs().iloc[0]["parameters"]["s"]
    assert len(stored) < 20_000 and stored.endswith("[truncated 49,990,000 characters]")


def test_describing_a_huge_value_is_bounded_and_fast():
    def g(n: int):
        return n

    sig = Signature(g, "flow", "g")
    start = time.perf_counter()
    try:
        sig.validate({"n": list(range(2_000_000))})
    except ParameterError as exc:
        message = str(exc)
    assert len(message) < 400 and "..." in message
    assert len(str(parameters_json({"x": list(range(2_000_000))}))) < 400
    assert time.perf_counter() - start < 5  # generous: the old message took seconds


def test_a_parameter_whose_repr_raises_is_recorded_by_its_type():
    class Hostile:
        def __repr__(self):
            raise RuntimeError("no")

    @flow(name="hostile-param")
    def f(x):
        return 1

    assert f(Hostile()) == 1
    assert orion_nb.flow_runs().iloc[0]["parameters"]["x"].startswith("<Hostile")


def test_the_text_view_stops_printing_with_its_run():
    from orion_nb.notebook.display import TextView

    stream = io.StringIO()
    views = []

    class Quick(TextView):
        progress_every = 0.05

        def __init__(self, run, stream=None):
            super().__init__(run, stream=stream_)
            views.append(self)

    stream_ = stream
    import orion_nb.notebook.display as display

    original = display.TextView
    display.TextView = Quick  # type: ignore[misc]
    orion_nb.configure(display="text")
    try:

        @flow(name="printed")
        def f(n):
            time.sleep(0.2)
            return 1

        f(10**5000)
    finally:
        display.TextView = original  # type: ignore[misc]
        orion_nb.configure(display="none")
    lines = stream.getvalue().count("running for")
    time.sleep(0.3)
    assert stream.getvalue().count("running for") == lines
    assert views and views[0]._done.is_set()


def test_new_ids_are_uuid7_unique_and_ordered_by_their_millisecond():
    import time
    import uuid

    from orion_nb.engine.params import new_id

    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))  # canonical text
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    stamps = [u.int >> 80 for u in parsed]
    assert before <= stamps[0] and stamps[-1] <= after and stamps == sorted(stamps)
    # the 74 random bits vary in every position (none is stuck at 0 or 1)
    random_bits = [u.int & ((1 << 62) - 1) | ((u.int >> 64) & 0xFFF) << 62 for u in parsed]
    ored = anded = random_bits[0]
    for b in random_bits:
        ored |= b
        anded &= b
    assert ored == (1 << 74) - 1 and anded == 0
