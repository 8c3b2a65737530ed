"""Software updates end to end on this machine, with real releases built from the project.

Theory of operation: copies of the tree at four versions are made: 0.1.0 (installed with
scripts/install.sh --prefix --no-system --wheelhouse, the box's starting point), 0.2.0 (good),
0.3.0 (its trial health check is sabotaged: it reports the broker unreachable) and 0.4.0
(``aps-agent run`` exits at once: it crashes before it can check anything), and for the
rollouts 0.5.0 (good) and 0.6.0 (its health check sabotaged as 0.3.0's). Each is built as
a wheel and published by central's ReleaseStore with the dependencies' wheelhouse (the
cache of tests/test_install_chroot.py, offline) and served by central's real API on
loopback. A supervisor thread stands in for systemd: before every start it runs the guard
(Debian's python3, as ExecStartPre= does), then ``<prefix>/current/venv/bin/aps-agent run``
against a real mosquitto, and starts it again whenever it exits (Restart=always). The
technician's command, the running release's own ``aps-agent update apply``, drives each
update; the test then stops the agent (the restart) and waits for the state to settle.

The second test drives updates the way production does: ``aps-central rollout start`` on a
real ``aps-central run`` (collector, downlink, API serving the releases, rollout tick), the
``update`` job to the running agent over the real broker, its hand-over (request.json), and a
stand-in for aps-update.path + aps-update.service (:class:`UpdateService`) that runs the
unit's own ExecStart= line with the paths moved under the test's prefix. 0.5.0 goes through
every ring (``done``); 0.6.0 rolls back and the rollout stops by itself; a repeated request is
a no-op; a release central does not serve fails the root service after the job succeeded,
and the heartbeat's ``failed`` stops that rollout too.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from central import audit
from central.fleet.health import KioskHealth, health_rows
from central.fleet.releases import ReleaseStore
from central.fleet.rollout import manifest_path
from central.fleet.rollout import start as start_rollout
from central.mosquitto import MosquittoProcess, free_ports
from central.web.app import create_app
from central.web.common import ApiSettings
from central.web.server import ApiServer
from edge_agent.config import load_agent_config
from edge_agent.updater import state_file
from edge_agent.updater.job import REQUEST, write_request
from edge_agent.updater.layout import Layout
from edge_agent.updater.machine import State
from tests import stack
from tests.identity import CENTRAL_KEY
from tests.test_install_chroot import copy_source, wheelhouse
from tests.waiting import wait_until

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
    for version in ("0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0"):
        tree = _tree(work / f"src-{version}", version)
        if version in ("0.3.0", "0.6.0"):
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
    pidfile: Path | None = None  # the running agent's pid, for the stand-in systemctl
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
                if self.pidfile is not None:
                    self.pidfile.write_text(f"{self.proc.pid}\n")
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


SETTLED = (State.COMMITTED, State.ROLLED_BACK, State.FAILED, State.INCONSISTENT)


def _wait_settled(state: Path, version: str, timeout: float = 600) -> state_file.UpdateState:
    """The update to ``version`` once it has settled (committed, rolled back, failed...)."""
    try:
        wait_until(
            lambda: (s := state_file.load(state)).version == version and s.state in SETTLED,
            timeout,
            f"the update to {version} to settle",
            poll=0.5,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it is {state_file.load(state)}") from None
    return state_file.load(state)


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
            wait_until(lambda: len(sup.starts) >= 1, 120, "the agent started again")
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
            wait_until(
                lambda: (
                    sup.starts[-1] == "0.2.0" and sup.proc is not None and sup.proc.poll() is None
                ),
                120,
                "0.2.0 running again",
            )
        finally:
            sup.stop()


# -- a rollout, the way production carries it out -------------------------------------------

UPDATE_UNIT = ROOT / "systemd" / "aps-update.service"
#: systemctl for the root service: "restart aps-agent.service" is SIGTERM to the agent the
#: Supervisor runs (its Restart= starts the release ``current`` names, after the guard)
SYSTEMCTL = """#!/bin/sh
[ "$1" = restart ] && [ "$2" = aps-agent.service ] || exit 1
exec kill -TERM "$(cat {pidfile})"
"""


def exec_start(unit: Path, *, aps: Path, config: Path, state_dir: Path) -> list[str]:
    """The unit's ExecStart= as argv (systemd's quoting), its paths moved under the test's."""
    (line,) = [x for x in unit.read_text().splitlines() if x.startswith("ExecStart=")]
    moves = {
        "/opt/aps": str(aps),
        "/etc/aps/agent.toml": str(config),
        "/var/lib/aps/update": str(state_dir),
    }
    argv = []
    for arg in shlex.split(line.removeprefix("ExecStart=")):
        for old, new in moves.items():
            if arg == old or arg.startswith(old + "/"):
                arg = new + arg[len(old) :]
        argv.append(arg)
    return argv


@dataclass
class UpdateService:
    """systemd's part for updates: aps-update.path (``PathExists=`` request.json) starting
    the one-shot aps-update.service (its ExecStart= to the end, one run at a time, started
    again while the file is still there), as the test's user."""

    argv: list[str]
    request: Path
    bin_dir: Path  # the stand-in systemctl, first on PATH
    log: Path
    runs: list[tuple[int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        env = _clean_env()
        env["PATH"] = f"{self.bin_dir}:{env['PATH']}"
        while not self._stop.is_set():
            if not self.request.exists():
                self._stop.wait(0.2)
                continue
            out = subprocess.run(
                self.argv, capture_output=True, text=True, env=env, timeout=900, check=False
            )
            with self.log.open("a") as f:
                f.write(f"$ {' '.join(self.argv)}\n{out.stdout}{out.stderr}-> {out.returncode}\n")
            self.runs.append((out.returncode, out.stdout + out.stderr))
            self._stop.wait(0.5)  # the path unit's trigger limit, roughly

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=900)


def _central(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "central.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _rollout(config: Path) -> dict[str, Any]:
    return dict(json.loads(_central(config, "rollout", "status"))[0])  # newest first


def _read(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def _kiosk(db: Path) -> KioskHealth | None:
    if not db.exists():
        return None
    conn = _read(db)
    try:
        return next((h for h in health_rows(conn) if h.kiosk == stack.KIOSK), None)
    finally:
        conn.close()


def _audit(db: Path, version: str) -> list[dict[str, Any]]:
    conn = _read(db)
    try:
        return list(reversed(audit.entries(conn, target=f"release:{version}")))
    finally:
        conn.close()


def _update_job(config: Path, version: str) -> dict[str, Any]:
    (job,) = [
        j
        for j in json.loads(_central(config, "job", "list", "--kiosk", stack.KIOSK, "--json"))
        if j["kind"] == "update" and j["args"]["version"] == version
    ]
    return dict(json.loads(_central(config, "job", "show", job["id"], "--json")))


def test_a_rollout_reaches_the_box_through_its_job_and_the_root_update_service(
    world: World, broker: MosquittoProcess, tmp_path: Path
) -> None:
    aps = world.prefix / "opt" / "aps"
    layout = Layout(aps)
    before = layout.running_version()  # 0.1.0; 0.2.0 after the test above
    assert before in ("0.1.0", "0.2.0")
    state_dir = world.state.parent
    request = state_dir / REQUEST
    db = tmp_path / "central.db"
    (api_port,) = free_ports(1)
    central_toml = stack.write_central_config(
        tmp_path / "central.toml", db, broker.collector(), kiosks=(stack.KIOSK,)
    )
    with central_toml.open("a") as f:
        f.write(
            f'\n[api]\nlisten = "127.0.0.1:{api_port}"\n\n[downlink]\nnudge_interval_s = 0.2\n'
            f'\n[updates]\nreleases_dir = "{world.store.root}"\ntick_s = 0.5\nsoak_s = 3600\n'
            "max_failure_rate = 0.2\n"
        )
    config = stack.write_agent_config(
        tmp_path / "agent.toml", tmp_path / "kiosk.db", broker.kiosk(stack.KIOSK)
    )
    with config.open("a") as f:  # [identity] is the file's last table: central_url joins it
        f.write(
            f'central_url = "http://127.0.0.1:{api_port}"\n'
            f'\n[update]\nprefix = "{aps}"\nstate_dir = "{state_dir}"\ntrial_s = 40\n'
            'hand_over = "always"\n'
        )
    assert load_agent_config(config).identity.central_url.endswith(str(api_port))
    pidfile = tmp_path / "agent.pid"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(SYSTEMCTL.format(pidfile=pidfile))
    (bin_dir / "systemctl").chmod(0o755)
    argv = exec_start(UPDATE_UNIT, aps=aps, config=config, state_dir=state_dir)
    assert argv[0] == str(aps / "current" / "venv" / "bin" / "aps-agent")
    assert argv[argv.index("--from-request") + 1] == str(request)
    service = UpdateService(argv, request, bin_dir, tmp_path / "update-service.log")
    sup = Supervisor(
        world.prefix, world.state, config, tmp_path / "supervisor.log", pidfile=pidfile
    )
    central = stack.spawn("central.cli", central_toml, tmp_path / "central.log")

    def logs() -> str:
        return "\n".join(
            f"--- {name}\n{(tmp_path / name).read_text()[-3000:]}"
            for name in ("supervisor.log", "update-service.log", "central.log")
            if (tmp_path / name).exists()
        )

    sup.start()
    service.start()
    try:
        wait_until(
            lambda: (h := _kiosk(db)) is not None and h.agent_version == before,
            120,
            "the kiosk's first heartbeat at central",
        )

        # 1. the good release: canary done, then "all" (no office), then the rollout is done
        _central(central_toml, "rollout", "start", "0.5.0", "--canary", stack.KIOSK)
        try:
            wait_until(lambda: _rollout(central_toml)["state"] == "done", 600, "0.5.0 done")
        except AssertionError:
            raise AssertionError(f"{_rollout(central_toml)}\n{logs()}") from None
        s = state_file.load(world.state)
        assert s.state is State.COMMITTED and s.version == "0.5.0", s
        assert layout.running_version() == "0.5.0" and sup.starts[-1] == "0.5.0"
        h = _kiosk(db)
        assert h is not None and h.agent_version == "0.5.0"
        assert (h.update or {}).get("state") == "committed"
        assert not request.exists()  # consumed by the one run of the root service
        assert [rc for rc, _ in service.runs] == [0], service.runs
        job = _update_job(central_toml, "0.5.0")
        assert job["state"] == "succeeded" and job["result"] == {"requested": "0.5.0"}, job
        assert job["args"]["manifest_url"] == "/v1/releases/0.5.0/manifest.json"
        assert "handed-over" in [e["step"] for e in job["events"]], job["events"]
        actions = [(e["action"], e["detail"].get("ring")) for e in _audit(db, "0.5.0")]
        assert actions == [
            ("rollout.start", None),
            ("rollout.advance", "all"),
            ("rollout.done", "all"),
        ], actions

        # 2. the root service runs the same request again: nothing fetched, no restart
        starts = len(sup.starts)
        write_request(state_dir, "0.5.0", f"http://127.0.0.1:{api_port}{manifest_path('0.5.0')}")
        wait_until(lambda: len(service.runs) == 2, 120, "the repeated request's run")
        assert service.runs[1][0] == 0 and "running already" in service.runs[1][1]
        assert not request.exists() and state_file.load(world.state) == s
        assert len(sup.starts) == starts

        # 3. the sabotaged release: it rolls back; the canary ring fails: stopped by itself
        _central(central_toml, "rollout", "start", "0.6.0", "--canary", stack.KIOSK)
        try:
            wait_until(lambda: _rollout(central_toml)["state"] == "stopped", 600, "0.6.0 stop")
        except AssertionError:
            raise AssertionError(f"{_rollout(central_toml)}\n{logs()}") from None
        r = _rollout(central_toml)
        assert r["ring"] == "canary" and stack.KIOSK in r["reason"], r
        s = state_file.load(world.state)
        assert s.state is State.ROLLED_BACK and s.version == "0.6.0", s
        assert "sabotaged" in (s.reason or ""), s
        assert layout.running_version() == "0.5.0"
        assert sup.starts[starts:][:1] == ["0.6.0"]  # its trial start; then 0.5.0 again
        h = _kiosk(db)
        assert h is not None and h.agent_version == "0.5.0"
        assert (h.update or {}).get("state") == "rolled-back", h.update
        assert (h.update or {}).get("version") == "0.6.0", h.update
        assert not request.exists() and [rc for rc, _ in service.runs] == [0, 0, 0]
        job = _update_job(central_toml, "0.6.0")
        assert job["state"] == "succeeded" and job["result"] == {"requested": "0.6.0"}, job
        trail = _audit(db, "0.6.0")
        assert [e["action"] for e in trail] == ["rollout.start", "rollout.stop"], trail
        assert trail[-1]["actor"] == "rollout" and stack.KIOSK in trail[-1]["detail"]["reason"]
        wait_until(
            lambda: sup.proc is not None and sup.proc.poll() is None and sup.starts[-1] == "0.5.0",
            120,
            "0.5.0 running again",
        )

        # 4. the root service fails after the job succeeded (central serves no such release):
        # the heartbeat says failed, and the rollout counts it and stops
        _central(central_toml, "rollout", "abort")
        starts = len(sup.starts)
        conn = sqlite3.connect(db, timeout=30)
        try:  # rollout.start itself: the CLI refuses a release it does not hold
            start_rollout(
                conn,
                "0.7.0",
                actor="test",
                canary=[stack.KIOSK],
                office=None,
                soak_s=3600,
                max_failure_rate=0.2,
            )
        finally:
            conn.close()
        wait_until(lambda: _rollout(central_toml)["state"] == "stopped", 120, "0.7.0 stop")
        assert _update_job(central_toml, "0.7.0")["state"] == "succeeded"  # handed over
        assert len(service.runs) == 4 and service.runs[3][0] == 1, service.runs  # unit failed
        s = state_file.load(world.state)
        assert (s.state, s.version) == (State.FAILED, "0.7.0") and "404" in (s.reason or ""), s
        h = _kiosk(db)
        assert h is not None and (h.update or {}).get("state") == "failed", h
        assert not request.exists() and layout.running_version() == "0.5.0"
        assert len(sup.starts) == starts  # never restarted
    finally:
        service.stop()
        sup.stop()
        stack.stop(central)
