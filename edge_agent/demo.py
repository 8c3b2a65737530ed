"""``aps-demo``: the whole stack on one machine, with a scripted citizen.

Starts a private mosquitto on a free loopback port, central and one kiosk
agent as separate processes (exactly what the systemd units run), then a
scripted citizen files dossiers at the kiosk; half of them while the kiosk's
link is down. Everything it writes goes under ``demo-out/``. The last line
printed is a JSON summary read from the two databases, not from counters,
plus the number of receipt images written.

The kiosk's devices are emulated in this process, on the citizen's side of the
glass: a USB receipt printer (:class:`firmware_mocks.usb_printer.EmulatedUsbPrinter`,
driven by python-escpos's real ``Usb`` class through pyusb) and a QR scanner in
USB-CDC mode on a pty (:class:`firmware_mocks.cdc_scanner.EmulatedCdcScanner`,
read with pyserial). Each citizen scans the QR of their CCCD card; the
:class:`edge_agent.devices.DeviceSupervisor` reads it into an ``Identity``; the
dossier is filed with it and committed; only then is the receipt printed
(:func:`edge_agent.receipts.file_and_print`). What reached the printer is kept
as ``demo-out/receipts/<dossier code>.bin`` and drawn as ``.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import click

from central.mosquitto import MosquittoProcess, mqtt_toml
from drivers.cccd_qr import encode_cccd_qr
from drivers.identity import Identity
from edge_agent.agent import open_desk
from edge_agent.config import AgentConfig, DevicesSection, load_agent_config
from edge_agent.devices import DeviceSupervisor
from edge_agent.dossiers import Applicant, DossierDesk, Filed
from edge_agent.receipts import file_and_print
from firmware_mocks.cdc_scanner import EmulatedCdcScanner
from firmware_mocks.escpos_render import save_receipt
from firmware_mocks.usb_printer import EmulatedUsbPrinter

KIOSK_ID = "sadec-p1-k01"

CITIZENS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "Nguyễn Thị Ngọc Hường",
        "1.004873",
        {"muc_dich": "Đăng ký kết hôn", "tinh_trang": "Chưa kết hôn"},
    ),
    ("Đặng Quốc Việt", "2.000815", {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 2, "so_ban": 3}),
    (
        "Trần Văn Ổn",
        "1.001193",
        {
            "ho_ten_tre": "Trần Gia Bảo",
            "ngay_sinh_tre": "2026-11-20",
            "gioi_tinh_tre": "Nam",
            "noi_sinh": "Bệnh viện Sa Đéc",
            "quan_he": "Cha",
        },
    ),
    ("Lê Thị Thuỷ Tiên", "2.000884", {"ten_van_ban": "Giấy uỷ quyền"}),
    (
        "Phạm Hữu Lộc",
        "1.001022",
        {"ho_ten_nguoi_duoc_nhan": "Phạm Minh Khôi", "quan_he": "Cha nhận con"},
    ),
    (
        "Huỳnh Thị Mỹ Duyên",
        "1.000656",
        {"ho_ten_nguoi_mat": "Huỳnh Văn Tư", "ngay_mat": "2026-11-24", "quan_he": "Con"},
    ),
]


def _write_configs(out: Path, broker: MosquittoProcess) -> tuple[Path, Path]:
    central = out / "central.toml"
    central.write_text(
        f'[central]\ndatabase = "{out / "central.db"}"\n\n'
        f"{mqtt_toml(broker.collector('aps-collector-demo'))}\n"
        '[collector]\nclient_id = "aps-collector-demo"\n',
        encoding="utf-8",
    )
    kiosk = out / "kiosk.toml"
    kiosk.write_text(
        f'[kiosk]\nid = "{KIOSK_ID}"\nagency = "000.00.14.H56"\nslot = 1\n'
        'office_name = "UBND Phường 1, TP. Sa Đéc"\nhotline = "0277 3861 234"\n\n'
        f'[agent]\ndatabase = "{out / "kiosk.db"}"\nreceipts_dir = "{out / "receipt-spool"}"\n\n'
        f"{mqtt_toml(broker.kiosk(KIOSK_ID))}\n"
        "[sync]\nack_timeout_s = 5\nreconnect_min_s = 0.5\nreconnect_max_s = 3\n"
        "heartbeat_interval_s = 5\n",
        encoding="utf-8",
    )
    return central, kiosk


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", *args], stdout=fh, stderr=fh)


def summary(kiosk_db: Path, central_db: Path) -> dict[str, Any]:
    """Read from both databases what was filed and what central holds."""
    k = sqlite3.connect(f"file:{kiosk_db}?mode=ro", uri=True)
    filed = dict(k.execute("SELECT record_id, code FROM dossiers").fetchall())
    acked = k.execute("SELECT count(*) FROM outbox WHERE kind='dossier' AND state='acked'")
    acked_n = acked.fetchone()[0]
    k.close()
    c = sqlite3.connect(f"file:{central_db}?mode=ro", uri=True)
    rows = c.execute(
        "SELECT id, json_extract(body, '$.code') FROM records WHERE kind='dossier' AND kiosk=?",
        (KIOSK_ID,),
    ).fetchall()
    gaps = [
        r for r in c.execute("SELECT kiosk, contiguous_seq, max_seq FROM streams") if r[1] != r[2]
    ]
    c.close()
    ids_at_central = [r[0] for r in rows]
    codes_at_central = [r[1] for r in rows]
    return {
        "submitted": len(filed),
        "at_central": len(set(ids_at_central) & set(filed)),
        "duplicates": (len(ids_at_central) - len(set(ids_at_central)))
        + (len(codes_at_central) - len(set(codes_at_central))),
        "lost": len(set(filed) - set(ids_at_central)),
        "acked_on_kiosk": acked_n,
        "sequence_gaps": len(gaps),
    }


def _wait_started(procs: list[subprocess.Popen[bytes]], files: list[Path]) -> None:
    deadline = time.monotonic() + 60
    while not all(f.exists() for f in files):
        for p in procs:
            if p.poll() is not None:
                raise click.ClickException(
                    f"{p.args!r} exited with {p.returncode} at start; see the logs in demo-out/"
                )
        if time.monotonic() > deadline:
            raise click.ClickException("central or agent did not start within 60 s")
        time.sleep(0.1)


def _wait_synced(out: Path, n: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = summary(out / "kiosk.db", out / "central.db")
        if result["at_central"] >= n and result["acked_on_kiosk"] >= n:
            return result
        if time.monotonic() > deadline:
            return result
        time.sleep(0.2)


class KioskDevices:
    """The kiosk's printer and CDC scanner, emulated, under the agent's device supervisor."""

    def __init__(self, out: Path) -> None:
        self.printer_backend = EmulatedUsbPrinter()
        self.scanner = EmulatedCdcScanner()
        self.receipts = out / "receipts"
        cfg = DevicesSection(
            printer="usb://04b8:0e15", scanner=self.scanner.port_path, reopen_s=0.5
        )
        self.supervisor = DeviceSupervisor(
            cfg, spool_dir=out / "receipt-spool", usb_backend=self.printer_backend
        )

    def start(self) -> None:
        self.supervisor.start()
        deadline = time.monotonic() + 30
        while True:
            health = self.supervisor.health()
            states = {name: h["state"] for name, h in health.items()}
            if states == {"printer": "ok", "scanner": "ok"}:
                return
            if time.monotonic() > deadline:
                raise click.ClickException(f"emulated devices did not come up: {health}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.supervisor.stop()
        self.scanner.close()

    def scan_card(self, identity: Identity) -> Identity:
        """The citizen holds their CCCD under the scanner; the kiosk reads the QR."""
        self.scanner.scan(encode_cccd_qr(identity))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            event = self.supervisor.next_event(timeout=deadline - time.monotonic())
            if event is not None and event.kind == "identity" and event.identity is not None:
                return event.identity
        raise click.ClickException("the emulated scanner's QR did not reach the kiosk")

    def keep_receipt(self, code: str) -> None:
        """Keep what reached the printer as <code>.bin and draw it as <code>.png."""
        data = self.printer_backend.take_received()
        if data:
            save_receipt(data, self.receipts, code)


def citizen_card(name: str, number: int) -> Identity:
    """A CCCD for a scripted citizen: 12-digit ID, Vietnamese name, as its QR carries."""
    return Identity(
        id_number=f"0872050{number:05d}",
        old_id_number=None,
        full_name=name,
        date_of_birth=date(1970 + number % 30, 1 + number % 12, 1 + number % 28),
        sex="F" if " Thị " in f" {name} " else "M",
        address="Phường 1, TP. Sa Đéc, Đồng Tháp",
        issue_date=date(2021, 8, 15),
        expiry_date=None,
        document_number=None,
        nationality=None,
        source="qr",
    )


def _file_all(
    desk: DossierDesk,
    cfg: AgentConfig,
    devices: KioskDevices,
    people: list[tuple[str, str, dict[str, Any]]],
    start: int,
) -> list[Filed]:
    filed = []
    for i, (name, proc, form) in enumerate(people):
        identity = devices.scan_card(citizen_card(name, start + i))
        applicant = Applicant(
            full_name=identity.full_name,
            id_number=identity.id_number,
            date_of_birth=identity.date_of_birth.isoformat(),
            address=identity.address,
            phone="0912345678",
        )
        f, outcome = file_and_print(desk, devices.supervisor.printer, cfg, proc, applicant, form)
        devices.keep_receipt(f.code)
        due = "trả kết quả trong ngày" if f.same_day else f.due.strftime("%H:%M %d/%m/%Y")
        printed = "receipt printed" if outcome.printed else f"NOT printed: {outcome.screen_text}"
        click.echo(f"  filed {f.code}  {f.procedure_name}  ({name}); due: {due}; {printed}")
        filed.append(f)
    return filed


@click.command()
@click.option(
    "--once", is_flag=True, help="Exit after the scripted citizen (for CI and reviewers)."
)
@click.option(
    "--out",
    "out_dir",
    default="demo-out",
    show_default=True,
    help="Where the demo writes its databases, logs and receipts.",
)
@click.option("--rounds", default=2, show_default=True, help="Times the citizens' list is filed.")
def main(once: bool, out_dir: str, rounds: int) -> None:
    """Run broker, central, one kiosk and a scripted citizen on this machine."""
    os.umask(0o077)  # demo-out/ holds databases and receipts with (sample) citizen data
    out = Path(out_dir).resolve()
    shutil.rmtree(out, ignore_errors=True)
    (out / "receipts").mkdir(parents=True)
    broker = MosquittoProcess(out / "broker").start()
    central_toml, kiosk_toml = _write_configs(out, broker)
    procs = [
        _spawn(["central.cli", "run", "--config", str(central_toml)], out / "central.log"),
        _spawn(["edge_agent.cli", "run", "--config", str(kiosk_toml)], out / "agent.log"),
    ]
    result: dict[str, Any] = {}
    devices = KioskDevices(out)
    try:
        _wait_started(procs, [out / "central.db", out / "kiosk.db"])
        click.echo(
            f"broker (shipped config) on 127.0.0.1:{broker.local_port} (central) and "
            f":{broker.kiosk_port} (kiosks, TLS); central and kiosk {KIOSK_ID} running"
        )
        devices.start()
        click.echo(
            f"kiosk devices (emulated): printer usb://04b8:0e15, "
            f"CCCD QR scanner on {devices.scanner.port_path}"
        )
        kiosk_cfg = load_agent_config(kiosk_toml)
        desk = open_desk(kiosk_cfg)
        people = CITIZENS * rounds
        half = len(people) // 2
        click.echo("citizens file at the kiosk (online):")
        _file_all(desk, kiosk_cfg, devices, people[:half], 0)
        _wait_synced(out, half, 30)
        click.echo(f"  central holds {summary(out / 'kiosk.db', out / 'central.db')['at_central']}")
        click.echo("the kiosk's link drops (broker stopped); citizens keep filing:")
        broker.stop()
        _file_all(desk, kiosk_cfg, devices, people[half:], half)
        click.echo(f"outbox while offline: {desk.outbox.stats().queued} records waiting")
        broker.start()
        click.echo("link back; the kiosk drains its outbox to central ...")
        result = _wait_synced(out, len(people), 90)
        desk.outbox.close()
        if not once:
            click.echo(
                f"\nrunning; look at {out}/central.log, {out}/agent.log, and\n"
                f"  aps-central status --config {central_toml}\n"
                f"  aps-agent outbox status --config {kiosk_toml}\n"
                f"  aps-central fleet --config {central_toml}\nCtrl-C to stop."
            )
            try:
                while all(p.poll() is None for p in procs):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            result = summary(out / "kiosk.db", out / "central.db")
    finally:
        devices.stop()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
    result = result if result else summary(out / "kiosk.db", out / "central.db")
    result["receipts"] = len(list((out / "receipts").glob("*.png")))
    (out / "summary.json").write_text(json.dumps(result) + "\n")
    click.echo(json.dumps(result))
    ok = result.get("lost") == 0 and result.get("duplicates") == 0
    sys.exit(0 if ok and result["receipts"] == result.get("submitted") else 1)


if __name__ == "__main__":
    main()
