"""Choosing a task runner (names, ``configure``, ``%%flow``), and where thread runs ran.

No cluster here: these are the rules of the definitions and settings, and the records the
thread runners write. Remote execution is tested in ``tests/dask/`` and
``tests/test_process_runner.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

import orion_nb
from orion_nb import (
    DaskTaskRunner,
    ProcessPoolTaskRunner,
    SequentialTaskRunner,
    ThreadPoolTaskRunner,
    flow,
    task,
)
from orion_nb.engine.runners import RUNNER_NAMES, resolve_task_runner
from orion_nb.errors import ConfigurationError, DefinitionError, MissingDependencyError
from orion_nb.settings import _RUNNER_NAMES

ROOT = Path(__file__).resolve().parents[1]


@task
def where() -> int:
    return threading.get_ident()


@task
def where_each(i: int) -> int:
    return threading.get_ident()


@pytest.fixture(autouse=True)
def default_runner_restored():
    yield
    orion_nb.configure(task_runner="threads")


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("threads", ThreadPoolTaskRunner),
        ("sequential", SequentialTaskRunner),
        ("processes", ProcessPoolTaskRunner),
        ("dask", DaskTaskRunner),
    ],
)
def test_runner_names(name, cls):
    assert isinstance(resolve_task_runner(name), cls)
    assert isinstance(flow(task_runner=name)(lambda: None).task_runner, cls)


def test_settings_accept_the_names_the_engine_knows():
    assert set(RUNNER_NAMES) <= set(_RUNNER_NAMES)
    for name in _RUNNER_NAMES:
        assert resolve_task_runner(name) is not None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gpu", "is not a task runner name"),
        (42, "not int"),
        (Path("runner"), "not PosixPath"),
    ],
)
def test_configure_rejects_what_is_not_a_runner(value, message):
    with pytest.raises(ConfigurationError, match=message):
        orion_nb.configure(task_runner=value)


def test_unknown_runner_name_in_a_flow_lists_the_choices():
    with pytest.raises(DefinitionError, match="'threads', 'sequential', 'processes', 'dask'"):
        flow(task_runner="gpu")(lambda: None)


def test_configure_sets_the_runner_of_flows_that_name_none():
    orion_nb.configure(task_runner="sequential")

    @flow
    def pipeline() -> bool:
        return where.submit().result() == threading.get_ident()

    assert pipeline() is True  # the sequential runner ran it in the flow's own thread
    explicit = flow(task_runner="threads")(pipeline.fn)
    assert explicit() is False


def test_the_configured_runner_shows_in_settings_without_secrets():
    s = orion_nb.configure(task_runner=DaskTaskRunner(address="tls://ana:s3cret@10.0.0.5:8786"))
    assert "task_runner=DaskTaskRunner(address='tls://ana:***@10.0.0.5:8786')" in repr(s)
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": 8786}, "takes a scheduler address"),
        ({"address": "tcp://x:1", "cluster_kwargs": {"n_workers": 2}}, "not both"),
        ({"cluster_class": 3}, "takes a cluster class or its import path"),
        ({"client_kwargs": ["timeout"]}, "takes a dict"),
    ],
)
def test_dask_runner_options_are_checked(kwargs, message):
    with pytest.raises(DefinitionError, match=message):
        DaskTaskRunner(**kwargs)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_process_pool_size_is_checked(bad):
    with pytest.raises(DefinitionError, match="whole number >= 1"):
        ProcessPoolTaskRunner(bad)


def test_thread_runs_record_the_kernels_host_and_pid():
    @flow
    def pipeline() -> int:
        return where() + where.submit().result() + where_each.map(range(3)).result()[0]

    pipeline()
    tr = orion_nb.task_runs()
    assert len(tr) == 5
    assert set(tr["host"]) == {socket.gethostname()} and set(tr["pid"]) == {os.getpid()}
    assert tr["worker"].isna().all()


def test_a_run_that_never_ran_records_no_place():
    calls = []

    @task(cache_policy=orion_nb.INPUTS)
    def cached(x: int) -> int:
        calls.append(x)
        return x

    @flow
    def pipeline() -> None:
        cached(1)
        cached(1)

    pipeline()
    tr = orion_nb.task_runs().sort_values("created")
    assert list(tr["state_name"]) == ["Completed", "Cached"] and calls == [1]
    assert tr.iloc[0]["pid"] == os.getpid() and pd.isna(tr.iloc[1]["pid"])


def test_without_distributed_the_dask_runner_says_what_to_install(tmp_path):
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("distributed", "dask"):
                    raise ModuleNotFoundError(f"No module named {name!r}")

        sys.meta_path.insert(0, Block())
        import orion_nb
        from orion_nb.errors import MissingDependencyError

        for make in (orion_nb.DaskTaskRunner, lambda: orion_nb.flow(task_runner="dask")(print)):
            try:
                make()
            except MissingDependencyError as exc:
                print(type(exc).__mro__[2].__name__, exc)
        """
    )
    env = {**os.environ, "ORION_NB_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("ImportError ") and "pip install 'orion_nb[dask]'" in line
    assert MissingDependencyError.__mro__[2] is ImportError


def test_a_task_sent_to_another_process_is_still_unbound():
    """A pickled task must not take its "unbound" marker for a ``self`` argument."""
    import cloudpickle

    copy = cloudpickle.loads(cloudpickle.dumps(where_each))
    assert isinstance(copy(1), int)
