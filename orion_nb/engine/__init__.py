"""The run engines: flows and tasks executed under the orchestration policies.

Definitions and the engines that drive their runs live apart (as Prefect keeps ``tasks.py``
apart from ``task_engine.py``):

- ``tasks`` / ``flows``: ``@task`` and ``@flow``: options, calling forms (``__call__``,
  ``submit``, ``map``, ``with_options``), hooks as decorators. They turn a call into a request to
  an engine.
- ``task_runs``: creating a task run (id, name, edges, Pending) or recording a call that does
  not fit the signature; ``task_drivers``: driving a task run in this thread or on an event
  loop; ``dispatch``: handing runs to a task runner (``submit``, ``map``).
- ``task_engine`` / ``flow_engine``: the steps of a run (begin, complete, fail, cancel, crash,
  done) that propose states to the policies (``flow_engine`` also creates and drives flow runs).
- ``outcome``: the final state of a submitted run, waited on by futures; ``collector``: pausing
  the garbage collector while ``.map()`` creates many runs.
- ``attempt``: one attempt of a run, mapped to the step that follows (written once per mode).
- ``runs``: the records of runs the engines drive (and hooks receive).
- ``walk`` / ``inputs`` / ``annotations``: the one container walker; finding upstream runs in a
  call and resolving them; ``allow_failure``, ``unmapped``, ``quote``.
- ``cache``: cache policies, ``task_input_hash``, the result cache and persisted results.
- ``signature`` / ``options`` / ``params``: checking calls and options; parameter records, run
  names and ids.
- ``context``: the current flow/task run (``contextvars``); ``runs`` they belong to.
- ``recorder``: where events go: the store's batched writer; ``views``: the registered live
  view factory (the engine never imports the notebook layer).
- ``futures``: ``TaskFuture``, ``FutureList``, ``wait``, ``as_completed``.
- ``runners``: thread-pool and sequential task runners, waiting inside workers.
- ``timeouts``: interrupting sync code at a deadline; ``concurrency``: tag-based slots;
  ``tags``: the ``tags()`` context; ``run_logging``: ``get_run_logger`` and ``log_prints``;
  ``hooks``: calling the user's state hooks.
"""
