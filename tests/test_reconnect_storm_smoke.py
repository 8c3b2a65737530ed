"""bench/reconnect_storm.py runs small and its storm delivers every backlog (no timing asserted).

Both storms (the kiosk's jittered backoff and the fixed-retry baseline) must end with
every kiosk reconnected once and every backlog record committed at central, none
dead-lettered: the bench fails (non-zero) if central does not drain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_reconnect_storm_bench_drains_every_backlog() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/reconnect_storm.py"),
            *("--kiosks", "30", "--backlog", "4", "--procs", "2", "--timeout", "120"),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    ).stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert last["bench"] == "reconnect_storm" and last["unit"] == "s"
    assert (last["connacks"], last["baseline_connacks"]) == (30, 30)
    assert last["records"] == 120 and last["dead_letters"] == 0
    assert {"value", "baseline", "ratio", "central_peak_rss_mib"} <= set(last)
