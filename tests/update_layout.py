"""Helpers for the updater's tests: a fake install layout and the guard script loaded."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
GUARD = ROOT / "scripts" / "aps-update-guard"


def fake_release(prefix: Path, version: str) -> Path:
    """A complete-looking release directory (its aps-agent is a stub script)."""
    rel = prefix / "releases" / version
    (rel / "venv" / "bin").mkdir(parents=True, exist_ok=True)
    agent = rel / "venv" / "bin" / "aps-agent"
    agent.write_text("#!/bin/sh\necho " + version + "\n")
    agent.chmod(0o755)
    (rel / ".aps-release").write_text(f"test {version}\n")
    return rel


def point_current(prefix: Path, version: str) -> None:
    tmp = prefix / ".current.t"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(f"releases/{version}", tmp)
    os.rename(tmp, prefix / "current")


def guard_module() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("aps_update_guard", str(GUARD))
    spec = importlib.util.spec_from_loader("aps_update_guard", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def run_guard(
    state: Path, prefix: Path, *, max_starts: int = 3
) -> subprocess.CompletedProcess[str]:
    """The guard as systemd runs it: its own process, Debian's python3, stdlib only."""
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    return subprocess.run(
        [
            python,
            "-I",
            str(GUARD),
            "--state",
            str(state),
            "--prefix",
            str(prefix),
            "--max-starts",
            str(max_starts),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
