"""``aps-agent selftest``: every check passing on emulated devices, and failing for its cause.

The devices are the firmware mocks behind the real drivers (the printer below
pyusb, the card reader and the scanner on ptys, the camera at the frame
source), the broker a real mosquitto with the shipped configuration (the kiosk
logs in with its certificate), central a real collector + downlink service
answering the state request, central's clock a tiny HTTP server whose ``Date``
is what the test says.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.mosquitto import MosquittoProcess, refused_port
from drivers.cccd_qr import encode_cccd_qr
from edge_agent.check_report import CheckResult, Words, duration, render_table, size
from edge_agent.cli import main
from edge_agent.config import AgentConfig, load_agent_config
from edge_agent.selftest import (
    Hardware,
    check_broker,
    check_camera,
    check_card_reader,
    check_printer,
    check_scanner,
    run_selftest,
)
from firmware_mocks.card_reader import EmulatedCardReader
from firmware_mocks.cdc_scanner import EmulatedCdcScanner
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from firmware_mocks.v4l2_camera import EmulatedV4l2Camera
from sync.mqtt_link import MqttSettings
from tests.downlink_stack import Central, start_central
from tests.kiosk import card
from tests.selftest_kiosk import (
    KIOSK,
    DateServer,
    KioskFiles,
    kiosk_files,
    policy,
    policy_args,
)

ID_NUMBER = "087205001234"
MASKED = "********1234"
#: What a technician cannot read aloud: epoch-like numbers, hex runs, ULIDs.
EPOCH = re.compile(r"\b1[0-9]{9}(\.[0-9]+)?\b")
HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-f]{8,}\b")
ULID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b")
VIETNAMESE = re.compile(r"[ạảãàáâậầấẩẫăắằặẳẵđêềếểễệôồốổỗộơờớởỡợưừứửữựỳýỵỷỹ]", re.IGNORECASE)


@dataclass
class Devices:
    usb: EmulatedUsbPrinter
    reader: EmulatedCardReader
    scanner: EmulatedCdcScanner
    camera: EmulatedV4l2Camera

    def config(self) -> dict[str, str]:
        return {
            "printer": "usb://04b8:0e15",
            "card_reader": self.reader.port_path,
            "scanner": self.scanner.port_path,
            "document_camera": "v4l2:///dev/video0?warmup=0",
        }

    def hardware(self) -> Hardware:
        return Hardware(usb_backend=self.usb, camera_source=self.camera)


@pytest.fixture
def devices() -> Iterator[Devices]:
    with EmulatedCardReader() as reader, EmulatedCdcScanner() as scanner:
        yield Devices(
            usb=EmulatedUsbPrinter(),
            reader=reader,
            scanner=scanner,
            camera=EmulatedV4l2Camera(width=640, height=480),
        )


@pytest.fixture
def central(broker: MosquittoProcess, tmp_path: Path) -> Iterator[Central]:
    c = start_central(broker, tmp_path / "central.db")
    yield c
    c.stop()


class Technician:
    """Does what the prompts ask, on the emulated devices, and remembers what it heard."""

    def __init__(self, devices: Devices, *, card_on: bool = True, scan: str | None = None) -> None:
        self.devices, self.card_on, self.scan = devices, card_on, scan
        self.heard: list[Words] = []

    def __call__(self, words: Words) -> None:
        self.heard.append(words)
        if "thẻ căn cước lên đầu đọc" in words.vi and self.card_on:
            self.devices.reader.insert_card(card(number=ID_NUMBER))
        elif "Hãy quét" in words.vi and self.scan is not None:
            self.devices.scanner.scan(self.scan)


def _files(
    tmp_path: Path, mqtt: MqttSettings, devices: Devices | None = None, **kw: object
) -> tuple[KioskFiles, AgentConfig]:
    files = kiosk_files(
        tmp_path / "kiosk", mqtt, devices=devices.config() if devices else None, **kw
    )  # type: ignore[arg-type]
    return files, load_agent_config(files.config)


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def _assert_readable(text: str) -> None:
    assert not EPOCH.search(text), text
    assert not HEX.search(text), text
    assert not ULID.search(text), text


# -- the whole run ------------------------------------------------------------------------
def test_every_check_passes_and_the_vietnamese_report_reads_aloud(
    tmp_path: Path, broker: MosquittoProcess, central: Central, devices: Devices
) -> None:
    with DateServer(offset_s=0) as clock:
        files, cfg = _files(tmp_path, broker.kiosk(KIOSK), devices, central_url=clock.url)
        qr = encode_cccd_qr(card(number=ID_NUMBER))
        technician = Technician(devices, scan=qr)
        results = run_selftest(
            cfg,
            policy=policy(files.config),
            hardware=devices.hardware(),
            timeout_s=20,
            say=technician,
        )
    by = _by_name(results)
    assert {n: r.status for n, r in by.items()} == {
        "identity": "ok",
        "printer": "ok",
        "card_reader": "ok",
        "scanner": "ok",
        "document_camera": "ok",
        "broker": "ok",
        "clock": "ok",
        "disk": "ok",
        "permissions": "ok",
    }, [r for r in results if r.status != "ok"]
    # The slip went through the real driver to the printer; no slip waits for a reprint.
    assert len(devices.usb.received) > 1000
    assert not (files.data / "receipts").exists()
    # What was read is shown masked as on paper, never whole.
    assert (
        MASKED in by["card_reader"].seen.vi and "Nguyễn Thị Ngọc Hường" in by["card_reader"].seen.vi
    )
    assert MASKED in by["scanner"].seen.vi
    table = render_table(results, "vi", Words(vi="Tự kiểm tra", en="Self-test"))
    assert ID_NUMBER not in table and MASKED in table
    assert "Máy in phiếu: ĐẠT" in table and "Kết quả chung: ĐẠT" in table
    assert VIETNAMESE.search(table)
    _assert_readable(table)
    # The technician was asked for a card, then a scan, with the wait in words.
    asked = [w.vi for w in technician.heard]
    assert len(asked) == 2 and "20 giây" in asked[0] and "20 giây" in asked[1]


def test_cli_passes_exits_0_and_json_parses(
    tmp_path: Path, broker: MosquittoProcess, central: Central, devices: Devices
) -> None:
    devices.reader.insert_card(card(number=ID_NUMBER))  # on the reader before the prompt
    stop = threading.Event()

    def keep_scanning() -> None:  # a technician scanning until the test hears it
        while not stop.wait(0.2):
            devices.scanner.scan("HS-2026-0001")

    with DateServer(offset_s=0) as clock:
        files, _ = _files(tmp_path, broker.kiosk(KIOSK), devices, central_url=clock.url)
        scanning = threading.Thread(target=keep_scanning, daemon=True)
        scanning.start()
        try:
            args = ["selftest", "--config", str(files.config), *policy_args(), "--timeout-s", "20"]
            text = CliRunner().invoke(main, [*args, "--lang", "en"], obj=devices.hardware())
            as_json = CliRunner().invoke(main, [*args, "--json"], obj=devices.hardware())
        finally:
            stop.set()
            scanning.join(5)
    assert text.exit_code == 0, text.output
    assert "Receipt printer: PASS" in text.stdout and "Overall: PASS" in text.stdout
    assert "Scanned a code of 12 characters." in text.stdout
    _assert_readable(text.stdout)
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    assert doc["overall"] == "ok"
    assert {c["name"]: c["status"] for c in doc["checks"]}["broker"] == "ok"
    assert all(c["status"] == "ok" for c in doc["checks"]), doc


def test_cli_exits_1_when_a_check_fails_and_says_the_fix(tmp_path: Path) -> None:
    """Broker down (nothing listens), not provisioned: exit 1, both fixes in words."""
    sock, port = refused_port()
    try:
        files = kiosk_files(
            tmp_path / "kiosk", MqttSettings(port=port, username=KIOSK), identity=False
        )
        result = CliRunner().invoke(
            main,
            ["selftest", "--config", str(files.config), *policy_args(), "--timeout-s", "2"],
        )
        as_json = CliRunner().invoke(
            main,
            [
                "selftest", "--config", str(files.config), *policy_args(), "--timeout-s", "2",
                "--json", "--lang", "en",
            ],
        )  # fmt: skip
    finally:
        sock.close()
    assert result.exit_code == 1, result.output
    assert "Danh tính kiosk: LỖI" in result.stdout
    assert "aps-agent provision" in result.stdout
    assert "Kết nối máy chủ trung tâm: LỖI" in result.stdout
    assert "Kết quả chung: CÓ LỖI" in result.stdout
    _assert_readable(result.stdout)
    doc = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and doc["overall"] == "fail"
    broker_check = next(c for c in doc["checks"] if c["name"] == "broker")
    assert broker_check["status"] == "fail" and broker_check["seen"].startswith("Cannot connect")


def test_unloadable_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("[kiosk]\nid = 'X'\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["selftest", "--config", str(bad)])
    assert result.exit_code == 1
    assert "kiosk.id" in result.output


# -- the printer --------------------------------------------------------------------------
def test_printer_unplugged_fails_with_the_cable_fix(tmp_path: Path, devices: Devices) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9), devices)
    devices.usb.unplug()
    r = check_printer(cfg, devices.hardware())
    assert r.status == "fail" and r.seen.vi == "Không tìm thấy máy in."
    assert r.fix is not None and "cáp USB" in r.fix.vi
    assert devices.usb.received == bytearray()


def test_printer_out_of_paper_prints_nothing(tmp_path: Path, devices: Devices) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9), devices)
    devices.usb.paper_end = True
    r = check_printer(cfg, devices.hardware())
    assert r.status == "fail" and r.seen.en == "The printer is out of paper."
    assert devices.usb.received == bytearray()


# -- card reader and scanner --------------------------------------------------------------
def test_no_card_within_the_timeout_fails(tmp_path: Path, devices: Devices) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9), devices)
    technician = Technician(devices, card_on=False)
    r = check_card_reader(cfg, interactive=True, timeout_s=1, say=technician)
    assert r.status == "fail"
    assert r.seen.vi == "Không có thẻ nào được đặt lên trong 1 giây."
    assert len(technician.heard) == 1


def test_card_reader_unplugged_fails(tmp_path: Path, devices: Devices) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9), devices)
    devices.reader.close()
    r = check_card_reader(cfg, interactive=True, timeout_s=1, say=Technician(devices))
    assert r.status == "fail" and r.seen.en in (
        "The card reader cannot be opened.",
        "The card reader does not answer.",
    )


def test_card_reader_skip_interactive_only_asks_its_status(
    tmp_path: Path, devices: Devices
) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9), devices)
    technician = Technician(devices)
    r = check_card_reader(cfg, interactive=False, timeout_s=1, say=technician)
    assert r.status == "ok" and "--skip-interactive" in r.seen.vi
    assert technician.heard == []


def test_nothing_scanned_within_the_timeout_fails(tmp_path: Path, devices: Devices) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9), devices)
    r = check_scanner(cfg, interactive=True, timeout_s=1, say=Technician(devices, scan=None))
    assert r.status == "fail" and r.seen.en == "Nothing was scanned within 1 s."


def test_scanned_id_card_is_shown_masked(tmp_path: Path, devices: Devices) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9), devices)
    qr = encode_cccd_qr(card(number=ID_NUMBER))
    r = check_scanner(cfg, interactive=True, timeout_s=5, say=Technician(devices, scan=qr))
    assert r.status == "ok" and MASKED in r.seen.en and ID_NUMBER not in r.seen.en


# -- camera -------------------------------------------------------------------------------
def test_camera_takes_one_frame(tmp_path: Path, devices: Devices) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9), devices)
    r = check_camera(cfg, devices.hardware(), timeout_s=5)
    assert r.status == "ok" and "640 x 480" in r.seen.vi
    assert devices.camera.frames_read == 1


def test_camera_missing_fails(tmp_path: Path, devices: Devices) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9), devices)
    devices.camera.present = False
    r = check_camera(cfg, devices.hardware(), timeout_s=5)
    assert r.status == "fail" and r.seen.en == "The camera took no picture."


# -- broker and central -------------------------------------------------------------------
def test_broker_up_but_central_down_fails_after_the_timeout(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    _, cfg = _files(tmp_path, broker.kiosk(KIOSK))
    trip = check_broker(cfg, timeout_s=2)
    assert trip.result.status == "fail"
    assert trip.result.seen.en == "Connected to the broker, but central did not answer within 2 s."


def test_broker_down_fails(tmp_path: Path, broker: MosquittoProcess) -> None:
    settings = broker.kiosk(KIOSK)
    _, cfg = _files(tmp_path, settings)
    broker.stop()
    trip = check_broker(cfg, timeout_s=2)
    assert trip.result.status == "fail" and trip.result.seen.en.startswith("Cannot connect")


def test_an_unenrolled_certificate_is_refused_by_the_broker(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """A certificate of the CA for a kiosk the broker does not know: no login."""
    _, cfg = _files(tmp_path, broker.kiosk_certificate("k-stranger-01"))
    trip = check_broker(cfg, timeout_s=3)
    assert trip.result.status == "fail"
    assert "it is not enrolled or was revoked" in trip.result.seen.en


def test_round_trip_carries_centrals_clock_when_not_provisioned(
    tmp_path: Path, broker: MosquittoProcess, central: Central
) -> None:
    files, cfg = _files(tmp_path, broker.kiosk(KIOSK), identity=False)
    results = _by_name(run_selftest(cfg, policy=policy(files.config), timeout_s=10))
    assert results["broker"].status == "ok"
    assert results["clock"].status == "ok"
    assert "central's state reply" in (results["clock"].detail or "")


# -- clock, disk, files -------------------------------------------------------------------
def _host_only(tmp_path: Path, **kw: object) -> tuple[KioskFiles, dict[str, CheckResult]]:
    files, cfg = _files(tmp_path, MqttSettings(port=9), **kw)  # type: ignore[arg-type]
    return files, _by_name(run_selftest(cfg, policy=policy(files.config), timeout_s=2))


def test_clock_off_by_two_minutes_fails(tmp_path: Path) -> None:
    with DateServer(offset_s=-120) as clock:
        _, results = _host_only(tmp_path, central_url=clock.url)
    r = results["clock"]
    assert r.status == "fail"
    assert r.seen.vi.startswith("Đồng hồ nhanh 2 phút") and "timedatectl" in (r.fix or r.seen).vi


def test_clock_within_the_bound_passes(tmp_path: Path) -> None:
    with DateServer(offset_s=5) as clock:
        _, results = _host_only(tmp_path, central_url=clock.url)
    assert results["clock"].status == "ok"


def test_low_disk_fails(tmp_path: Path) -> None:
    _, results = _host_only(tmp_path, sync={"min_free_disk_mb": 10**12})
    r = results["disk"]
    assert r.status == "fail" and r.seen.vi.startswith("Chỉ còn trống")
    assert " GB" in r.seen.vi or " MB" in r.seen.vi


def test_signing_key_readable_by_others_fails_permissions_and_identity(tmp_path: Path) -> None:
    files, cfg = _files(tmp_path, MqttSettings(port=9), central_url="http://127.0.0.1:9/")
    files.signing_key.chmod(0o644)
    results = _by_name(run_selftest(cfg, policy=policy(files.config), timeout_s=2))
    assert results["permissions"].status == "fail"
    assert (
        f"chmod 600 {files.signing_key}" in (results["permissions"].fix or Words(vi="", en="")).en
    )
    assert results["identity"].status == "fail"
    assert "chmod 600" in (results["identity"].fix or Words(vi="", en="")).vi


def test_world_readable_config_and_open_data_dir_fail(tmp_path: Path) -> None:
    files, cfg = _files(tmp_path, MqttSettings(port=9))
    files.config.chmod(0o644)
    files.data.chmod(0o755)
    r = _by_name(run_selftest(cfg, policy=policy(files.config), timeout_s=2))["permissions"]
    assert r.status == "fail"
    assert r.fix is not None and "chmod 640" in r.fix.en and "chmod 700" in r.fix.en


def test_missing_identity_says_run_provision(tmp_path: Path) -> None:
    _, results = _host_only(tmp_path, identity=False)
    r = results["identity"]
    assert r.status == "fail" and r.fix is not None and "aps-agent provision" in r.fix.en


# -- words --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "vi", "en"),
    [(3, "3 giây", "3 s"), (0.24, "0,2 giây", "0.2 s"), (0.01, "dưới 0,1 giây", "under 0.1 s"),
     (45, "45 giây", "45 s"),
     (600, "10 phút", "10 min"), (3 * 86400, "3 ngày", "3 days")],
)  # fmt: skip
def test_durations_are_words(seconds: float, vi: str, en: str) -> None:
    assert duration(seconds, "vi") == vi and duration(seconds, "en") == en


def test_sizes_are_mb_or_gb() -> None:
    assert size(64 * 1024 * 1024, "vi") == "64 MB"
    assert size(int(12.3 * 1024**3), "vi") == "12,3 GB"
    assert size(int(12.3 * 1024**3), "en") == "12.3 GB"
