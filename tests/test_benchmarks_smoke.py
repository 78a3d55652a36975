"""The benchmark script runs (quick mode) and reports every measurement; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_overhead_benchmark_quick(tmp_path: Path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
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


def test_runners_benchmark_quick(tmp_path: Path):
    import importlib.util

    from tests.conftest import require_or_skip

    require_or_skip(importlib.util.find_spec("distributed") is not None, "dask.distributed")
    out = tmp_path / "runners.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "runners.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
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
