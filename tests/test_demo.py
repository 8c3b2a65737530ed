"""The README's first command: aps-demo --once ends with a truthful JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_once_files_and_syncs_everything(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent.demo", "--once", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["submitted"] == 12
    assert summary["at_central"] == 12
    assert summary["duplicates"] == 0 and summary["lost"] == 0
    assert summary["sequence_gaps"] == 0
    assert (out / "kiosk.db").exists() and (out / "central.db").exists()
