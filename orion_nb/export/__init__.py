"""Notebooks to scheduled jobs: the script export, one-off runs, schedules and the serve loop.

- ``cells``: a ``%%flow`` cell as a flow (used by the magic), and the magic's line options;
- ``translate``: one cell's IPython syntax in plain Python, or an error naming the cell;
- ``source`` and ``names``: cells as text (spans, scopes, indentation), and the names the
  script may take without clashing with the notebook's;
- ``notebook``: reading a notebook, its tags and its parameters (papermill's conventions);
- ``script``: the whole notebook as a script with one parent flow (``formatting``: ruff);
- ``runtime``: what an exported script imports (``command_line``, ``shell``, ``display``);
- ``params``: ``--param NAME=VALUE``, read as the type of the default;
- ``schedules``: cron (with time zones and daylight saving) and interval schedules;
- ``emit``: the same schedule as a crontab entry or systemd units;
- ``run`` and ``kernel``: ``orion-nb run`` for scripts and (headless, in a kernel) notebooks;
- ``deployments`` and ``serve``: deployments in the history and the foreground scheduler;
- ``cli``: the ``orion-nb`` commands of all this.

Importing this package imports nothing heavy: the magic reaches ``cells`` through it.
"""
