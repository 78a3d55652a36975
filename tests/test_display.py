"""The text view of a flow run in scripts and terminals.

Every test checks what a user would see: return values, raised exceptions, and the recorded
history (through the public DataFrame API, i.e. a real SQLite file).
"""

from __future__ import annotations


def test_text_view_reports_start_and_summary_in_a_script(tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import orion_nb
        @orion_nb.task
        def t(i):
            if i == 2:
                raise ValueError("bad")
            return i
        @orion_nb.flow(name="scripted")
        def f():
            return [t(i, return_state=True) for i in range(3)] and 1
        f()
        """
    )
    env = {**os.environ, "ORION_NB_HOME": str(tmp_path)}
    env.pop("ORION_NB_DATABASE_URL", None)
    env.pop("ORION_NB_DISPLAY", None)
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "of flow 'scripted' started" in res.stderr
    assert "finished in state Completed" in res.stderr
    assert "3 task runs (2 Completed, 1 Failed)" in res.stderr
