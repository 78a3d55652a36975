"""The issue 8 commands of ``orion-nb``, run as real subprocesses against a temporary history."""

from __future__ import annotations

from tests.export.helpers import cli, notebook, register, rows

# a hand-written script can take --param like an exported one: command_line() reads them
JOB = (
    "from orion_nb import flow\nfrom orion_nb.export.runtime import command_line\n\n"
    "@flow(name='job')\ndef job(n: int = 1):\n    return n\n\n"
    "if __name__ == '__main__':\n    command_line(job)\n"
)


def test_export_writes_a_script_or_prints_it_and_emits_schedulers(tmp_path):
    home = tmp_path / "home"
    nb = notebook(tmp_path / "daily.ipynb", ("n = 1", ["parameters"]), "print(n)")
    res = cli(home, "export", str(nb))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith('"""daily.ipynb as a script') and "def main(" in res.stdout
    script = tmp_path / "out" / "daily.py"
    res = cli(
        home,
        "export",
        str(nb),
        "-o",
        str(script),
        "--cron",
        "30 6 * * 1-5",
        "--timezone",
        "Europe/Paris",
        "--emit",
        "systemd",
    )
    assert res.returncode == 0, res.stderr
    assert script.exists() and "Wrote" in res.stderr
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 06:30:00 Europe/Paris" in res.stdout
    assert "ExecStart=" in res.stdout and str(script.resolve()) in res.stdout
    res = cli(home, "export", str(nb), "-o", str(script), "--interval", "900", "--emit", "crontab")
    assert res.returncode == 0, res.stderr
    assert "*/15 * * * * cd " in res.stdout


def test_export_errors_are_one_sentence_and_status_2(tmp_path):
    home = tmp_path / "home"
    nb = notebook(tmp_path / "bad.ipynb", "%%bash\nls")
    res = cli(home, "export", str(nb))
    assert res.returncode == 2
    assert res.stderr.startswith("Error: Cannot export cell 1 of bad.ipynb, line 1:")
    assert "Traceback" not in res.stderr
    good = notebook(tmp_path / "good.ipynb", "x = 1")
    res = cli(home, "export", str(good), "--cron", "every day")
    assert res.returncode == 2 and "has 2 fields; it needs 5" in res.stderr
    res = cli(home, "export", str(good), "--emit", "crontab")
    assert res.returncode == 2 and "--emit needs -o SCRIPT.py and a schedule" in res.stderr


def test_run_a_script_once_with_parameters(tmp_path):
    home = tmp_path / "home"
    nb = notebook(tmp_path / "sq.ipynb", ("n = 2", ["parameters"]), "print('square', n * n)")
    script = tmp_path / "sq.py"
    assert cli(home, "export", str(nb), "-o", str(script)).returncode == 0
    res = cli(home, "run", str(script), "--param", "n=7")
    assert res.returncode == 0, res.stderr
    assert "square 49" in res.stdout
    assert rows(home, "select flow_name, state_name, parameters from flow_runs") == [
        ("sq.ipynb", "Completed", '{"n": 7}')
    ]
    res = cli(home, "run", str(script), "--param", "nn=7")
    assert res.returncode == 2 and "did you mean 'n'?" in res.stderr
    res = cli(home, "run", str(tmp_path / "nope.py"))
    assert res.returncode == 2 and "no such file" in res.stderr


def test_deployments_ls_pause_resume_run_and_rm(tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    register(home, "nightly", script, "cron='0 3 * * *', timezone='Asia/Tokyo'", "{'n': 4}")
    res = cli(home, "deployments", "ls")
    assert res.returncode == 0, res.stderr
    assert "nightly" in res.stdout and "cron '0 3 * * *' (Asia/Tokyo)" in res.stdout
    assert "active" in res.stdout
    res = cli(home, "deployments", "pause", "nightly")
    assert res.returncode == 0 and "Paused 'nightly'" in res.stdout
    assert "paused" in cli(home, "deployments", "ls").stdout
    assert "Resumed 'nightly'" in cli(home, "deployments", "resume", "nightly").stdout
    res = cli(home, "deployments", "run", "nightly", "--param", "n=5")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "run " in res.stderr and "Completed after" in res.stderr
    ((state, params, dep_name, slot),) = rows(
        home,
        "select f.state_name, f.parameters, d.name, f.expected_start_time from flow_runs f "
        "join deployments d on d.id = f.deployment_id",
    )
    assert (state, params, dep_name) == ("Completed", '{"n": 5}', "nightly")
    assert slot is not None
    res = cli(home, "runs", "ls", "--deployment", "nightly")
    assert res.returncode == 0, res.stderr
    assert "deployment" in res.stdout and "nightly" in res.stdout and "job" in res.stdout
    res = cli(home, "runs", "--deployment", "nightlyy")
    assert res.returncode == 2 and "did you mean 'nightly'?" in res.stderr
    assert cli(home, "runs").returncode == 0
    res = cli(home, "deployments", "rm", "nightly")
    assert res.returncode == 0 and "Removed 'nightly'" in res.stdout
    res = cli(home, "deployments", "pause", "nightly")
    assert res.returncode == 2 and "No deployment named 'nightly'" in res.stderr
    assert rows(home, "select count(*) from flow_runs") == [(1,)]  # the history stays


def test_serve_without_a_schedule_or_with_a_bad_one_says_so(tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    res = cli(home, "serve", str(script))
    assert res.returncode == 2 and "No schedule for job.py" in res.stderr
    res = cli(home, "serve", str(script), "--interval", "0")
    assert res.returncode == 2 and "must be a positive number" in res.stderr
    res = cli(home, "serve", str(tmp_path / "missing.py"), "--interval", "1")
    assert res.returncode == 2 and "there is no such file" in res.stderr
    res = cli(home, "serve")
    assert res.returncode == 2 and "Nothing to serve" in res.stderr


def test_user_text_is_printed_as_text_not_markup(tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    register(home, "[bold red]x[/]", script, "interval=60")
    assert "[bold red]x[/]" in cli(home, "deployments", "ls").stdout
    res = cli(home, "deployments", "pause", "[b]nope[/b]")
    assert "'[b]nope[/b]'" in res.stderr
