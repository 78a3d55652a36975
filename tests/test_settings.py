"""Configuration: validation, environment variables, and no secrets in what is shown."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import orion_nb
from orion_nb.errors import ConfigurationError
from orion_nb.settings import mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://ana:s3cret@db:5432/runs", "postgresql://ana:***@db:5432/runs"),
        ("postgresql+asyncpg://ana:p@ss@word@db/runs", "postgresql+asyncpg://ana:***@db/runs"),
        ("sqlite:////tmp/runs.db", "sqlite:////tmp/runs.db"),
        ("postgresql://ana@db/runs", "postgresql://ana@db/runs"),
    ],
    ids=["password", "password with @", "sqlite", "no password"],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_settings_repr_masks_the_password():
    s = orion_nb.configure(database_url="postgresql://ana:s3cret@127.0.0.1:1/db")
    try:
        assert "s3cret" not in repr(s) and "ana:***@" in repr(s)
    finally:
        orion_nb.configure(database_url=f"sqlite:///{s.home / 'orion.db'}")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"display": "fancy"}, "is not a display mode"),
        ({"database_url": "runs.db"}, "is not a database URL"),
        ({"flush_interval": -1}, "flush_interval must be >= 0"),
    ],
    ids=["display", "url", "flush interval"],
)
def test_invalid_settings(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        orion_nb.configure(**kwargs)


def test_environment_variables_are_read(tmp_path):
    code = "import orion_nb.settings as s; c = s.get_settings(); print(c.home, c.display, c.persist, c.effective_database_url)"
    env = {
        **os.environ,
        "ORION_NB_HOME": str(tmp_path),
        "ORION_NB_DISPLAY": "text",
        "ORION_NB_PERSIST": "0",
    }
    env.pop("ORION_NB_DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(tmp_path), "text", "False", f"sqlite:///{tmp_path}/orion.db"]


def test_recording_can_be_turned_off():
    orion_nb.configure(persist=False)
    try:

        @orion_nb.flow
        def f():
            return 1

        assert f() == 1
        with pytest.raises(ConfigurationError, match="Run history is off"):
            orion_nb.flow_runs()
    finally:
        orion_nb.configure(persist=True)
    assert orion_nb.flow_runs().empty  # nothing was recorded while it was off


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://ana:pa?ss@db/runs", "pa?ss"),
        ("postgresql://ana:pa ss@db/runs", "pa ss"),
        ("postgresql://ana:p@ss@db/runs", "p@ss"),
        ("postgresql://ana:p%40ss@db/runs", "p%40ss"),
        ("postgresql://ana@db/runs?password=hunter2&sslmode=require", "hunter2"),
        ("postgresql://ana@db/runs?sslpassword=k3yk3y", "k3yk3y"),
        ("postgresql://ana@db/runs?token=t0ken", "t0ken"),
        ("postgresql:/ana:typo-secret@db/runs", "typo-secret"),
    ],
    ids=[
        "question mark",
        "space",
        "at sign",
        "percent-encoded",
        "query password",
        "sslpassword",
        "token",
        "one-slash typo",
    ],
)
def test_no_form_of_password_is_ever_shown(url, secret):
    from orion_nb.errors import ConfigurationError as CE

    assert secret not in mask_url(url) and "***" in mask_url(url)
    try:
        s = orion_nb.configure(database_url=url)
    except CE as exc:
        assert secret not in str(exc) and "***" in str(exc)
        return
    try:
        assert secret not in repr(s)
        from rich.console import Console

        from orion_nb._terminal import config_table

        console = Console(record=True, width=200)
        console.print(config_table())
        assert secret not in console.export_text()
    finally:
        orion_nb.configure(database_url=f"sqlite:///{s.home / 'orion.db'}")


def test_orion_nb_config_command_masks_query_secrets(tmp_path):
    env = {
        **os.environ,
        "ORION_NB_HOME": str(tmp_path),
        "ORION_NB_DATABASE_URL": "postgresql://u:pa ss@h/db?password=s3cr3t",
        "COLUMNS": "200",
    }
    out = subprocess.run(
        [sys.executable, "-m", "orion_nb.cli", "config"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "s3cr3t" not in out.stdout and "pa ss" not in out.stdout and "***" in out.stdout


def test_a_relative_sqlite_url_becomes_absolute_at_configuration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = orion_nb.configure(database_url="sqlite:///runs.db")
    try:
        assert s.database_url == f"sqlite:///{tmp_path / 'runs.db'}"
    finally:
        orion_nb.configure(database_url=f"sqlite:///{s.home / 'orion.db'}")
