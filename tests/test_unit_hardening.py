"""The agent's and central's systemd units are hardened: exposure at most 2.0 (issue 9).

`systemd-analyze security --offline=yes` scores a unit file without a running systemd; the
suite runs it where systemd-analyze exists (Debian's systemd package; every CI machine here
has it) and fails, never skips, when a unit scores above the limit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 2.0
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def exposure(unit: Path) -> float:
    assert ANALYZE is not None
    out = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout)
    assert found, out.stdout[-2000:] + out.stderr[-2000:]
    return float(found.group(1))


@needs_analyze
@pytest.mark.parametrize("unit", ["aps-agent.service", "aps-central.service"])
def test_the_service_units_score_at_most_2(unit: str) -> None:
    score = exposure(ROOT / "systemd" / unit)
    assert score <= LIMIT, f"{unit}: exposure {score} > {LIMIT} (systemd-analyze security)"


@needs_analyze
def test_the_score_is_read_right_an_unhardened_unit_is_exposed(tmp_path: Path) -> None:
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure(bare) > 8.0  # the check above can fail


@pytest.mark.parametrize("unit", ["aps-agent.service", "aps-central.service"])
def test_the_units_keep_notify_watchdog_and_their_state(unit: str) -> None:
    text = (ROOT / "systemd" / unit).read_text()
    for line in ("Type=notify", "UMask=0077", "StateDirectoryMode=0700", "NoNewPrivileges=true"):
        assert f"\n{line}\n" in text, (unit, line)
    assert re.search(r"\nWatchdogSec=\d+\n", text), unit
    assert "\nCapabilityBoundingSet=\n" in text and "\nSystemCallFilter=@system-service\n" in text
