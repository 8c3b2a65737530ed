"""Log set-up (item 13): timestamps and levels despite python-escpos, journald priorities.

Each case runs a fresh Python process, because what matters is the order of
imports at start-up (python-escpos installs a root handler when imported) and
the real stderr file descriptor that JOURNAL_STREAM names.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import logging
import escpos.printer  # calls logging.basicConfig() at import, as on a kiosk with a printer
from sync.logs import setup_logging

setup_logging({level!r})
log = logging.getLogger("aps.test")
log.debug("debug line")
log.info("info line")
log.warning("warning line")
log.error("error line")
try:
    raise RuntimeError("boom")
except RuntimeError:
    log.exception("exception line")
"""

TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ")


def run_script(tmp_path: Path, level: str, journal_stream: str | None) -> list[str]:
    """Run SCRIPT with stderr on a file; ``journal_stream``: "self" names that file."""
    err = tmp_path / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with err.open("wb") as fh:
        if journal_stream == "self":
            st = os.fstat(fh.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream
        subprocess.run(
            [sys.executable, "-c", SCRIPT.format(level=level)],
            stderr=fh,
            env=env,
            cwd=ROOT,
            check=True,
            timeout=60,
        )
    return err.read_text(encoding="utf-8").splitlines()


def test_after_escpos_import_lines_have_timestamps_and_the_configured_level(
    tmp_path: Path,
) -> None:
    lines = run_script(tmp_path, "DEBUG", None)
    messages = [ln for ln in lines if "aps.test:" in ln]
    assert [m.split("aps.test: ")[1] for m in messages] == [
        "debug line",
        "info line",
        "warning line",
        "error line",
        "exception line",
    ]
    assert all(TIMESTAMPED.match(m) for m in messages), messages
    assert not any(ln.startswith("<") for ln in lines)  # no journald prefixes on a file
    quiet = run_script(tmp_path, "WARNING", None)
    assert not any("info line" in ln or "debug line" in ln for ln in quiet)
    assert any("warning line" in ln for ln in quiet)


def test_under_journald_every_line_carries_its_sd_daemon_priority(tmp_path: Path) -> None:
    lines = run_script(tmp_path, "DEBUG", "self")
    assert "<7>DEBUG aps.test: debug line" in lines
    assert "<6>INFO aps.test: info line" in lines
    assert "<4>WARNING aps.test: warning line" in lines
    assert "<3>ERROR aps.test: error line" in lines
    # The traceback's lines are entries of their own in the journal: each one an error.
    start = lines.index("<3>ERROR aps.test: exception line")
    tail = lines[start:]
    assert "<3>Traceback (most recent call last):" in tail
    assert "<3>RuntimeError: boom" in tail
    assert all(re.match(r"^<[2-7]>", ln) for ln in lines), lines
    assert not any(TIMESTAMPED.match(ln[3:]) for ln in lines)  # journald stamps the time


def test_journal_stream_of_another_file_means_plain_lines(tmp_path: Path) -> None:
    other = os.stat(ROOT / "pyproject.toml")
    lines = run_script(tmp_path, "INFO", f"{other.st_dev}:{other.st_ino}")
    messages = [ln for ln in lines if "aps.test:" in ln]
    assert messages and all(TIMESTAMPED.match(m) for m in messages)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_central_sync_and_drivers_do_not_import_the_kiosk_agent() -> None:
    """ARCHITECTURE.md's import rule: central's log set-up comes from sync, not edge_agent."""
    offenders = {}
    for package, forbidden in (
        ("central", ("edge_agent",)),
        ("sync", ("edge_agent", "central")),
        ("drivers", ("edge_agent", "central")),
    ):
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = sorted(n for n in _imports(path) if n.split(".")[0] in forbidden)
            if bad:
                offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}
