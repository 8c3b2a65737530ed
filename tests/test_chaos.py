"""The chaos harness end to end: a 60 s run under every kind of fault, audited (issue 11).

Runs ``python -m tests.chaos`` as a person would (scripts/aps-chaos) and reads its
last line. The audit itself is proved able to fail in tests/test_chaos_audit.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.faults import KINDS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_minute_of_chaos_loses_and_doubles_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--seconds", "60", "--kiosks", "5", "--seed", "20261203"]
    res = subprocess.run(
        [sys.executable, "-m", "tests.chaos", *args, "--workdir", str(tmp_path / "run")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = res.stdout.strip().splitlines()
    assert lines, res.stderr[-3000:]
    out = json.loads(lines[-1])
    assert list(out)[:5] == ["committed", "at_central", "lost", "duplicated", "faults_injected"]
    assert out["lost"] == 0 and out["duplicated"] == 0, res.stdout[-4000:]
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert out["committed"] == out["at_central"] > 0, out
    assert out["gaps"] == 0 and out["hash_mismatch"] == 0 and out["acked_missing"] == 0, out
    assert out["attachments"] > 0 and out["filed"] > 0 and out["filed_missing"] == 0, out
    assert out["faults_injected"] == sum(out["faults"].values()) > 0, out
    assert all(out["faults"][kind] >= 1 for kind in KINDS), out["faults"]
    # A full disk was seen by the citizen (refused cleanly) and accepted nothing.
    assert out["refused_while_full"] > 0 and out["accepted_while_full"] == 0, out
    assert out["garbage_sent"] > 0 and out["dead_letters"] > 0, out
    assert out["drained"] is True
