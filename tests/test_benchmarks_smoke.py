"""The benchmark script runs (quick mode) and reports every measurement; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<script>`` with ``args`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_overhead_benchmark_quick(tmp_path: Path):
    out = tmp_path / "bench.json"
    res = bench("overhead.py", "--quick", "--json", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    for key in (
        "direct_median_us",
        "direct_total_per_task_us",
        "submit_per_task_us",
        "map_10k_s",
        "flow_run_ms",
        "cold_new_db_s",
        "cold_existing_db_s",
        "heavy_modules_at_import",
        "memory_peak_mb",
        "history_load_s",
    ):
        assert (key in data and data[key]["value"] > 0) or key == "heavy_modules_at_import", key
    assert data["heavy_modules_at_import"]["note"] == "-"  # import orion_nb stays light


def test_browser_benchmark_quick(tmp_path: Path):
    out = tmp_path / "browser.json"
    res = bench("browser.py", "--runs", "2000", "--json", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["runs"] == 2000
    for key in (
        "browser_open_s",
        "browser_open_failed_s",
        "page_deep_s",
        "poll_idle_s",
        "poll_10_new_s",
    ):
        assert data[key]["value"] > 0 and data[key]["baseline"] > 0, key


def test_compare_quick_orion_nb_only(tmp_path: Path):
    """compare.py runs every orion_nb workload in fresh processes, checks the runs were
    recorded, and writes the JSON, the Markdown table and the chart."""
    res = bench("compare.py", "--quick", "--only", "orion_nb", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((tmp_path / "compare.json").read_text())
    assert set(data["samples"]) == {
        "cold",
        "cold_new",
        "flows",
        "calls",
        "submit",
        "map",
        "retries",
    }
    for key, per_tool in data["samples"].items():
        assert list(per_tool) == ["orion_nb"], key
        (sample,) = per_tool["orion_nb"]
        assert sample["seconds"] > 0 and sample["tree_peak_rss_mb"] > 0, key
    calls = data["samples"]["calls"]["orion_nb"][0]
    assert calls["recorded"]["task_runs"] == calls["n"]  # persisted, counted in the file
    table = (tmp_path / "compare.md").read_text()
    assert "| 100 sequential task calls in a flow |" in table
    assert "peak RSS" in table
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_refuses_unknown_tools(tmp_path: Path):
    res = bench("compare.py", "--only", "airflow", timeout=60)
    assert res.returncode == 2
    assert "--only takes tools among orion_nb, prefect, dask" in res.stderr


def test_runners_benchmark_quick(tmp_path: Path):
    import importlib.util

    from tests.conftest import require_or_skip

    require_or_skip(importlib.util.find_spec("distributed") is not None, "dask.distributed")
    out = tmp_path / "runners.json"
    res = bench("runners.py", "--quick", "--json", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    for key in (
        "trivial_threads_s",
        "trivial_processes_s",
        "trivial_dask_s",
        "cpu_threads_s",
        "cpu_processes_s",
        "cpu_dask_s",
    ):
        assert data[key]["value"] > 0 and data[key]["baseline"] > 0, key


def test_instruction_count_workloads_run_and_record_every_run(tmp_path: Path):
    """The workloads ``instructions.py`` hands to valgrind run (here without valgrind: counting
    takes minutes); the writer's full stage asserts that its batch was committed."""
    for args in (("writer", "all", "50"), ("writer", "params", "50"), ("flow", "on", "20")):
        res = bench("instructions.py", "--child", *args, timeout=120)
        assert res.returncode == 0, (args, res.stderr[-3000:])


def test_ab_compares_against_a_commit_and_cleans_up_its_worktree(tmp_path: Path):
    out = tmp_path / "ab.json"
    res = bench("ab.py", "--base", "HEAD", "--pairs", "1", "--calls", "200", "--json", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    assert len(data["pairs"]) == 1 and all(v > 0 for v in data["pairs"][0])
    worktrees = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "orion-bench-ab-" not in worktrees
