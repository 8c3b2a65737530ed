"""``aps-agent doctor``: read-only diagnosis with the fix for each problem found."""

from __future__ import annotations

import grp
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from central.mosquitto import MosquittoProcess, refused_port
from edge_agent.cli import main
from edge_agent.config import AgentConfig, load_agent_config
from edge_agent.doctor import (
    check_broker_tls,
    check_certificate,
    check_device_node,
    check_devices,
    check_queue,
)
from edge_agent.host_checks import Policy
from firmware_mocks.cdc_scanner import EmulatedCdcScanner
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from sync.mqtt_link import MqttSettings
from sync.outbox import Outbox
from tests.selftest_kiosk import (
    KIOSK,
    USER,
    DateServer,
    KioskFiles,
    kiosk_files,
    make_certificate,
    policy,
    policy_args,
)
from tests.stack import dossier_body


def _files(tmp_path: Path, mqtt: MqttSettings, **kw: object) -> tuple[KioskFiles, AgentConfig]:
    files = kiosk_files(tmp_path / "kiosk", mqtt, **kw)  # type: ignore[arg-type]
    return files, load_agent_config(files.config)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_healthy_kiosk_passes_and_nothing_is_written(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    with EmulatedCdcScanner() as scanner, DateServer(offset_s=0) as clock:
        files, cfg = _files(
            tmp_path,
            broker.kiosk(KIOSK),
            central_url=clock.url,
            devices={"scanner": scanner.port_path, "printer": "usb://04b8:0e15"},
        )
        ob = Outbox(cfg.agent.database, KIOSK)
        ob.add("dossier", dossier_body(1))
        ob.close()
        for leftover in files.data.glob("kiosk.db-*"):  # as after a clean stop of the agent
            leftover.unlink()
        before = _digest(cfg.agent.database)
        args = ["doctor", "--config", str(files.config), *policy_args()]
        text = CliRunner().invoke(main, [*args, "--lang", "en"], obj=_hardware())
        as_json = CliRunner().invoke(main, [*args, "--json"], obj=_hardware())
        after = _digest(cfg.agent.database)
    assert text.exit_code == 0, text.output
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    # The test CA issues certificates for 2 days: a warning, not a failure.
    assert statuses == {
        "config": "ok",
        "identity": "ok",
        "disk": "ok",
        "permissions": "ok",
        "printer": "ok",
        "scanner": "ok",
        "broker_tls": "ok",
        "central_https": "ok",
        "clock": "ok",
        "certificate": "warn",
        "queue": "ok",
    }, doc
    assert doc["overall"] == "warn"
    assert "1 record(s) waiting to be sent" in text.stdout
    assert "Renew it soon" in text.stdout
    assert before == after  # read-only: not one byte of the database changed
    # (SQLite may leave -wal/-shm beside a reader, as for outbox status)


def _hardware() -> object:
    from edge_agent.selftest import Hardware

    return Hardware(usb_backend=EmulatedUsbPrinter())


def test_unloadable_config_is_the_one_failed_check(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("[kiosk]\nid = 'k-1'\nagency = '000.00.14.H56'\nslot = 12\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["doctor", "--config", str(bad), "--json", "--lang", "en"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["overall"] == "fail" and [c["name"] for c in doc["checks"]] == ["config"]
    assert "kiosk.slot" in doc["checks"][0]["fix"]


def test_config_warning_is_reported_with_check_config(tmp_path: Path) -> None:
    files = kiosk_files(tmp_path / "kiosk", MqttSettings(port=9))
    text = files.config.read_text(encoding="utf-8").replace(
        'bank_bin = "970436"\naccount = "0011002345678"\n', ""
    )
    files.config.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["doctor", "--config", str(files.config), *policy_args()])
    assert "Tệp cấu hình: CẢNH BÁO" in result.stdout
    assert "aps-agent check-config" in result.stdout


# -- certificates -------------------------------------------------------------------------
def _cert_cfg(tmp_path: Path, not_before: datetime, not_after: datetime) -> AgentConfig:
    ca, crt, key = make_certificate(tmp_path / "pki", not_before=not_before, not_after=not_after)
    return _files(tmp_path, MqttSettings(port=9, tls_ca=ca, tls_cert=crt, tls_key=key))[1]


def test_expired_certificate_fails_with_renewal(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    cfg = _cert_cfg(tmp_path, now - timedelta(days=400), now - timedelta(days=2))
    r = check_certificate(cfg)
    assert r.status == "fail" and r.seen.en.startswith("The certificate expired on ")
    assert r.fix is not None and "aps-agent provision" in r.fix.en


def test_certificate_not_yet_valid_fails_pointing_at_the_clock(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    cfg = _cert_cfg(tmp_path, now + timedelta(days=3), now + timedelta(days=400))
    r = check_certificate(cfg)
    assert r.status == "fail" and "clock" in r.seen.en
    assert r.fix is not None and "timedatectl" in r.fix.en


def test_certificate_days_left(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    cfg = _cert_cfg(tmp_path, now - timedelta(days=1), now + timedelta(days=200, hours=1))
    r = check_certificate(cfg)
    assert r.status == "ok" and r.seen.en.startswith("The certificate has 200 days left")
    r = check_certificate(cfg, now=now + timedelta(days=180))
    assert r.status == "warn" and "20 days left" in r.seen.en


def test_certificate_from_another_ca_fails(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    _, crt, key = make_certificate(
        tmp_path / "a", not_before=now - timedelta(days=1), not_after=now + timedelta(days=90)
    )
    other_ca, _, _ = make_certificate(
        tmp_path / "b", not_before=now - timedelta(days=1), not_after=now + timedelta(days=90)
    )
    _, cfg = _files(tmp_path, MqttSettings(port=9, tls_ca=other_ca, tls_cert=crt, tls_key=key))
    r = check_certificate(cfg)
    assert (
        r.status == "fail"
        and r.seen.en == "The kiosk's certificate was not issued by this fleet's CA."
    )


# -- broker -------------------------------------------------------------------------------
def test_broker_down_fails(tmp_path: Path) -> None:
    sock, port = refused_port()
    try:
        _, cfg = _files(tmp_path, MqttSettings(port=port))
        r = check_broker_tls(cfg, timeout_s=2)
    finally:
        sock.close()
    assert r.status == "fail" and r.seen.en.startswith("Cannot connect to the broker")


def test_broker_refuses_a_certificate_of_another_ca(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    now = datetime.now(UTC)
    _, crt, key = make_certificate(
        tmp_path / "pki", not_before=now - timedelta(days=1), not_after=now + timedelta(days=90)
    )
    real = broker.kiosk(KIOSK)
    _, cfg = _files(
        tmp_path, MqttSettings(port=real.port, tls_ca=real.tls_ca, tls_cert=crt, tls_key=key)
    )
    r = check_broker_tls(cfg, timeout_s=5)
    assert r.status == "fail" and r.seen.en.endswith("refused this kiosk's certificate.")


def test_plain_tcp_broker_is_a_warning(tmp_path: Path, broker: MosquittoProcess) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=broker.local_port))
    r = check_broker_tls(cfg, timeout_s=2)
    assert r.status == "warn" and r.seen.en.endswith("but without encryption.")


# -- devices ------------------------------------------------------------------------------
def test_devices_present_missing_and_unusable(tmp_path: Path) -> None:
    files, cfg = _files(
        tmp_path,
        MqttSettings(port=9),
        devices={"card_reader": str(tmp_path / "no-such-tty"), "printer": "usb://04b8:0e15"},
    )
    usb = EmulatedUsbPrinter()
    usb.unplug()
    by = {r.name: r for r in check_devices(cfg, policy(files.config), usb)}
    assert (
        by["card_reader"].status == "fail"
        and by["card_reader"].seen.en == "The device is not there."
    )
    assert by["printer"].status == "fail" and by["printer"].seen.en == "The printer is not there."
    usb.plug()
    assert check_devices(cfg, policy(files.config), usb)[0].status == "ok"


def test_device_node_the_service_user_may_not_open(tmp_path: Path) -> None:
    """A node only its owner may use, checked for another account: the fix names the group."""
    node = tmp_path / "ttyFAKE"
    node.write_bytes(b"")
    node.chmod(0o600)
    other = "nobody" if USER != "nobody" else "root"
    r = check_device_node("scanner", str(node), Policy(service_user=other))
    assert r.status == "fail"
    assert r.seen.en == f"The device is there, but the account {other} may not use it."
    assert (
        r.fix is not None
        and f"usermod -aG {grp.getgrgid(node.stat().st_gid).gr_name} {other}" in r.fix.en
    )
    node.chmod(0o666)
    assert check_device_node("scanner", str(node), Policy(service_user=other)).status == "ok"


# -- queue --------------------------------------------------------------------------------
def test_queue_states(tmp_path: Path) -> None:
    _, cfg = _files(tmp_path, MqttSettings(port=9))
    r = check_queue(cfg)
    assert r.status == "warn" and r.seen.en == "No database yet: the agent has never run."
    assert not cfg.agent.database.exists()  # never created by the doctor
    ob = Outbox(cfg.agent.database, KIOSK)
    first = ob.add("dossier", dossier_body(1))
    ob.add("dossier", dossier_body(2))
    ob.close()
    r = check_queue(cfg)
    assert r.status == "ok" and r.seen.en.startswith("2 record(s) waiting to be sent")
    r = check_queue(cfg, now=datetime.now(UTC) + timedelta(hours=3))
    assert r.status == "warn" and "the oldest for 3 h" in r.seen.en
    ob = Outbox(cfg.agent.database, KIOSK)
    ob.mark_rejected([(first.id, "schema")])
    ob.close()
    r = check_queue(cfg)
    assert r.status == "warn" and "1 refused by central" in r.seen.en
    assert r.fix is not None and "aps-agent outbox status" in r.fix.en
