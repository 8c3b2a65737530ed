"""The install layout on the box (scripts/install.sh): releases side by side, one link.

    <prefix>/releases/<version>/venv/       a release's own virtualenv
    <prefix>/releases/<version>/.aps-release written last: the release is complete
    <prefix>/current -> releases/<version>  what systemd starts; replaced atomically

A release is built in place (a virtualenv's scripts carry their absolute path), beside the
running one, and never touched once complete. The switch makes a new link under a
temporary name and rename(2)s it over ``current`` (never ``ln -sfn``, which unlinks first
and leaves a moment with no link at all). :meth:`Layout.prune` keeps the running release
and the one before it (the rollback target) and removes the older ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge_agent.updater import UpdateError
from sync.release_manifest import compare_versions, is_version

#: What install.sh copies beside a release's venv; an update carries them forward from the
#: running release (the wheels hold only the Python packages).
SHIPPED = ("docs", "scripts", "systemd")
#: How long building one release's virtualenv may take (pip from local wheels).
BUILD_TIMEOUT_S = 900


@dataclass(frozen=True)
class Layout:
    prefix: Path  # /opt/aps

    @property
    def releases(self) -> Path:
        return self.prefix / "releases"

    @property
    def current(self) -> Path:
        return self.prefix / "current"

    def release_dir(self, version: str) -> Path:
        if not is_version(version):
            raise UpdateError("layout", f"{version!r} is not a release version (such as 0.2.0)")
        return self.releases / version

    def running_version(self) -> str | None:
        """The version ``current`` names, or None (no link, or not ``releases/<version>``)."""
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        head, _, version = target.rstrip("/").rpartition("/")
        if head not in ("releases", str(self.releases)) or not is_version(version):
            return None
        return version

    def is_complete(self, version: str) -> bool:
        rel = self.release_dir(version)
        return (rel / ".aps-release").is_file() and (rel / "venv" / "bin" / "aps-agent").exists()

    def installed(self) -> list[str]:
        """Complete releases on disk, oldest first."""
        if not self.releases.is_dir():
            return []
        found = [p.name for p in self.releases.iterdir() if is_version(p.name)]
        done = [v for v in found if self.is_complete(v)]
        ordered: list[str] = []
        for v in done:  # insertion sort by release version (a handful of entries)
            i = 0
            while i < len(ordered) and compare_versions(ordered[i], v) < 0:
                i += 1
            ordered.insert(i, v)
        return ordered

    def switch_to(self, version: str) -> None:
        """Point ``current`` at ``releases/<version>`` in one rename(2), then fsync."""
        if not self.is_complete(version):
            raise UpdateError("switching", f"release {version} is not complete on disk")
        tmp = self.prefix / f".current.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(f"releases/{version}", tmp)
        os.rename(tmp, self.current)
        fd = os.open(self.prefix, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def build(
        self, version: str, wheels: Path, *, project: str = "aps-kiosk", python: str = ""
    ) -> None:
        """Build ``releases/<version>`` from the downloaded wheels, offline.

        A directory without ``.aps-release`` is half-built (a crash or power cut) and is
        built again from scratch; a complete one is left as it is.
        """
        if self.is_complete(version):
            return
        rel = self.release_dir(version)
        shutil.rmtree(rel, ignore_errors=True)
        rel.mkdir(parents=True)
        py = python or _system_python()
        steps = [
            [py, "-m", "venv", str(rel / "venv")],
            [
                str(rel / "venv" / "bin" / "pip"),
                "install",
                "--disable-pip-version-check",
                "--no-cache-dir",
                "--quiet",
                "--no-index",
                "--find-links",
                str(wheels),
                f"{project}=={version}",
            ],
            [str(rel / "venv" / "bin" / "aps-agent"), "--version"],
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
        env["PIP_CONFIG_FILE"] = os.devnull  # only the downloaded wheels, never an index
        for cmd in steps:
            try:
                out = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise UpdateError("building", f"{cmd[0]}: {exc}") from None
            if out.returncode != 0:
                tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
                raise UpdateError(
                    "building", f"{' '.join(cmd[:3])} exited {out.returncode}: {' | '.join(tail)}"
                )
        running = self.running_version()
        for name in SHIPPED:
            if running is not None and (self.release_dir(running) / name).is_dir():
                shutil.copytree(self.release_dir(running) / name, rel / name, symlinks=True)
        marker = rel / ".aps-release.tmp"
        marker.write_text(f"update {version}\n")
        marker.rename(rel / ".aps-release")

    def prune(self, keep: set[str]) -> list[str]:
        """Remove complete and half-built releases outside ``keep``, and never the one
        ``current`` names; returns what was removed."""
        running = self.running_version()
        removed: list[str] = []
        if not self.releases.is_dir():
            return removed
        for path in sorted(self.releases.iterdir()):
            if path.name in keep or path.name == running or not is_version(path.name):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        return removed


def _system_python() -> str:
    """Debian's python3, as install.sh uses (never the running venv's own)."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    raise UpdateError("building", "python3 is missing: apt-get install python3 python3-venv")
