"""bench/fleet_heartbeats.py runs in its quick mode and prints its JSON (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_fleet_heartbeat_bench_runs_and_prints_its_json() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/fleet_heartbeats.py"),
            "--kiosks",
            "200",
            "--seconds",
            "10",
            "--rounds",
            "2",
            "--collectors",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # the bench imports bench/_kiosks.py
        check=True,
    ).stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert last["bench"] == "fleet_heartbeats" and last["unit"] == "heartbeats/s"
    assert {"value", "baseline", "ratio", "steady_cores_per_1000_kiosks"} <= set(last)
    assert last["collectors"] == 2 and last["rounds"] == 2
    assert last["ratio_min"] <= last["ratio"] <= last["ratio_max"]
    # two collectors on a shared subscription: every heartbeat committed by one of them
    assert last["steady_handled"] == last["steady_sent"]
    # every kiosk has its one status row, and heartbeats never made a record
    assert last["status_rows"] == 200 and last["records"] == 0
    assert 0 < last["history_rows"] <= 2 * 200
