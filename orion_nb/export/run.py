"""``orion-nb run``: run a script or a notebook once, as one recorded flow run.

- A **script** runs in this process (``runpy``, as ``python SCRIPT.py`` would, with ``--param``
  items passed on as its own arguments). An exported script reads them itself.
- A **notebook** runs headless in a real kernel (nbclient) with its parameters injected the
  way papermill does it (a cell tagged ``injected-parameters`` after the ``parameters`` cell),
  inside one parent flow run (:mod:`orion_nb.export.kernel`), so the history has the same
  shape as the exported script's. The executed notebook, outputs and errors included, is
  saved and its path recorded on the run (``output_path``): every scheduled run leaves a
  report, also when it fails.

When a scheduled run id is given (``serve`` does), the top-level flow run takes it over
(:data:`orion_nb.engine.flow_engine.scheduled_run`). SIGTERM (and Ctrl-C) cancels the run: in a
script as a ``KeyboardInterrupt``, in a notebook by interrupting the kernel; the run ends
Cancelled and the process exits.
"""

from __future__ import annotations

import asyncio
import os
import re
import runpy
import signal
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from orion_nb.errors import ConfigurationError, DeploymentError

__all__ = ["RunOutcome", "default_output_path", "inject_parameters", "run_notebook", "run_script"]

_TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class RunOutcome:
    """How a run ended: the process exit code and, for notebooks, the saved notebook."""

    def __init__(self, code: int, run_id: str | None = None, output: Path | None = None) -> None:
        self.code = code
        self.run_id = run_id
        self.output = output

    def __repr__(self) -> str:
        return f"RunOutcome(code={self.code}, run_id={self.run_id!r}, output={self.output!r})"


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt("stopped by SIGTERM")


def run_script(
    path: Path, params: Sequence[str] = (), *, run_id: str | None = None, args: Sequence[str] = ()
) -> RunOutcome:
    """Run ``path`` as ``__main__`` in this process; returns its exit status."""
    from orion_nb.engine.flow_engine import scheduled_run

    if not path.is_file():
        raise DeploymentError(f"No script at {str(path)!r}.")
    argv = [str(path), *(f"--param={p}" for p in params), *args]
    old_argv, old_path = sys.argv[:], sys.path[:]
    sys.argv = argv
    sys.path.insert(0, str(path.parent.resolve()))
    token = scheduled_run.set([run_id] if run_id else None)
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{path.name}: interrupted", file=sys.stderr)
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        signal.signal(signal.SIGTERM, old_term)
        scheduled_run.reset(token)
        sys.argv, sys.path[:] = old_argv, old_path
        from orion_nb.engine import recorder

        recorder.flush()
    return RunOutcome(code, run_id)


def inject_parameters(nb: Any, values: dict[str, Any], names: Sequence[str]) -> None:
    """papermill's convention: drop old ``injected-parameters`` cells, add one with ``names``.

    The new cell goes after the cell tagged ``parameters`` (at the top when there is none).
    """
    import nbformat

    from orion_nb.export.notebook import INJECTED_TAG, PARAMETERS_TAG

    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    if not names:
        return
    code = "# Parameters\n" + "".join(f"{k} = {values[k]!r}\n" for k in dict.fromkeys(names))
    cell = nbformat.v4.new_code_cell(code)
    cell.metadata["tags"] = [INJECTED_TAG]
    at = 0
    for i, c in enumerate(nb.cells):
        if PARAMETERS_TAG in c.get("metadata", {}).get("tags", []):
            at = i + 1
    nb.cells.insert(at, cell)


def default_output_path(flow_name: str, run_id: str, when: datetime | None = None) -> Path:
    """``$ORION_NB_HOME/outputs/<flow>/<UTC time>-<run id>.ipynb``."""
    from orion_nb.settings import get_settings

    when = when or datetime.now(UTC)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", flow_name).strip("-.") or "notebook"
    return get_settings().home / "outputs" / safe / f"{when:%Y%m%dT%H%M%SZ}-{run_id[:8]}.ipynb"


def run_notebook(
    path: Path,
    params: Sequence[str] = (),
    *,
    run_id: str | None = None,
    name: str | None = None,
    output: Path | None = None,
    kernel: str | None = None,
    cell_timeout: float | None = None,
) -> RunOutcome:
    """Run the notebook headless in a kernel as one flow run; save the executed notebook.

    Raises
    ------
    ExportError
        The file is not a readable notebook.
    ParameterError
        A ``--param`` that does not fit the notebook's parameters.
    ConfigurationError
        The kernel cannot start or cannot import orion_nb.
    """
    import nbformat

    from orion_nb.engine import recorder
    from orion_nb.engine.params import new_id
    from orion_nb.export import deployments as dep
    from orion_nb.export.notebook import read_notebook
    from orion_nb.export.params import apply_params, split_param
    from orion_nb.store import deployments as sql

    source = read_notebook(path)
    defaults, injected = source.parameters()
    values = apply_params(
        {k: p.value for k, p in defaults.items()}, params, what=f"The notebook {path.name!r}"
    )
    given = [split_param(p)[0] for p in params]
    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    inject_parameters(nb, values, [*injected, *given])
    flow_name = name or path.name
    run_id = run_id or new_id()
    out = Path(output) if output is not None else default_output_path(flow_name, run_id)
    recorder.get_writer()  # the history is ready (and old crashes marked) before the kernel
    spec = {
        "name": flow_name,
        "parameters": values,
        "source": str(path.resolve()),
        "run_id": run_id,
        "load_extension": _needs_extension(nb),
    }
    driver = _Driver(nb, path, spec, kernel, cell_timeout)
    asyncio.run(driver.run())
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(out))
    recorder.flush()
    dep.call(sql.set_output_path, run_id, str(out.resolve()))
    info = dep.call(sql.run_info, run_id)
    if info is None or info["state_type"] not in _TERMINAL:
        why = driver.problem or "the kernel stopped before the notebook finished"
        dep.call(sql.close_run, run_id, "CRASHED", "Crashed", why, dep.now())
        info = dep.call(sql.run_info, run_id)
    state = info["state_name"] if info else "Crashed"
    where = ""
    if driver.failed_cell is not None and state != "Completed":
        where = f" in cell {driver.failed_cell + 1} of the executed notebook"
    print(
        f"{path.name}: {state}{where}; executed notebook saved to {out}",
        file=sys.stderr if state != "Completed" else sys.stdout,
    )
    code = 0 if state == "Completed" else (130 if state == "Cancelled" else 1)
    return RunOutcome(code, run_id, out)


def _needs_extension(nb: Any) -> bool:
    """The notebook has ``%%flow`` cells but loads orion_nb's magics in none before them."""
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if re.search(r"^\s*%(re)?load_ext\s+orion_nb\b", source, re.M):
            return False
        if source.lstrip().startswith("%%flow"):
            return True
    return False


class _Driver:
    """Drives one kernel through begin, the cells and end (see :mod:`orion_nb.export.kernel`)."""

    def __init__(
        self, nb: Any, path: Path, spec: dict[str, Any], kernel: str | None, timeout: float | None
    ) -> None:
        self.nb = nb
        self.path = path
        self.spec = spec
        self.kernel = kernel
        self.timeout = timeout
        self.cancelled = False
        self.failed_cell: int | None = None
        self.problem: str | None = None
        self._interrupting: asyncio.Future[Any] | None = None

    async def _hidden(self, client: Any, code: str) -> dict[str, Any]:
        """Run ``code`` in the kernel outside any cell; returns the reply's content."""
        msg_id = client.kc.execute(code, silent=False, store_history=False, allow_stdin=False)
        reply = await client.async_wait_for_reply(msg_id)
        return dict(reply["content"]) if reply else {"status": "error", "evalue": "no reply"}

    def _kernel_manager(self, tmp: Path) -> Any:
        """The kernel: ``--kernel NAME`` from Jupyter, else this very Python (it has orion_nb).

        IPC sockets in a private directory: local only, no "running over TCP" warning.
        """
        import json

        from jupyter_client import AsyncKernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        if self.kernel is None:
            spec = tmp / "kernels" / "orion-nb-python"
            spec.mkdir(parents=True)
            argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
            (spec / "kernel.json").write_text(
                json.dumps(
                    {"argv": argv, "display_name": "Python (orion-nb)", "language": "python"}
                )
            )
            ksm = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")], ensure_native_kernel=False)
            km = AsyncKernelManager(
                kernel_name="orion-nb-python", kernel_spec_manager=ksm, transport="ipc"
            )
        else:
            km = AsyncKernelManager(kernel_name=self.kernel, transport="ipc")
        km.ip = str(tmp / "kernel")
        return km

    async def run(self) -> None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="orion-nb-run-") as tmp:
            km = self._kernel_manager(Path(tmp))
            try:
                await self._run(km)
            finally:
                await self._shutdown(km)

    async def _shutdown(self, km: Any) -> None:
        # a polite shutdown request: jupyter_client's own shutdown interrupts the kernel
        # first, which makes the kernel log a KeyboardInterrupt into every scheduled run's log
        if not km.has_kernel:
            return
        try:
            await km.request_shutdown()
            await km.finish_shutdown(waittime=10)
        except Exception:  # pragma: no cover - a kernel that died on its own
            await km.shutdown_kernel(now=True)
        await km.cleanup_resources()

    async def _run(self, km: Any) -> None:
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        client = NotebookClient(
            self.nb,
            km=km,
            timeout=self.timeout,
            interrupt_on_timeout=True,
            store_widget_state=True,
            resources={"metadata": {"path": str(self.path.parent.resolve())}},
        )
        env = {
            **os.environ,
            "ORION_NB_DISPLAY": "none",
            "JPY_SESSION_NAME": str(self.path.resolve()),
            "PYTHONUNBUFFERED": "1",
        }
        client.reset_execution_trackers()
        try:
            async with client.async_setup_kernel(env=env):
                try:
                    await self._cells(client, CellExecutionError, CellTimeoutError)
                finally:
                    client.kc.stop_channels()
        except DeadKernelError as exc:
            self.problem = f"the kernel died while running the notebook ({exc})"

    async def _cells(self, client: Any, *cell_errors: type[BaseException]) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, client)
        info = await client.async_wait_for_reply(client.kc.kernel_info())
        if info is not None and "language_info" in info["content"]:
            self.nb.metadata["language_info"] = info["content"]["language_info"]
        begin = f"__import__('orion_nb.export.kernel', fromlist=['begin']).begin({self.spec!r})"
        reply = await self._hidden(client, begin)
        if reply.get("status") != "ok":
            raise ConfigurationError(
                f"The kernel {self.kernel or 'of this Python'!r} could not start the notebook's "
                f"flow run ({reply.get('ename')}: {reply.get('evalue')}). It must run a Python "
                "that has orion_nb installed: install it there, or pick another kernel with "
                "--kernel."
            )
        outcome, message = "completed", ""
        for index, cell in enumerate(self.nb.cells):
            if self.cancelled:
                break
            try:
                await client.async_execute_cell(
                    cell, index, execution_count=client.code_cells_executed + 1
                )
            except cell_errors as exc:
                self.failed_cell = index
                outcome = "failed"
                message = str(exc).strip().splitlines()[-1][:500] if str(exc).strip() else ""
                break
        if self.cancelled:
            outcome = "cancelled"
            message = "the notebook run was stopped (SIGTERM or Ctrl-C)"
        end = (
            f"__import__('orion_nb.export.kernel', fromlist=['end']).end({outcome!r}, {message!r})"
        )
        await self._hidden(client, end)
        client.set_widgets_metadata()

    def _stop(self, client: Any) -> None:
        self.cancelled = True
        if client.km is not None:
            self._interrupting = asyncio.ensure_future(client.km.interrupt_kernel())
