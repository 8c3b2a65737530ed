"""The agent's device supervisor against the firmware mocks (invariant 6).

The printer is python-escpos's real Usb class on the emulated pyusb backend;
the scanner and card reader are real pyserial ports on ptys.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from central.mosquitto import MosquittoProcess
from drivers.cccd_qr import encode_cccd_qr
from drivers.identity import Identity
from drivers.printer import PrinterFault
from drivers.receipt import ReceiptData
from edge_agent.agent import Agent
from edge_agent.config import AgentConfig, DevicesSection
from edge_agent.devices import DeviceSupervisor
from firmware_mocks.card_reader import EmulatedCardReader
from firmware_mocks.cdc_scanner import EmulatedCdcScanner
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from sync.envelope import heartbeat_topic
from sync.mqtt_link import make_paho_client
from tests import identity as keyring
from tests.waiting import wait_until

ID_NUMBER = "087205012345"
CITIZEN = Identity(
    id_number=ID_NUMBER,
    old_id_number=None,
    full_name="Nguyễn Thị Ngọc Hường",
    date_of_birth=date(1990, 2, 1),
    sex="F",
    address="Phường 1, TP. Sa Đéc, Đồng Tháp",
    issue_date=date(2021, 8, 15),
    expiry_date=None,
    document_number=None,
    nationality=None,
    source="qr",
)


def fast(**devices: Any) -> DevicesSection:
    return DevicesSection(printer_poll_s=0.1, reopen_s=0.1, reader_check_s=0.5, **devices)


@pytest.fixture
def usb() -> EmulatedUsbPrinter:
    return EmulatedUsbPrinter()


def state(sup: DeviceSupervisor, name: str) -> str:
    return str(sup.health()[name]["state"])


def ticking_clock() -> Callable[[], datetime]:
    """A clock one second further on at every call: a reset ``since`` cannot hide."""
    ticks = itertools.count()
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    return lambda: start + timedelta(seconds=next(ticks))


def device_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aps.devices"]


@pytest.fixture
def printer_only(tmp_path: Path, usb: EmulatedUsbPrinter) -> Iterator[DeviceSupervisor]:
    sup = DeviceSupervisor(
        fast(printer="usb://04b8:0e15"), spool_dir=tmp_path / "spool", usb_backend=usb
    )
    with sup:
        wait_until(lambda: state(sup, "printer") == "ok", 10, "printer ok")
        yield sup


def test_printer_paper_out_shows_in_health_and_recovers_on_its_own(
    printer_only: DeviceSupervisor, usb: EmulatedUsbPrinter
) -> None:
    before = printer_only.health()["printer"]
    assert before["last_error"] is None and before["pending_receipts"] == 0
    usb.paper_end = True
    wait_until(lambda: state(printer_only, "printer") == "paper_out", 10, "paper_out")
    during = printer_only.health()["printer"]
    assert "paper" in during["last_error"]
    assert datetime.fromisoformat(during["since"]) >= datetime.fromisoformat(before["since"])
    usb.paper_end = False  # refilled: no call from anyone, the poll thread notices
    wait_until(lambda: state(printer_only, "printer") == "ok", 10, "ok again")
    assert printer_only.health()["printer"]["last_error"] == during["last_error"]  # history


def test_printer_unplug_and_replug(printer_only: DeviceSupervisor, usb: EmulatedUsbPrinter) -> None:
    opened = usb.open_count
    usb.unplug()
    wait_until(lambda: state(printer_only, "printer") == "unplugged", 10, "unplugged")
    assert "04b8:0e15" in printer_only.health()["printer"]["last_error"]
    usb.plug()
    wait_until(lambda: state(printer_only, "printer") == "ok", 10, "ok after replug")
    assert usb.open_count > opened  # a fresh connection, without restarting anything


def test_printer_without_usb_backend_is_logged_once_and_keeps_its_since(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kiosk image without libusb: the real pyusb finds no backend at every poll."""
    import usb.backend.libusb0
    import usb.backend.libusb1
    import usb.backend.openusb

    for module in (usb.backend.libusb1, usb.backend.libusb0, usb.backend.openusb):
        monkeypatch.setattr(module, "get_backend", lambda *args, **kwargs: None)
    caplog.set_level(logging.DEBUG)
    sup = DeviceSupervisor(
        fast(printer="usb://04b8:0e15"), spool_dir=tmp_path / "spool", clock=ticking_clock()
    )
    sup.poll_printer()
    first = sup.health()["printer"]
    for _ in range(20):  # 20 polls: 100 s at the default printer_poll_s
        sup.poll_printer()
    after = sup.health()["printer"]
    assert first["state"] == after["state"] == "error"
    assert after["since"] == first["since"]
    assert "libusb" in after["last_error"] and "usb://04b8:0e15" in after["last_error"]
    logged = device_log(caplog)
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].levelno == logging.ERROR and not logged[0].exc_info  # no traceback
    assert "libusb" in logged[0].getMessage()


def test_printer_state_changes_are_logged_once_each(
    tmp_path: Path, usb: EmulatedUsbPrinter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sup = DeviceSupervisor(
        fast(printer="usb://04b8:0e15"),
        spool_dir=tmp_path / "spool",
        usb_backend=usb,
        clock=ticking_clock(),
    )
    sup.poll_printer()
    assert state(sup, "printer") == "ok"
    usb.unplug()
    sup.poll_printer()
    gone = sup.health()["printer"]
    for _ in range(10):
        sup.poll_printer()
    assert sup.health()["printer"] == gone  # same state, same since, same error
    usb.plug()
    for _ in range(3):
        sup.poll_printer()
    assert state(sup, "printer") == "ok"
    messages = [r.getMessage() for r in device_log(caplog)]
    assert len(messages) == 3, messages
    assert "ok" in messages[0] and "unplugged" in messages[1] and "ok" in messages[2]


def test_missing_devices_are_reported_and_the_printer_is_still_served(
    tmp_path: Path, usb: EmulatedUsbPrinter
) -> None:
    cfg = fast(
        printer="usb://04b8:0e15",
        scanner=str(tmp_path / "no-scanner"),
        hid_scanner=str(tmp_path / "no-event0"),
        card_reader=str(tmp_path / "no-reader"),
    )
    with DeviceSupervisor(cfg, spool_dir=tmp_path / "spool", usb_backend=usb) as sup:
        for name in ("scanner", "hid_scanner", "card_reader"):
            wait_until(lambda n=name: state(sup, n) == "unplugged", 10, f"{name} unplugged")
            assert "no-" in str(sup.health()[name]["last_error"])
        wait_until(lambda: state(sup, "printer") == "ok", 10, "printer ok")
        usb.cover_open = True
        wait_until(lambda: state(sup, "printer") == "cover_open", 10, "cover_open")
    assert set(sup.health()) == {"printer", "scanner", "hid_scanner", "card_reader"}


def test_scanner_delivers_identity_and_is_reopened_after_unplug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    link = tmp_path / "ttyACM0"  # like a /dev/serial/by-id/ link that udev re-points
    first = EmulatedCdcScanner()
    link.symlink_to(first.port_path)
    with DeviceSupervisor(fast(scanner=str(link)), spool_dir=tmp_path / "spool") as sup:
        wait_until(lambda: state(sup, "scanner") == "ok", 10, "scanner open")
        first.scan(encode_cccd_qr(CITIZEN))
        event = sup.next_event(timeout=10)
        assert event is not None and event.kind == "identity" and event.identity is not None
        assert event.identity.full_name == "Nguyễn Thị Ngọc Hường"
        assert event.identity.id_number == ID_NUMBER

        first.close()  # cable out
        wait_until(lambda: state(sup, "scanner") == "unplugged", 10, "scanner unplugged")
        second = EmulatedCdcScanner()  # cable back: a new tty behind the same link
        link.unlink()
        link.symlink_to(second.port_path)
        wait_until(lambda: state(sup, "scanner") == "ok", 10, "scanner reopened")
        second.scan("000.00.14.H56-261126-1001")
        event = sup.next_event(timeout=10)
        assert event is not None and event.kind == "code"
        assert event.text == "000.00.14.H56-261126-1001"
        second.send_raw(b"\xff\xfe not utf-8\r\n")
        event = sup.next_event(timeout=10)
        assert event is not None and event.kind == "scan_rejected"
        second.close()
    assert ID_NUMBER not in caplog.text  # invariant 8: the number never reaches a log
    assert "********2345" in caplog.text


def test_silent_or_garbling_reader_does_not_stop_printer_polls(
    tmp_path: Path, usb: EmulatedUsbPrinter
) -> None:
    with EmulatedCardReader() as reader:
        cfg = fast(printer="usb://04b8:0e15", card_reader=reader.port_path)
        with DeviceSupervisor(cfg, spool_dir=tmp_path / "spool", usb_backend=usb) as sup:
            wait_until(lambda: state(sup, "card_reader") == "ok", 10, "reader ok")
            reader.faults.silent = True
            wait_until(lambda: state(sup, "card_reader") == "not_answering", 15, "silence seen")
            assert "not answering" in str(sup.health()["card_reader"]["last_error"])
            # While the reader thread waits on a silent reader, the printer keeps being
            # polled: its status requests go on and a fault shows up.
            polled = len(usb.status_queries)
            wait_until(lambda: len(usb.status_queries) >= polled + 9, 10, "printer polls")
            usb.paper_end = True
            wait_until(lambda: state(sup, "printer") == "paper_out", 10, "paper_out")

            reader.faults.silent = False
            reader.send_raw(b"\x55\xaa line noise \x00\xff")
            wait_until(lambda: state(sup, "card_reader") == "garbled", 10, "garbage seen")
            polled = len(usb.status_queries)
            wait_until(lambda: len(usb.status_queries) >= polled + 9, 10, "printer polls")
            wait_until(lambda: state(sup, "card_reader") == "ok", 15, "reader ok again")

            reader.insert_card(CITIZEN)
            kinds = []
            while "identity" not in kinds:
                event = sup.next_event(timeout=10)
                assert event is not None, kinds
                kinds.append(event.kind)
            assert kinds == ["card_inserted", "identity"]
            assert state(sup, "printer") == "paper_out"


def test_reader_unplugged_is_reopened(tmp_path: Path) -> None:
    link = tmp_path / "reader"
    first = EmulatedCardReader()
    first.start()
    link.symlink_to(first.port_path)
    with DeviceSupervisor(fast(card_reader=str(link)), spool_dir=tmp_path / "spool") as sup:
        wait_until(lambda: state(sup, "card_reader") == "ok", 10, "reader ok")
        first.close()
        wait_until(lambda: state(sup, "card_reader") == "unplugged", 15, "reader unplugged")
        with EmulatedCardReader() as second:
            link.unlink()
            link.symlink_to(second.port_path)
            wait_until(lambda: state(sup, "card_reader") == "ok", 15, "reader back")
            second.insert_card(CITIZEN)
            event = sup.next_event(timeout=10)
            assert event is not None and event.kind == "card_inserted"


def test_heartbeat_carries_device_health(tmp_path: Path, usb: EmulatedUsbPrinter) -> None:
    cfg = AgentConfig.model_validate(
        {
            "kiosk": {"id": "k-test", "agency": "000.00.14.H56", "slot": 1},
            "agent": {"database": str(tmp_path / "k.db"), "receipts_dir": str(tmp_path / "r")},
            "devices": {"printer": "usb://04b8:0e15", "printer_poll_s": 0.1},
            "identity": keyring.write_keys(tmp_path / "keys").agent_section(),
        }
    )
    sup = DeviceSupervisor(
        cfg.devices, spool_dir=cfg.agent.receipts_dir, usb_backend=usb, clock=ticking_clock()
    )
    agent = Agent(cfg, devices=sup)
    with sup:
        wait_until(lambda: state(sup, "printer") == "ok", 10, "printer ok")
        assert agent.app._heartbeat_fields()["devices"]["printer"]["pending_receipts"] == 0
        usb.paper_end = True
        wait_until(
            lambda: agent.app._heartbeat_fields()["devices"]["printer"]["state"] == "paper_out",
            10,
            "paper_out in the heartbeat",
        )
        assert sup.printer is not None
        with pytest.raises(PrinterFault):
            sup.printer.print_receipt(receipt("000.00.14.H56-261201-1001"))
        fields = agent.app._heartbeat_fields()
        printer = fields["devices"]["printer"]
        # The receipt that did not print is counted, the fault is named, and the
        # state's start is the moment the paper ran out, not the last poll.
        assert printer["pending_receipts"] == 1
        assert "paper" in printer["last_error"]
        polled = len(usb.status_queries)
        wait_until(lambda: len(usb.status_queries) >= polled + 9, 10, "more printer polls")
        assert agent.app._heartbeat_fields()["devices"]["printer"]["since"] == printer["since"]
    assert {"uptime_s", "agent_version"} <= set(fields)
    agent.sync.outbox.close()


def receipt(code: str) -> ReceiptData:
    return ReceiptData(
        office_name="UBND Phường 1",
        procedure_name="Chứng thực chữ ký",
        dossier_code=code,
        citizen_name=CITIZEN.full_name,
        id_number=ID_NUMBER,
        filed_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        due=None,
        fee_vnd=0,
        tracking_url_or_code=code,
        payment=None,
        hotline="",
    )


def test_device_health_reaches_the_broker_in_heartbeats(
    broker: MosquittoProcess, tmp_path: Path, usb: EmulatedUsbPrinter
) -> None:
    cfg = AgentConfig.model_validate(
        {
            "kiosk": {"id": "k-hb", "agency": "000.00.14.H56", "slot": 1},
            "agent": {"database": str(tmp_path / "k.db"), "receipts_dir": str(tmp_path / "r")},
            "mqtt": dataclasses.asdict(broker.kiosk("k-hb")),
            "sync": {"heartbeat_interval_s": 1},
            "devices": {"printer": "usb://04b8:0e15", "printer_poll_s": 0.1},
            "identity": keyring.write_keys(tmp_path / "keys").agent_section(),
        }
    )
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with lock:
            seen.append(json.loads(msg.payload))

    watcher = broker.collector("aps-hb-watcher")
    sub = make_paho_client("aps-hb-watcher", watcher)
    sub.on_message = on_message
    sub.connect("127.0.0.1", watcher.port)
    sub.subscribe(heartbeat_topic("k-hb"), qos=0)
    sub.loop_start()
    sup = DeviceSupervisor(cfg.devices, spool_dir=cfg.agent.receipts_dir, usb_backend=usb)
    agent = Agent(cfg, devices=sup)
    usb.paper_end = True
    agent.sync.start()
    try:
        with sup:

            def paper_out_upstream() -> bool:
                with lock:
                    return any(
                        m.get("devices", {}).get("printer", {}).get("state") == "paper_out"
                        for m in seen
                    )

            wait_until(paper_out_upstream, 20, "a heartbeat saying paper_out")
    finally:
        agent.sync.stop()
        sub.loop_stop()
        sub.disconnect()
    with lock:
        last = seen[-1]["devices"]["printer"]
    assert set(last) == {"state", "last_error", "since", "pending_receipts"}
