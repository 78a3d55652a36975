"""A real ``distributed.LocalCluster`` per test module (two worker processes, one thread each).

Starting a cluster costs seconds on this machine, so modules share one; tests that kill a
worker or tie one up say so and leave the cluster usable (the nanny restarts a killed worker).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_or_skip
from tests.remote_helpers import wait_until

__all__ = ["idle", "wait_until"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    require_or_skip(importlib.util.find_spec("distributed") is not None, "dask.distributed")
    from distributed import LocalCluster

    from orion_nb.engine.dask_runner import close_clients

    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as c:
        yield c
        close_clients()  # the kernel's shared client must not outlive its scheduler


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    from distributed import Client

    with Client(cluster, set_as_default=False) as c:
        yield c


def idle(client: Any) -> bool:
    """No task is processing anywhere on the cluster."""
    return not any(client.processing().values())
