"""Software updates end to end on this machine, with real releases built from the project.

Theory of operation: copies of the tree at four versions are made: 0.1.0 (installed with
scripts/install.sh --prefix --no-system --wheelhouse, the box's starting point), 0.2.0 (good),
0.3.0 (its trial health check is sabotaged: it reports the broker unreachable) and 0.4.0
(``aps-agent run`` exits at once: it crashes before it can check anything). Each is built as
a wheel and published by central's ReleaseStore with the dependencies' wheelhouse (the
cache of tests/test_install_chroot.py, offline) and served by central's real API on
loopback. A supervisor thread stands in for systemd: before every start it runs the guard
(Debian's python3, as ExecStartPre= does), then ``<prefix>/current/venv/bin/aps-agent run``
against a real mosquitto, and starts it again whenever it exits (Restart=always). The
technician's command, the running release's own ``aps-agent update apply``, drives each
update; the test then stops the agent (the restart) and waits for the state to settle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from central.fleet.releases import ReleaseStore
from central.mosquitto import MosquittoProcess
from central.web.app import create_app
from central.web.common import ApiSettings
from central.web.server import ApiServer
from edge_agent.updater import state_file
from edge_agent.updater.layout import Layout
from edge_agent.updater.machine import State
from tests import stack
from tests.identity import CENTRAL_KEY
from tests.test_install_chroot import copy_source, wheelhouse

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    return env


def _run(cmd: list[str], **kw: object) -> str:
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, env=_clean_env(), check=False, **kw
    )  # type: ignore[call-overload]
    assert out.returncode == 0, (
        f"{cmd} -> {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return str(out.stdout + out.stderr)


def _tree(dest: Path, version: str) -> Path:
    copy_source(dest)
    py = dest / "pyproject.toml"
    py.write_text(py.read_text().replace('version = "0.1.0"', f'version = "{version}"', 1))
    app = dest / "edge_agent" / "app.py"
    app.write_text(
        app.read_text().replace('AGENT_VERSION = "0.1.0"', f'AGENT_VERSION = "{version}"')
    )
    return dest


def _sabotage(tree: Path, path: str, old: str, new: str) -> None:
    f = tree / path
    text = f.read_text()
    assert old in text, (path, old)
    f.write_text(text.replace(old, new, 1))


@dataclass
class World:
    prefix: Path
    state: Path
    manifests: dict[str, str]
    store: ReleaseStore
    api: ApiServer
    work: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip("needs Debian's /usr/bin/python3 (the box's interpreter)")
    work = tmp_path_factory.mktemp("updates")
    house = wheelhouse()
    base = _tree(work / "src-0.1.0", "0.1.0")
    prefix = work / "box"
    _run(
        [
            "bash",
            str(base / "scripts" / "install.sh"),
            "--prefix",
            str(prefix),
            "--no-system",
            "--wheelhouse",
            str(house),
        ]
    )
    store = ReleaseStore(work / "central-releases")
    for version in ("0.2.0", "0.3.0", "0.4.0"):
        tree = _tree(work / f"src-{version}", version)
        if version == "0.3.0":
            _sabotage(
                tree,
                "edge_agent/updater/agent_hook.py",
                'return None if app.sync.network.connected.is_set() else "not connected yet"',
                'return "sabotaged: this test release never reaches its broker"',
            )
        if version == "0.4.0":
            _sabotage(
                tree,
                "edge_agent/cli.py",
                '    """Run the agent until SIGTERM (what the systemd unit starts)."""\n',
                '    """Run the agent until SIGTERM (what the systemd unit starts)."""\n'
                '    raise SystemExit("crash at start (a broken test release)")\n',
            )
        out = work / f"wheel-{version}"
        _run([SYSTEM_PYTHON, "-m", "venv", str(work / "buildenv")]) if not (
            work / "buildenv"
        ).exists() else None
        _run(
            [
                str(work / "buildenv" / "bin" / "pip"),
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--find-links",
                str(house),
                "-w",
                str(out),
                str(tree),
            ]
        )
        store.add(version, [out, house], key=CENTRAL_KEY, outbox_schema=1, min_rollback="0.1.0")
    api = ApiServer(
        create_app(ApiSettings(database=work / "central.db", releases_dir=store.root)),
        "127.0.0.1",
        0,
    )
    api.start()
    base_url = f"http://127.0.0.1:{api.bound_port}/v1/releases"
    try:
        yield World(
            prefix=prefix,
            state=work / "var" / "update" / "state.json",
            manifests={v: f"{base_url}/{v}/manifest.json" for v in store.versions()},
            store=store,
            api=api,
            work=work,
        )
    finally:
        api.stop()


@dataclass
class Supervisor:
    """systemd's part: ExecStartPre= (the guard), ExecStart= (current's agent), Restart=."""

    prefix: Path
    state: Path
    config: Path
    log: Path
    max_starts: int = 2
    starts: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        guard = self.prefix / "opt" / "aps" / "bin" / "aps-update-guard"
        aps = self.prefix / "opt" / "aps"
        with self.log.open("ab") as log:
            while not self._stop.is_set():
                subprocess.run(
                    [
                        SYSTEM_PYTHON,
                        "-I",
                        str(guard),
                        "--state",
                        str(self.state),
                        "--prefix",
                        str(aps),
                        "--max-starts",
                        str(self.max_starts),
                    ],
                    stdout=log,
                    stderr=log,
                    env=_clean_env(),
                    timeout=60,
                    check=False,
                )
                self.starts.append(Layout(aps).running_version() or "?")
                self.proc = subprocess.Popen(
                    [
                        str(aps / "current" / "venv" / "bin" / "aps-agent"),
                        "run",
                        "--config",
                        str(self.config),
                    ],
                    stdout=log,
                    stderr=log,
                    env=_clean_env(),
                )
                self.proc.wait()
                self._stop.wait(0.5)  # RestartSec=

    def restart_agent(self) -> None:
        """What ``systemctl restart`` does to the agent: SIGTERM; Restart= brings it back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=60)


def _wait_settled(state: Path, version: str, timeout: float = 600) -> state_file.UpdateState:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = state_file.load(state)
        if s.version == version and s.state in (
            State.COMMITTED,
            State.ROLLED_BACK,
            State.FAILED,
            State.INCONSISTENT,
        ):
            return s
        time.sleep(0.5)
    raise AssertionError(f"update to {version} never settled: {state_file.load(state)}")


def test_updates_commit_roll_back_and_survive_a_reboot(
    world: World, broker: MosquittoProcess, tmp_path: Path
) -> None:
    aps = world.prefix / "opt" / "aps"
    layout = Layout(aps)
    assert layout.running_version() == "0.1.0"
    if True:
        config = stack.write_agent_config(
            tmp_path / "agent.toml", tmp_path / "kiosk.db", broker.kiosk(stack.KIOSK)
        )
        with config.open("a") as f:
            f.write(
                f'\n[update]\nprefix = "{aps}"\nstate_dir = "{world.state.parent}"\ntrial_s = 45\n'
            )
        sup = Supervisor(world.prefix, world.state, config, tmp_path / "supervisor.log")
        sup.start()
        try:

            def apply(version: str) -> str:
                agent = aps / "current" / "venv" / "bin" / "aps-agent"
                out = _run(
                    [
                        str(agent),
                        "update",
                        "apply",
                        "--config",
                        str(config),
                        "--manifest",
                        world.manifests[version],
                        "--restart-command",
                        "",
                    ]
                )
                sup.restart_agent()
                return out

            # 1. a good release: downloaded, built beside 0.1.0, switched, checked, committed
            assert "switched to 0.2.0" in apply("0.2.0")
            s = _wait_settled(world.state, "0.2.0")
            assert s.state is State.COMMITTED, (
                s,
                (tmp_path / "supervisor.log").read_text()[-3000:],
            )
            assert layout.running_version() == "0.2.0"
            assert layout.installed() == ["0.1.0", "0.2.0"]  # the previous stays on disk

            # 2. a "reboot": the supervisor goes away and comes back; 0.2.0 stays
            sup.stop()
            sup.starts.clear()
            sup.start()
            _eventually(lambda: len(sup.starts) >= 1)
            assert sup.starts[0] == "0.2.0" and state_file.load(world.state) == s

            # 3. its health check fails: it rolls back to 0.2.0 by itself
            apply("0.3.0")
            s = _wait_settled(world.state, "0.3.0")
            assert s.state is State.ROLLED_BACK and "sabotaged" in (s.reason or ""), s
            assert layout.running_version() == "0.2.0"

            # 4. it crashes before it can check itself: the guard rolls it back
            apply("0.4.0")
            s = _wait_settled(world.state, "0.4.0")
            assert s.state is State.ROLLED_BACK and "without committing" in (s.reason or ""), s
            assert layout.running_version() == "0.2.0"
            # old ones beyond two pruned: 0.1.0 went when 0.3.0 came; 0.3.0 when 0.4.0 came
            assert "0.1.0" not in layout.installed() and "0.2.0" in layout.installed()
            # the agent runs 0.2.0 again, from the committed release
            _eventually(
                lambda: (
                    sup.starts[-1] == "0.2.0" and sup.proc is not None and sup.proc.poll() is None
                )
            )
        finally:
            sup.stop()


def _eventually(cond: object, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("condition never held")
