"""A real ipykernel per test module, driven through jupyter_client (no mocks)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client import KernelManager


class Kernel:
    """A started kernel with helpers that return what the user would see."""

    def __init__(self, km: KernelManager, home: Path) -> None:
        self.km = km
        self.home = home
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120) -> dict[str, Any]:
        """Execute ``code``; returns status, streams, results, errors and raw messages."""
        msgs: list[dict[str, Any]] = []
        reply = self.kc.execute_interactive(
            code, timeout=timeout, output_hook=msgs.append, allow_stdin=False
        )
        out: dict[str, Any] = {
            "status": reply["content"]["status"],
            "stdout": "",
            "stderr": "",
            "results": [],
            "displays": [],
            "errors": [],
            "msgs": msgs,
            # help (?) arrives as a "page" payload of the reply, not on iopub
            "pager": "".join(
                p.get("data", {}).get("text/plain", "") for p in reply["content"].get("payload", [])
            ),
        }
        for m in msgs:
            t, c = m["msg_type"], m["content"]
            if t == "stream":
                out[c["name"]] += c["text"]
            elif t == "execute_result":
                out["results"].append(c["data"])
            elif t == "display_data":
                out["displays"].append(c["data"])
            elif t == "error":
                out["errors"].append(c)
        return out

    def value(self, expr: str) -> Any:
        """Evaluate ``expr`` in the kernel and return it (via JSON)."""
        r = self.run(f"import json as _j; print(_j.dumps({expr}, default=str))")
        assert r["status"] == "ok", r["errors"]
        return json.loads(r["stdout"].strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    tmp = Path(tempfile.mkdtemp(prefix="orion-kernel-"))
    home = tmp / "home"
    km = KernelManager(kernel_name="python3", transport="ipc")
    km.ip = str(
        tmp / "kernel-ipc"
    )  # absolute: a relative ipc path is resolved against the kernel's cwd
    env = {**os.environ, "ORION_NB_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("ORION_NB_DATABASE_URL", None)
    env.pop("ORION_NB_DISPLAY", None)
    km.start_kernel(cwd=str(tmp), env=env, extra_arguments=[])
    k = Kernel(km, home)
    try:
        r = k.run("import sys; print(sys.executable)")
        assert Path(r["stdout"].strip()).resolve() == Path(sys.executable).resolve(), (
            "kernel runs another Python"
        )
        yield k
    finally:
        k.kc.stop_channels()
        km.shutdown_kernel(now=True)
