"""Every bad ``@task`` / ``@flow`` option is refused at definition time, with its fix."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orion_nb import flow, task
from orion_nb.engine.options import check_run_options, delay_list, seconds
from orion_nb.errors import DefinitionError

BAD = [
    ({"retries": -1}, "retries must be a whole number >= 0, not -1."),
    ({"retries": True}, "retries must be a whole number >= 0, not True."),
    ({"retry_delay_seconds": -1}, "retry_delay_seconds must be a number >= 0"),
    ({"retry_delay_seconds": [1, -2]}, "retry_delay_seconds must hold numbers >= 0, not [1, -2]."),
    ({"retry_delay_seconds": [1, "x"]}, "retry_delay_seconds must hold numbers >= 0"),
    ({"retry_delay_seconds": "5"}, "retry_delay_seconds must be a number >= 0"),
    ({"retry_jitter_factor": -0.1}, "retry_jitter_factor must be a number >= 0, not -0.1."),
    ({"retry_jitter_factor": "x"}, "retry_jitter_factor must be a number >= 0, not 'x'."),
    ({"timeout_seconds": 0}, "timeout_seconds must be a positive number of seconds, not 0."),
    ({"timeout_seconds": "1"}, "timeout_seconds must be a positive number of seconds"),
    ({"cache_expiration": "1h"}, "cache_expiration must be a timedelta or seconds, not str."),
    (
        {"cache_key_fn": 3},
        "cache_key_fn must be callable (e.g. orion_nb.task_input_hash), not int.",
    ),
    ({"retry_condition_fn": "yes"}, "retry_condition_fn must be callable"),
    ({"on_completion": print}, "on_completion must be a list of callables"),
    ({"on_failure": [print, 3]}, "on_failure must be a list of callables"),
    ({"on_running": [1]}, "on_running must be a list of callables"),
    ({"log_prints": "yes"}, "log_prints must be True or False, not 'yes'."),
    ({"persist_result": 1}, "persist_result must be True or False, not 1."),
    ({"refresh_cache": "no"}, "refresh_cache must be True or False"),
    ({"tags": "db"}, "tags must be a list of non-empty strings, not 'db'."),
    ({"tags": ["db", ""]}, "tags must be a list of non-empty strings"),
    ({"tags": ["db", 3]}, "tags must be a list of non-empty strings"),
    ({"name": "  "}, "name must be a non-empty string, not '  '."),
    ({"name": 5}, "name must be a non-empty string, not 5."),
]


@pytest.mark.parametrize(("options", "message"), BAD, ids=[m.split(" must")[0] for _, m in BAD])
def test_a_bad_task_option_is_refused_with_the_fix(options, message):
    with pytest.raises(DefinitionError) as info:
        task(**options)(lambda: 1)
    assert message in str(info.value)
    assert str(info.value).startswith("Task ")


FLOW_BAD = [
    ({"validate_parameters": "no"}, "validate_parameters must be True or False"),
    ({"on_crashed": [None]}, "on_crashed must be a list of callables"),
    ({"on_cancellation": "x"}, "on_cancellation must be a list of callables"),
    ({"retry_delay_seconds": lambda n: [1]}, "retry_delay_seconds must be a number >= 0, not"),
    ({"display": "loud"}, "display='loud' is not a display mode"),
]


@pytest.mark.parametrize(("options", "message"), FLOW_BAD)
def test_a_bad_flow_option_is_refused_with_the_fix(options, message):
    with pytest.raises(DefinitionError, match=r"^Flow ") as info:
        flow(**options)(lambda: 1)
    assert message in str(info.value)


def test_good_options_pass_and_are_read_as_the_engine_needs_them():
    check_run_options(
        "task",
        "ok",
        {
            "retries": 2,
            "retry_delay_seconds": lambda n: [1] * n,
            "retry_jitter_factor": 0,
            "timeout_seconds": 0.5,
            "cache_expiration": timedelta(hours=1),
            "tags": ["a", "b"],
            "log_prints": None,
            "name": "ok",
        },
    )
    assert seconds(timedelta(minutes=2)) == 120.0
    assert seconds(5) == 5.0 and seconds(None) is None
    assert delay_list(lambda n: [n, n + 1], 2) == [2.0, 3.0]
    assert delay_list((1, 2), 2) == [1.0, 2.0]
    assert delay_list(3, 1) == 3.0
