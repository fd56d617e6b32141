"""`vigil bench` runs and reports every metric (its numbers are judged by people, not by this test)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import run_vigil, vigil_env
from vigil.bench import GOALS, YEAR_GOALS

pytestmark = pytest.mark.e2e  # runs vigil's own code as a subprocess


def test_the_quick_bench_reports_every_metric_as_json(tmp_path: Path) -> None:
    # A hundredth of every size (--quick is a tenth): every measurement runs, in seconds rather than minutes.
    result = run_vigil(["bench", "--scale", "100", "--json"], vigil_env(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["details"]["scale"] == 100 and report["details"]["chats"] == 10
    assert set(GOALS) <= set(report)
    assert all(isinstance(report[name], int | float) and report[name] > 0 for name in GOALS)
    # The A/B figure is a difference of two noisy rates: below zero when the metrics cost less than the jitter.
    assert math.isfinite(report["details"]["metrics_overhead_pct_ab"])
    assert report["details"]["metrics_us_per_turn"] > 0
    assert report["details"]["metrics_turns_counted_by_scrape"] > 0
    assert report["details"]["persist_us_per_turn_at_10"] > 0


def test_the_quick_year_bench_reports_every_year_metric_as_json(tmp_path: Path) -> None:
    result = run_vigil(["bench", "--year", "--quick", "--json"], vigil_env(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(YEAR_GOALS) <= set(report)
    assert all(isinstance(report[name], int | float) and report[name] >= 0 for name in YEAR_GOALS)
    assert report["year_bytes_per_turn"] > 0 and report["year_backup_s"] > 0 and report["year_restore_s"] > 0
    details = report["details"]
    assert details["resume_chats"] > 0 and details["retention_conversations"] > 0
    assert details["backup_mb"] > 0 and details["touch_all_s"] >= 0


def test_the_cold_start_probe_imports_vigil_not_the_other_measurements() -> None:
    """The probe (`python -m vigil.bench --cold-start-probe`) times vigil's start-up: the package and the
    probe's own module must not bring in the SQLite, recall, year or metrics measurements it never runs."""
    code = ("import sys, vigil.bench, vigil.bench._throughput; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('vigil.bench.'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(result.stdout.split())
    assert "vigil.bench._throughput" in loaded
    assert not loaded & {f"vigil.bench.{m}" for m in ("_year", "_year_store", "_sqlite", "_recall", "_shape",
                                                       "_metrics", "_persist")}
