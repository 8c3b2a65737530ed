"""The root service's side of a handed-over update (aps-update.service, docs/updates.md).

Once and only once: the request is removed when the update settled, asking again for what
runs already fetches nothing, a switch whose restart was lost asks for it again. Never
silent: a manifest that cannot be fetched is a ``failed`` update of the release asked for,
what the heartbeat carries and the rollout counts. Never in a citizen's session: the switch
and the restart wait for the session to end, asked of the agent's real local API.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from central.fleet.health import KioskHealth
from central.fleet.releases import ReleaseStore
from central.fleet.rollout import outcome
from central.mosquitto import free_ports
from central.web.app import create_app
from central.web.common import ApiSettings
from central.web.server import ApiServer as CentralApi
from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from edge_agent.cli import main
from edge_agent.devices import DeviceEvent
from edge_agent.updater import state_file
from edge_agent.updater.apply import SESSION_POLL_S, UpdaterSettings, apply_update
from edge_agent.updater.cli import session_in_use
from edge_agent.updater.job import REQUEST, write_request
from edge_agent.updater.machine import State, UpdateState
from sync.envelope_signing import key_id
from sync.mqtt_link import MqttSettings
from tests import stack
from tests.identity import CENTRAL_KEY
from tests.kiosk import app_config, card
from tests.update_layout import fake_release, point_current

KEYS = {key_id(CENTRAL_KEY.public_key()): CENTRAL_KEY.public_key()}


def _box(tmp: Path) -> UpdaterSettings:
    prefix = tmp / "opt"
    fake_release(prefix, "0.1.0")
    point_current(prefix, "0.1.0")
    return UpdaterSettings(
        prefix=prefix, state_path=tmp / "var" / "state.json", downloads=tmp / "var" / "dl"
    )


def _nobody() -> str:
    (port,) = free_ports(1)  # nothing listens there: central unreachable
    return f"http://127.0.0.1:{port}/v1/releases/0.2.0/manifest.json"


def _built_and_waiting(box: UpdaterSettings) -> UpdateState:
    """0.2.0 downloaded and built beside 0.1.0, waiting for its switch."""
    fake_release(box.prefix, "0.2.0")
    waiting = UpdateState(state=State.SWITCHING, version="0.2.0", previous="0.1.0", at=1.0)
    state_file.save(box.state_path, waiting)
    return waiting


def test_a_manifest_central_does_not_serve_is_a_failed_update_the_rollout_counts(
    tmp_path: Path,
) -> None:
    box = _box(tmp_path)
    with httpx.Client(timeout=5) as client:
        done = apply_update(_nobody(), settings=box, keys=KEYS, client=client, version="0.2.0")
    assert done.failed and not done.restart
    s = state_file.load(box.state_path)
    assert (s.state, s.version, s.previous) == (State.FAILED, "0.2.0", "0.1.0")
    assert "downloading" in (s.reason or "")
    beat = KioskHealth(kiosk="k", agent_version="0.1.0", update=s.health())
    assert outcome(beat, "0.2.0") == "failed"  # the heartbeat's update, as central judges it
    assert box.layout.running_version() == "0.1.0"


def test_a_disk_that_fails_the_download_is_a_failed_update_not_a_crash(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases")
    src = tmp_path / "src"
    src.mkdir()
    with zipfile.ZipFile(src / "aps_kiosk-0.2.0-py3-none-any.whl", "w") as z:
        z.writestr("sync/outbox.py", b"SCHEMA_VERSION = 1\n")
    store.add("0.2.0", [src], key=CENTRAL_KEY, outbox_schema=1, min_rollback="0.1.0")
    server = CentralApi(
        create_app(ApiSettings(database=tmp_path / "central.db", releases_dir=store.root)),
        "127.0.0.1",
        0,
    )
    server.start()
    box = _box(tmp_path)
    box.downloads.parent.mkdir(parents=True, exist_ok=True)
    box.downloads.write_text("a file where the downloads directory should be\n")
    url = f"http://127.0.0.1:{server.bound_port}/v1/releases/0.2.0/manifest.json"
    try:
        with httpx.Client(timeout=10) as client:
            done = apply_update(url, settings=box, keys=KEYS, client=client, version="0.2.0")
    finally:
        server.stop()
    assert done.failed
    s = state_file.load(box.state_path)
    assert s.state is State.FAILED and s.version == "0.2.0", s
    assert (s.reason or "").startswith("downloading: "), s.reason
    assert box.layout.running_version() == "0.1.0"


def test_asking_again_for_the_running_release_fetches_nothing(tmp_path: Path) -> None:
    box = _box(tmp_path)
    committed = UpdateState(state=State.COMMITTED, version="0.1.0", previous="0.0.9", at=1.0)
    state_file.save(box.state_path, committed)
    with httpx.Client(timeout=5) as client:  # central unreachable: it is never asked
        done = apply_update(_nobody(), settings=box, keys=KEYS, client=client, version="0.1.0")
    assert not (done.failed or done.restart or done.waiting) and "running" in done.message
    assert state_file.load(box.state_path) == committed


def test_a_switch_whose_restart_was_lost_asks_for_the_restart_again(tmp_path: Path) -> None:
    box = _box(tmp_path)
    switched = UpdateState(state=State.RESTARTING, version="0.1.0", previous="0.0.9", at=1.0)
    state_file.save(box.state_path, switched)
    with httpx.Client(timeout=5) as client:
        done = apply_update(_nobody(), settings=box, keys=KEYS, client=client, version="0.1.0")
    assert done.restart and not done.failed
    assert state_file.load(box.state_path) == switched


def test_the_switch_waits_for_the_session_to_end_then_goes_on(tmp_path: Path) -> None:
    box = _box(tmp_path)
    _built_and_waiting(box)
    answers = iter([True, True, True, False])
    slept: list[float] = []
    with httpx.Client(timeout=5) as client:  # a built release waiting needs no central
        done = apply_update(
            _nobody(),
            settings=box,
            keys=KEYS,
            client=client,
            version="0.2.0",
            session_active=lambda: next(answers),
            session_wait_s=60,
            sleep=slept.append,
        )
    assert slept == [SESSION_POLL_S] * 3
    assert done.restart and box.layout.running_version() == "0.2.0"
    assert state_file.load(box.state_path).state is State.RESTARTING


def test_a_session_past_the_wait_leaves_the_release_waiting_unswitched(tmp_path: Path) -> None:
    box = _box(tmp_path)
    waiting = _built_and_waiting(box)
    slept: list[float] = []
    with httpx.Client(timeout=5) as client:
        done = apply_update(
            _nobody(),
            settings=box,
            keys=KEYS,
            client=client,
            version="0.2.0",
            session_active=lambda: True,
            session_wait_s=3 * SESSION_POLL_S,
            sleep=slept.append,
        )
    assert len(slept) == 3 and done.waiting and not done.restart and not done.failed
    assert box.layout.running_version() == "0.1.0"
    assert state_file.load(box.state_path) == waiting


@pytest.fixture
def screen(tmp_path: Path) -> Iterator[tuple[KioskApp, str]]:
    """The agent's real local API, as the root service finds it at ``[ui] listen``."""
    app = KioskApp(app_config(tmp_path / "kiosk"))
    app.start()
    server = ApiServer(app, "127.0.0.1:0")
    server.start()
    try:
        yield app, server.url.removeprefix("http://").rstrip("/")
    finally:
        server.stop()
        app.stop()


def _scan(app: KioskApp) -> None:
    app.handle_device_event(DeviceEvent(device="scanner", kind="identity", identity=card()))


def test_the_local_api_says_whether_a_citizen_is_in_a_session(
    screen: tuple[KioskApp, str],
) -> None:
    app, listen = screen
    assert session_in_use(listen) is False
    _scan(app)
    assert session_in_use(listen) is True
    app.session.clear()
    assert session_in_use(listen) is False
    assert session_in_use("") is False  # no screen served: nobody at it
    (port,) = free_ports(1)
    assert session_in_use(f"127.0.0.1:{port}") is False


def test_the_root_service_keeps_the_request_while_a_citizen_is_there(
    tmp_path: Path, screen: tuple[KioskApp, str]
) -> None:
    app, listen = screen
    box = _box(tmp_path)
    _built_and_waiting(box)
    config = stack.write_agent_config(
        tmp_path / "agent.toml", tmp_path / "agent.db", MqttSettings(port=9, username="k")
    )
    with config.open("a") as f:
        f.write(
            f'\n[ui]\nlisten = "{listen}"\n'
            f'\n[update]\nprefix = "{box.prefix}"\nstate_dir = "{box.state_path.parent}"\n'
            "session_wait_s = 0\n"
        )
    request = write_request(box.state_path.parent, "0.2.0", _nobody())
    assert request.name == REQUEST
    restarted = tmp_path / "restarted"
    argv = ["update", "apply", "--config", str(config), "--from-request", str(request)]
    argv += ["--restart-command", f"touch {restarted}"]

    _scan(app)
    first = CliRunner().invoke(main, argv)
    assert first.exit_code == 0, first.output
    assert "session" in first.output and request.exists()  # run again by aps-update.path
    assert box.layout.running_version() == "0.1.0" and not restarted.exists()

    app.session.clear()
    second = CliRunner().invoke(main, argv)
    assert second.exit_code == 0, second.output
    assert box.layout.running_version() == "0.2.0" and restarted.exists()
    assert not request.exists()  # settled: taken once

    third = CliRunner().invoke(main, argv)  # the path unit fires again: nothing to take
    assert third.exit_code == 0 and "no update request" in third.output
