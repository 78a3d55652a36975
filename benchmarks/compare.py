#!/usr/bin/env python3
"""orion_nb next to Prefect 3 and Dask's local threaded scheduler: the comparison users can rerun.

    python benchmarks/compare.py                       # full run (~10 min on 2 cores)
    python benchmarks/compare.py --quick --only orion_nb  # the smoke test (< 1 min)
    python benchmarks/compare.py --out /tmp/cmp --repeats 5

Writes ``compare.json`` (every sample), ``compare.md`` (the table) and ``compare.png`` (a bar
chart, log scale; needs matplotlib: ``pip install 'orion_nb[bench]'``) to ``--out``
(default ``benchmarks/results/``).

How it measures, so that the figures mean the same thing on each side:

- **The same workloads.** orion_nb and Prefect run the very same file
  (``compare_flows.py``), with ``flow`` and ``task`` imported from one tool or the other.
  Dask runs the equivalent graphs where it has one (``compare_dask.py``); it has no flow runs,
  no retries and records nothing, so it shows the floor of "Python functions as tasks".
- **Fresh processes, alternating, repeated.** Every sample is a new interpreter running one
  workload; each repetition runs every workload for every tool, the tools' order rotating,
  so a noisy minute on a shared machine does not land on one tool. The table shows medians.
- **Persistence as installed.** Each tool records its runs in its default local set-up:
  orion_nb in its SQLite file (``ORION_NB_HOME``), Prefect in its SQLite database behind the
  ephemeral API server it starts by itself (``PREFECT_HOME``). Each process gets a fresh copy
  of a home prepared once (database created), except "cold start, new database". After each
  sample the runs the tool recorded are counted in its database file: a sample whose runs
  are missing is an error, not a figure.
- **Timing** is taken inside the process around the workload only, after one warm-up flow
  run (the database is open, Prefect's server is up); the cold start is timed from before
  the tool's import to the end of its first flow run. **Peak RSS** is sampled from outside
  every 20 ms over the whole life of the process *and all its descendants* (Prefect's API
  server runs in a child process), summed.

Prefect is installed by this script into ``benchmarks/.venv-prefect`` (``prefect==3.8.8``
with ``fastapi<0.151``), never into orion_nb's environment; ``--prefect-python`` uses another
interpreter that has Prefect.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PREFECT_VENV = HERE / ".venv-prefect"
PREFECT_REQUIREMENTS = ("prefect==3.8.8", "fastapi<0.151")
TOOLS = ("orion_nb", "prefect", "dask")
LABELS = {"orion_nb": "orion_nb", "prefect": "Prefect", "dask": "Dask local threads"}


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    size: int  # N in the full run
    quick: int  # N in --quick
    per: str  # what one unit of N is, for the per-unit figure ("" for a whole-process figure)
    tools: tuple[str, ...]
    fresh_home: bool = False  # a brand-new (empty) home instead of a copy of the prepared one

    @property
    def script(self) -> str:
        """The workload's name in compare_flows.py / compare_dask.py."""
        return "cold" if self.key.startswith("cold") else self.key


WORKLOADS = (
    Workload("cold", "cold start: import + first flow run", 1, 1, "", TOOLS),
    Workload(
        "cold_new",
        "cold start, new database",
        1,
        1,
        "",
        ("orion_nb", "prefect"),
        fresh_home=True,
    ),
    Workload("flows", "{n:,} empty flow runs", 100, 10, "flow run", ("orion_nb", "prefect")),
    Workload("calls", "{n:,} sequential task calls in a flow", 1000, 100, "task run", TOOLS),
    Workload("submit", "{n:,} .submit() + .result()", 1000, 100, "task run", TOOLS),
    Workload("map", ".map() over {n:,} items", 1000, 100, "task run", TOOLS),
    Workload(
        "retries",
        "{n:,} flow runs of a task that fails twice, then succeeds",
        10,
        3,
        "flow run",
        ("orion_nb", "prefect"),
    ),
)


# -- the processes --------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> Iterator[int]:
    tree = _children()
    stack = [pid]
    while stack:
        p = stack.pop()
        yield p
        stack.extend(tree.get(p, ()))


class TreeRSS:
    """Peak of the summed RSS of a process and all its descendants, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_rss_kb(p) for p in _tree(self.pid))
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kb


def _run(cmd: list[str], env: dict[str, str], timeout: float = 900) -> dict[str, Any]:
    """Run one sample; its last stdout line is its JSON result; add the tree's peak RSS."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss = TreeRSS(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        peak = rss.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["tree_peak_rss_mb"] = peak / 1024
    return result


# -- the tools' set-ups -----------------------------------------------------------------------------
def prefect_python(explicit: str | None) -> str:
    """An interpreter with Prefect: ``--prefect-python``, or benchmarks/.venv-prefect (made
    and filled here on first use)."""
    if explicit:
        return explicit
    python = PREFECT_VENV / "bin" / "python"
    check = [str(python), "-c", "import prefect; print(prefect.__version__)"]
    if python.exists():
        done = subprocess.run(check, capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip() == PREFECT_REQUIREMENTS[0].split("==")[1]:
            return str(python)
    print(f"installing {' '.join(PREFECT_REQUIREMENTS)} into {PREFECT_VENV} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PREFECT_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *PREFECT_REQUIREMENTS], check=True
    )
    subprocess.run(check, check=True, capture_output=True)
    return str(python)


class Side:
    """How to run one tool: its interpreter, its script, its home, where it records runs."""

    def __init__(self, tool: str, python: str, scratch: Path) -> None:
        self.tool = tool
        self.python = python
        self.scratch = scratch
        self.template = scratch / f"{tool}-template"
        self.count = 0

    def env(self, home: Path) -> dict[str, str]:
        # as installed tools run: bytecode cached (prepare() writes the caches), so a caller's
        # PYTHONDONTWRITEBYTECODE does not make every cold start compile sources again
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ORION_NB_", "PREFECT_", "DASK_"))
            and k != "PYTHONDONTWRITEBYTECODE"
        }
        if self.tool == "orion_nb":
            env["ORION_NB_HOME"] = str(home)
        elif self.tool == "prefect":
            env["PREFECT_HOME"] = str(home)
            env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no network here
            # its default 20 s is too short for a first start (migrations) on a busy machine;
            # the cold start measures how long it takes, not whether it fits in 20 s
            env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "600"
        return env

    def command(self, workload: str, n: int) -> list[str]:
        if self.tool == "dask":
            return [self.python, str(HERE / "compare_dask.py"), workload, str(n)]
        return [self.python, str(HERE / "compare_flows.py"), self.tool, workload, str(n)]

    def prepare(self) -> None:
        """A home with the tool's database created, copied for every sample."""
        self.template.mkdir(parents=True)
        if self.tool == "dask":  # no database; this run writes the bytecode caches
            _run(self.command("cold", 1), self.env(self.template))
        else:
            _run(self.command("setup", 1), self.env(self.template))

    def sample(self, w: Workload, n: int) -> dict[str, Any]:
        self.count += 1
        home = self.scratch / f"{self.tool}-{self.count}"
        if w.fresh_home:
            home.mkdir()
        else:
            shutil.copytree(self.template, home)
        try:
            before = self.recorded(home)
            result = _run(self.command(w.script, n), self.env(home))
            after = self.recorded(home)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        result["recorded"] = {k: after[k] - before.get(k, 0) for k in after}
        self.check(w, n, result["recorded"])
        return result

    def recorded(self, home: Path) -> dict[str, int]:
        """Flow runs and task runs in the tool's database (read from the file itself)."""
        files = {
            "orion_nb": ("orion.db", "flow_runs", "task_runs"),
            "prefect": ("prefect.db", "flow_run", "task_run"),
        }
        if self.tool not in files:
            return {}
        name, flows, tasks = files[self.tool]
        path = home / name
        if not path.exists():
            return {"flow_runs": 0, "task_runs": 0}
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return {
                "flow_runs": con.execute(f"SELECT count(*) FROM {flows}").fetchone()[0],
                "task_runs": con.execute(f"SELECT count(*) FROM {tasks}").fetchone()[0],
            }
        finally:
            con.close()

    def check(self, w: Workload, n: int, recorded: dict[str, int]) -> None:
        """The runs of the sample are in the database: the tool persisted what it ran."""
        if self.tool == "dask":
            return
        flows = 1 if w.key.startswith("cold") else 1 + (n if w.key in ("flows", "retries") else 1)
        tasks = {"calls": n, "submit": n, "map": n, "retries": n}.get(w.key, 0)
        if recorded.get("flow_runs", 0) < flows or recorded.get("task_runs", 0) < tasks:
            raise RuntimeError(
                f"{self.tool} recorded {recorded} for {w.key} (N={n}); expected at least "
                f"{flows} flow runs and {tasks} task runs: its history is not complete."
            )


# -- the run ----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    tools = [t for t in TOOLS if t in args.only]
    scratch = Path(tempfile.mkdtemp(prefix="orion-compare-"))
    try:
        sides: dict[str, Side] = {}
        for tool in tools:
            python = prefect_python(args.prefect_python) if tool == "prefect" else sys.executable
            sides[tool] = Side(tool, python, scratch)
            sides[tool].prepare()
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for rep in range(args.repeats):
            order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
            for w in WORKLOADS:
                n = w.quick if args.quick else w.size
                for tool in order:
                    if tool not in w.tools:
                        continue
                    t = time.perf_counter()
                    result = sides[tool].sample(w, n)
                    result["n"] = n
                    samples.setdefault(w.key, {}).setdefault(tool, []).append(result)
                    print(
                        f"[{rep + 1}/{args.repeats}] {w.key:9s} {tool:9s} "
                        f"{result['seconds']:9.4f} s  peak {result['tree_peak_rss_mb']:6.0f} MB"
                        f"  ({time.perf_counter() - t:.1f} s)",
                        file=sys.stderr,
                    )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"meta": meta(args, samples), "samples": samples}


def meta(args: argparse.Namespace, samples: dict[str, Any]) -> dict[str, Any]:
    versions = {
        tool: runs[0]["version"] for per_tool in samples.values() for tool, runs in per_tool.items()
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "mode": "quick" if args.quick else "full",
        "repeats": args.repeats,
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


# -- the report -------------------------------------------------------------------------------------
def summary(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per workload: per tool the median (and min, max) seconds, per-unit cost, RSS."""
    rows = []
    for w in WORKLOADS:
        per_tool = data["samples"].get(w.key)
        if not per_tool:
            continue
        n_of = next(iter(per_tool.values()))[0]["n"]
        label = w.label.format(n=n_of)
        row: dict[str, Any] = {"key": w.key, "label": label, "per": w.per, "tools": {}}
        for tool, runs in per_tool.items():
            secs = [r["seconds"] for r in runs]
            n = runs[0]["n"]
            med = statistics.median(secs)
            row["tools"][tool] = {
                "seconds": med,
                "returned_seconds": statistics.median(r.get("returned_seconds", 0) for r in runs),
                "min": min(secs),
                "max": max(secs),
                "n": n,
                "per_unit_s": med / n if w.per else None,
                "peak_rss_mb": max(r["tree_peak_rss_mb"] for r in runs),
                "samples": len(runs),
            }
        rows.append(row)
    return rows


def _time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale or unit == "µs":
            v = s / scale
            return f"{v:,.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}"
    raise AssertionError


def markdown(data: dict[str, Any]) -> str:
    rows = summary(data)
    tools = [t for t in TOOLS if any(t in r["tools"] for r in rows)]
    versions = data["meta"]["versions"]
    head = [f"{LABELS[t]} {versions.get(t, '')}".strip() for t in tools]
    ratio = "orion_nb" in tools and "prefect" in tools
    lines = [
        "| workload | " + " | ".join(head) + (" | Prefect ÷ orion_nb |" if ratio else " |"),
        "|---|" + "--:|" * (len(tools) + ratio),
    ]
    for r in rows:
        cells = []
        for t in tools:
            v = r["tools"].get(t)
            if v is None:
                cells.append("n/a")
                continue
            cell = _time(v["seconds"])
            if v["per_unit_s"] is not None:
                cell += f" ({_time(v['per_unit_s'])} per {r['per']})"
            cells.append(cell)
        if ratio:
            o, p = r["tools"].get("orion_nb"), r["tools"].get("prefect")
            cells.append(f"{p['seconds'] / o['seconds']:,.0f}x" if o and p else "")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    peaks = []
    for t in tools:
        vals = [r["tools"][t]["peak_rss_mb"] for r in rows if t in r["tools"]]
        peaks.append(f"{max(vals):,.0f} MB")
    if ratio:
        o = max(r["tools"]["orion_nb"]["peak_rss_mb"] for r in rows if "orion_nb" in r["tools"])
        p = max(r["tools"]["prefect"]["peak_rss_mb"] for r in rows if "prefect" in r["tools"])
        peaks.append(f"{p / o:.1f}x")
    lines.append(
        "| peak RSS of the process and its children (largest sample) | " + " | ".join(peaks) + " |"
    )
    m = data["meta"]
    early = [
        f"{r['label']}: {_time(v['returned_seconds'])} of {_time(v['seconds'])}"
        for r in rows
        if (v := r["tools"].get("prefect")) and v["returned_seconds"] < 0.9 * v["seconds"]
    ]
    if early:
        lines += [
            "",
            "Times are until the workload's task runs are in the tool's database. Prefect "
            "returned before that (its task runs travel as events to its server): "
            + "; ".join(early)
            + ".",
        ]
    lines += [
        "",
        f"Medians of {m['repeats']} fresh processes per cell ({m['mode']} mode), "
        f"{m['date']}, Python {m['python']}, {m['platform']}, {m['cpus']} CPUs, "
        f"load average {m['load_average'][0]:.2f} at the end; commit {m['commit']}. "
        f"Command: `{m['command']}`.",
    ]
    return "\n".join(lines) + "\n"


def chart(data: dict[str, Any], path: Path) -> bool:
    """Grouped bars, one group per workload, seconds on a log scale. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no chart (pip install 'orion_nb[bench]')", file=sys.stderr)
        return False
    rows = summary(data)
    tools = [t for t in TOOLS if any(t in r["tools"] for r in rows)]
    colors = {"orion_nb": "#2a9d8f", "prefect": "#264653", "dask": "#e9c46a"}
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=120)
    width = 0.8 / len(tools)
    for i, tool in enumerate(tools):
        xs, ys = [], []
        for j, r in enumerate(rows):
            if tool in r["tools"]:
                xs.append(j + (i - (len(tools) - 1) / 2) * width)
                ys.append(r["tools"][tool]["seconds"])
        bars = ax.bar(xs, ys, width, label=LABELS[tool], color=colors[tool])
        for bar, y in zip(bars, ys, strict=True):
            ax.annotate(
                _time(y),
                (bar.get_x() + bar.get_width() / 2, y),
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax.set_yscale("log")
    ax.set_ylabel("seconds (median, log scale)")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([textwrap.fill(r["label"], 18) for r in rows], fontsize=7)
    ax.legend(frameon=False)
    ax.set_title("Same workloads, fresh processes, runs persisted (lower is better)", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small N, one repetition")
    parser.add_argument(
        "--only",
        default=",".join(TOOLS),
        help=f"comma-separated tools to run (default: all of {','.join(TOOLS)})",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="repetitions (default 3; 1 quick)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--prefect-python", default=None, help="an interpreter with Prefect")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="only redraw the table and chart of a compare.json written before",
    )
    args = parser.parse_args()
    if args.render is not None:
        data = json.loads(args.render.read_text())
        args.out.mkdir(parents=True, exist_ok=True)
        return _write(data, args.out)
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = sorted(set(args.only) - set(TOOLS))
    if unknown or not args.only:
        parser.error(f"--only takes tools among {', '.join(TOOLS)}; got {args.only}")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    data = run(args)
    data["summary"] = summary(data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(data, indent=1))
    return _write(data, args.out)


def _write(data: dict[str, Any], out: Path) -> int:
    table = markdown(data)
    (out / "compare.md").write_text(table)
    chart(data, out / "compare.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
