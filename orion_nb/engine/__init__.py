"""The run engines: flows and tasks executed under the orchestration policies.

- ``context``: the current flow/task run (``contextvars``), used by loggers and nested calls.
- ``recorder``: where events go: the store's batched writer and live views.
- ``params``: signature checks with "did you mean" suggestions, run names.
- ``futures``: :class:`TaskFuture` and :class:`FutureList`.
- ``runners``: thread-pool and sequential task runners.
- ``timeouts``: interrupting sync code at a deadline (signals on the main thread, async
  exceptions elsewhere).
- ``concurrency``: tag-based slots shared by the threads of a process.
- ``cache``: :func:`task_input_hash` and the result cache.
- ``run_logging``: :func:`get_run_logger` and ``log_prints``.
- ``tasks`` / ``flows``: the decorators and the engines proper.
"""
