"""``@task`` / ``@flow`` objects: methods, options as attributes, with_options, bad options."""

from __future__ import annotations

from datetime import timedelta

import pytest

import orion_nb
from orion_nb import flow, task
from orion_nb.errors import DefinitionError


def test_task_on_an_instance_method_binds_self():
    class Loader:
        def __init__(self, scale):
            self.scale = scale

        @task
        def load(self, x):
            return self.scale * x

        @task
        async def aload(self, x):
            return self.scale * x

    @flow
    def pipeline():
        loader = Loader(10)
        return loader.load(2), loader.load.submit(3).result()

    assert pipeline() == (20, 30)
    assert sorted(orion_nb.task_runs()["task_name"]) == ["load", "load"]
    assert isinstance(Loader.__dict__["load"], orion_nb.Task)


def test_with_options_keeps_values_in_the_shapes_given():
    @task(cache_expiration=timedelta(hours=1), retries=1, tags=["a"])
    def t():
        return 1

    changed = t.with_options(retries=3)
    assert changed.cache_expiration == timedelta(hours=1)
    assert changed.retries == 3 and t.retries == 1
    assert changed.tags == {"a"}


def test_flows_expose_their_options_as_attributes():
    runner = orion_nb.SequentialTaskRunner()

    @flow(
        name="etl",
        version="1.2",
        retries=2,
        retry_delay_seconds=5,
        timeout_seconds=60,
        log_prints=True,
        task_runner=runner,
        description="Loads things.",
    )
    def pipeline():
        return 1

    assert pipeline.name == "etl"
    assert pipeline.version == "1.2"
    assert pipeline.retries == 2
    assert pipeline.retry_delay_seconds == 5
    assert pipeline.timeout_seconds == 60
    assert pipeline.log_prints is True
    assert pipeline.task_runner is runner
    assert pipeline.description == "Loads things."
    assert pipeline.with_options(retries=0).retries == 0


@pytest.mark.parametrize(
    ("options", "base"),
    [
        ({"retries": -1}, ValueError),
        ({"retries": "3"}, TypeError),
        ({"timeout_seconds": 0}, ValueError),
    ],
)
def test_bad_option_values_raise_definition_errors_that_are_value_or_type_errors(options, base):
    with pytest.raises(DefinitionError) as info:
        task(**options)(lambda: 1)
    assert isinstance(info.value, base)
    with pytest.raises(base):
        flow(**options)(lambda: 1)
