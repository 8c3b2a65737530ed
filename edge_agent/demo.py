"""``aps-demo``: the whole stack on one machine, with a scripted citizen.

Starts a private mosquitto on a free loopback port and central as a separate
process (exactly what its systemd unit runs), and runs the kiosk application
(:class:`edge_agent.app.KioskApp`, what ``aps-agent run`` runs) in this
process, where a scripted citizen drives it as the screen will: scan the CCCD,
file with a fee and a handwritten signature, confirm the code was shown, rate,
ask a question, press the help button; half of the filings while the kiosk's
link is down. Then the office answers from central, over its HTTP API, as the
back-office system and staff would (edge_agent/demo_backoffice.py): a dossier
moves to result-ready, the bank's signed payment notice arrives, the question
is answered, the on-duty staff member (roster set at start, notified by
webhook) is coming for the help request, a FAQ item and a new catalogue
version are published; the demo waits until the kiosk's own services show
all of it. Everything it writes goes under ``demo-out/`` (the kiosk's log in
``agent.log``). The last line printed is a JSON summary read from the two
databases, not from counters, plus the number of receipt images written and
the records per kind at central (``kinds``), what central sent down that the
kiosk holds per kind (``downlink_at_kiosk``), the tracked dossier's state and
payment as the kiosk shows it (``tracked``), which answers arrived
(``arrived``) and how many staff notifications were sent (``staff_notified``).

The kiosk's devices are emulated in this process, on the citizen's side of the
glass: a USB receipt printer (:class:`firmware_mocks.usb_printer.EmulatedUsbPrinter`,
driven by python-escpos's real ``Usb`` class through pyusb) and a QR scanner in
USB-CDC mode on a pty (:class:`firmware_mocks.cdc_scanner.EmulatedCdcScanner`,
read with pyserial), and a help button read through python-evdev
(:class:`firmware_mocks.help_button.EmulatedHelpButton`). Each citizen scans
the QR of their CCCD card; the application's device loop puts the identity in
the citizen's session; the dossier is prefilled from it, signed, committed;
only then is the receipt printed. What reached the printer is kept as
``demo-out/receipts/<dossier code>.bin`` and drawn as ``.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import click

from central.fleet.registry import Registry
from central.mosquitto import MosquittoProcess, free_port, mqtt_toml
from drivers.cccd_qr import encode_cccd_qr
from drivers.identity import Identity
from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from edge_agent.catalogue import bundled_document
from edge_agent.config import DevicesSection, load_agent_config
from edge_agent.demo_backoffice import BackOffice, WebhookInbox, central_toml_extra, new_token
from edge_agent.devices import DeviceSupervisor
from edge_agent.services.filing import FilingResult
from edge_agent.signature import HandwrittenSignature
from firmware_mocks.cdc_scanner import EmulatedCdcScanner
from firmware_mocks.escpos_render import save_receipt
from firmware_mocks.help_button import EmulatedHelpButton
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from sync.identity_files import create_private_key, write_public_keys
from sync.logs import setup_logging

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


def _make_keys(out: Path) -> tuple[Path, Path, Path]:
    """The demo's keys, as provisioning makes them: the kiosk's on "the box", central's at
    central, central's public key given to the kiosk, the kiosk's key in the registry."""
    keys = out / "keys"
    kiosk_key, _ = create_private_key(keys / "kiosk-signing.key")
    central_key, _ = create_private_key(keys / "central-signing.key")
    central_keys = keys / "central-keys.json"
    write_public_keys(central_keys, [central_key.public_key()])
    registry = Registry(out / "central.db")
    try:
        if registry.get(KIOSK_ID) is None:
            registry.add_kiosk(
                KIOSK_ID,
                office="000.00.14.H56",
                slot=1,
                agency="000.00.14.H56",
                signing_key=kiosk_key.public_key(),
            )
    finally:
        registry.close()
    return keys / "kiosk-signing.key", central_keys, keys / "central-signing.key"


def _write_configs(out: Path, broker: MosquittoProcess, extra: str) -> tuple[Path, Path]:
    kiosk_key, central_keys, central_key = _make_keys(out)
    central = out / "central.toml"
    central.write_text(
        f'[central]\ndatabase = "{out / "central.db"}"\n\n'
        f"{mqtt_toml(broker.collector('aps-collector-demo'))}\n"
        '[collector]\nclient_id = "aps-collector-demo"\n\n'
        f'[security]\nsigning_key = "{central_key}"\n\n' + extra,
        encoding="utf-8",
    )
    kiosk = out / "kiosk.toml"
    kiosk.write_text(
        f'[kiosk]\nid = "{KIOSK_ID}"\nagency = "000.00.14.H56"\nslot = 1\n'
        'office_name = "UBND Phường 1, TP. Sa Đéc"\nhotline = "0277 3861 234"\n\n'
        f'[agent]\ndatabase = "{out / "kiosk.db"}"\nreceipts_dir = "{out / "receipt-spool"}"\n\n'
        f"{mqtt_toml(broker.kiosk(KIOSK_ID))}\n"
        "[sync]\nack_timeout_s = 5\nreconnect_min_s = 0.5\nreconnect_max_s = 3\n"
        "heartbeat_interval_s = 5\n\n"
        # A made-up account (letters: no bank has it) so the slips show a VietQR code.
        '[payment]\nbank_bin = "970436"\naccount = "DEMO0000001"\n'
        'beneficiary = "UBND PHUONG 1 TP SA DEC (DEMO)"\n\n'
        f'[identity]\nsigning_key = "{kiosk_key}"\ncentral_keys = "{central_keys}"\n',
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
    kinds = dict(
        c.execute(
            "SELECT kind, count(*) FROM records WHERE kiosk = ? GROUP BY kind ORDER BY kind",
            (KIOSK_ID,),
        ).fetchall()
    )
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
        "kinds": kinds,
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


def _wait_drained(app: KioskApp, timeout: float) -> None:
    """Until every record (ratings, questions, help) is acknowledged, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while app.outbox.stats().queued and time.monotonic() < deadline:
        time.sleep(0.2)


class KioskDevices:
    """The kiosk's printer, CDC scanner and help button, emulated, under a device supervisor."""

    def __init__(self, out: Path) -> None:
        self.printer_backend = EmulatedUsbPrinter()
        self.scanner = EmulatedCdcScanner()
        self.button = EmulatedHelpButton()
        self.receipts = out / "receipts"
        self.cfg = DevicesSection(
            printer="usb://04b8:0e15",
            scanner=self.scanner.port_path,
            help_button="emulated",
            reopen_s=0.5,
        )
        self.supervisor = DeviceSupervisor(
            self.cfg,
            spool_dir=out / "receipt-spool",
            usb_backend=self.printer_backend,
            open_help_button=lambda: self.button,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            health = self.supervisor.health()
            states = {name: h["state"] for name, h in health.items()}
            if set(states.values()) == {"ok"}:
                return
            if time.monotonic() > deadline:
                raise click.ClickException(f"emulated devices did not come up: {health}")
            time.sleep(0.05)

    def close(self) -> None:
        self.scanner.close()

    def scan_card(self, app: KioskApp, identity: Identity) -> None:
        """The citizen holds their CCCD under the scanner; the app reads it into the session."""
        self.scanner.scan(encode_cccd_qr(identity))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            notice = app.next_notice(timeout=deadline - time.monotonic())
            if notice is not None and notice.kind == "identity":
                return
        raise click.ClickException("the emulated scanner's QR did not reach the kiosk")

    def keep_receipt(self, code: str) -> None:
        """Keep what reached the printer as <code>.bin and draw it as <code>.png."""
        data = self.printer_backend.take_received()
        if data:
            save_receipt(data, self.receipts, code)


def demo_signature(number: int) -> HandwrittenSignature:
    """A scripted citizen's handwritten signature: a wave, a little different per citizen."""
    wave = [[20 + 12 * i, 80 + (25 if i % 2 else -25) + number % 7, 40 * i] for i in range(20)]
    underline = [[30, 130, 1200], [260 + number % 50, 128, 1400]]
    return HandwrittenSignature.from_strokes([wave, underline], width=400, height=160)


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
    app: KioskApp,
    devices: KioskDevices,
    people: list[tuple[str, str, dict[str, Any]]],
    start: int,
) -> list[FilingResult]:
    filed = []
    for i, (name, proc, form) in enumerate(people):
        devices.scan_card(app, citizen_card(name, start + i))
        prepared = app.filing.prepare(proc, form, phone="0912345678")
        result = app.filing.file(prepared, signature=demo_signature(start + i))
        app.filing.confirm_shown(result.code)  # the screen showed the code
        devices.keep_receipt(result.code)
        app.ratings.rate(("rat_hai_long", "hai_long")[i % 2], dossier_code=result.code)
        f = result.filed
        due = "trả kết quả trong ngày" if f.same_day else f.due.strftime("%H:%M %d/%m/%Y")
        printed = (
            "receipt printed"
            if result.receipt.printed
            else f"NOT printed: {result.receipt.screen_text}"
        )
        fee = f"fee {f.fee_vnd} VND ({(f.fee or {}).get('rule', 'flat')})"
        click.echo(f"  filed {f.code}  {f.procedure_name}  ({name}); due: {due}; {fee}; {printed}")
        app.session.clear("done")
        filed.append(result)
    return filed


def _ask_and_call_for_help(app: KioskApp, devices: KioskDevices) -> dict[str, str]:
    """A question, a home-visit request, and the help button pressed."""
    q = app.feedback.submit(
        "question", "Làm lại giấy khai sinh bị mất cần những gì?", contact="0912345678"
    )
    click.echo(f"  question sent, lookup code {q.lookup_code}")
    v = app.support.request_home_visit(
        full_name="Huỳnh Văn Tư",
        phone="0913 456 789",
        address="Ấp Tân Hòa, xã Tân Khánh Đông, TP. Sa Đéc",
        reason="Người cao tuổi, không đi lại được",
    )
    click.echo(f"  home visit requested, lookup code {v.lookup_code}")
    devices.button.press(time.time())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        notice = app.next_notice(timeout=deadline - time.monotonic())
        if notice is not None and notice.kind == "support":
            code = str(notice.data["lookup_code"])
            click.echo(f"  help button pressed: request {code} queued")
            return {"question": q.lookup_code, "home_visit": v.lookup_code, "help": code}
    raise click.ClickException("the help button's press did not reach the kiosk")


def _next_version(version: str) -> str:
    parts = version.split(".")
    return ".".join([*parts[:-1], str(int(parts[-1]) + 1)])


def _open_back_office(central_toml: Path, api_port: int) -> BackOffice:
    """A token, then the API once ``aps-central run`` listens (bounded wait)."""
    office = BackOffice(api_port, new_token(central_toml))
    deadline = time.monotonic() + 30
    while True:
        try:
            office.http.get("/roster/staff").raise_for_status()
            return office
        except Exception:
            if time.monotonic() > deadline:
                office.close()
                raise click.ClickException(
                    "central's HTTP API did not answer within 30 s"
                ) from None
            time.sleep(0.2)


def _back_office_round(
    app: KioskApp, office: BackOffice, filed: list[FilingResult], lookups: dict[str, str]
) -> dict[str, Any]:
    """Staff answer from central; the kiosk ends up with all of it (bounded wait)."""
    with_fee = next(r for r in filed if r.filed.fee_vnd > 0)
    code = with_fee.filed.code
    office.advance(code, {"result-ready": "Mời Ông/Bà đến nhận kết quả tại quầy số 2."})
    click.echo(f"  back office: {code} received -> processing -> result-ready")
    office.bank_pays(code, with_fee.filed.fee_vnd, app.now())
    click.echo(f"  bank: {with_fee.filed.fee_vnd} VND paid for {code} (signed callback)")
    office.answer(
        lookups["question"],
        "Ông/Bà mang CCCD đến UBND phường nơi đã đăng ký khai sinh, làm thủ tục cấp bản sao "
        "trích lục khai sinh (8.000 đồng/bản).",
    )
    click.echo(f"  staff answered question {lookups['question']}")
    office.publish_faq()
    doc = bundled_document()
    version = _next_version(str(doc["version"]))
    doc["version"] = version
    office.publish_catalogue(doc)
    click.echo(f"  FAQ item and catalogue {version} published")
    deadline = time.monotonic() + 60
    while True:
        track = app.tracking.lookup(code)
        answer = app.feedback.answer_for(lookups["question"])
        help_reply = app.support.status(lookups["help"])
        faqs = app.info.faqs()
        arrived = {
            "status": track.state == "result-ready",
            "paid": bool(track.paid),
            "answer": answer.answered,
            "support_reply": help_reply.status != "waiting",
            "faq": bool(faqs),
            "catalogue": app.catalogue().version == version,
        }
        if all(arrived.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    click.echo(f"  at the kiosk: {track.screen_text}")
    click.echo(f"  at the kiosk: {answer.screen_text}")
    click.echo(f"  at the kiosk: {help_reply.message}")
    return {"tracked": {code: {"state": track.state, "paid": track.paid}}, "arrived": arrived}


def kiosk_downlink(kiosk_db: Path) -> dict[str, int]:
    """What central sent down that the kiosk holds, per kind (its cache)."""
    k = sqlite3.connect(f"file:{kiosk_db}?mode=ro", uri=True)
    try:
        return dict(
            k.execute("SELECT kind, count(*) FROM downlink_items GROUP BY kind ORDER BY kind")
        )
    finally:
        k.close()


def _serve_screen(app: KioskApp) -> ApiServer:
    """Serve the touch UI over the demo's kiosk (after the scripted citizens: the screen's event
    stream then takes the app's notices). 127.0.0.1:8765 as on a kiosk, or a free port."""
    try:
        server = ApiServer(app, "127.0.0.1:8765")
    except OSError:
        server = ApiServer(app, "127.0.0.1:0")
    server.start()
    return server


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
    staff_phone = WebhookInbox()  # the on-duty staff member's notifications
    api_port = free_port()
    central_toml, kiosk_toml = _write_configs(
        out, broker, central_toml_extra(api_port, staff_phone.url)
    )
    procs = [
        _spawn(["central.cli", "run", "--config", str(central_toml)], out / "central.log"),
    ]
    kiosk_cfg = load_agent_config(kiosk_toml)
    # The kiosk application runs in this process: its log goes to agent.log, as the agent's.
    setup_logging("INFO", stream=(out / "agent.log").open("a", encoding="utf-8"))
    result: dict[str, Any] = {}
    devices = KioskDevices(out)
    app = KioskApp(kiosk_cfg, devices=devices.supervisor)
    office: BackOffice | None = None
    screen: ApiServer | None = None
    try:
        _wait_started(procs, [out / "central.db"])
        office = _open_back_office(central_toml, api_port)
        today = app.now().date()  # the office's own date (Asia/Ho_Chi_Minh)
        office.put_on_duty(
            kiosk_cfg.kiosk.agency, [today.isoformat(), (today + timedelta(days=1)).isoformat()]
        )
        app.start()
        click.echo(
            f"broker (shipped config) on 127.0.0.1:{broker.local_port} (central) and "
            f":{broker.kiosk_port} (kiosks, TLS); central and kiosk {KIOSK_ID} running"
        )
        devices.wait_ready()
        click.echo(
            f"kiosk devices (emulated): printer usb://04b8:0e15, "
            f"CCCD QR scanner on {devices.scanner.port_path}, help button (evdev)"
        )
        people = CITIZENS * rounds
        half = len(people) // 2
        click.echo("citizens file at the kiosk (online):")
        filed = _file_all(app, devices, people[:half], 0)
        lookups = _ask_and_call_for_help(app, devices)
        _wait_synced(out, half, 30)
        click.echo(f"  central holds {summary(out / 'kiosk.db', out / 'central.db')['at_central']}")
        click.echo("the kiosk's link drops (broker stopped); citizens keep filing:")
        broker.stop()
        filed += _file_all(app, devices, people[half:], half)
        click.echo(f"outbox while offline: {app.outbox.stats().queued} records waiting")
        broker.start()
        click.echo("link back; the kiosk drains its outbox to central ...")
        result = _wait_synced(out, len(people), 90)
        _wait_drained(app, 60)
        click.echo("the office answers from central (HTTP API):")
        office_round = _back_office_round(app, office, filed, lookups)
        result = summary(out / "kiosk.db", out / "central.db")
        result["lookup_codes"] = lookups
        result["downlink_at_kiosk"] = kiosk_downlink(out / "kiosk.db")
        result.update(office_round)
        result["staff_notified"] = len(staff_phone.received)
        if not once:
            screen = _serve_screen(app)
            click.echo(
                f"\nthe kiosk's screen: open {screen.url}/ in a browser on this machine\n"
                f"running; look at {out}/central.log, {out}/agent.log, and\n"
                f"  aps-central status --config {central_toml}\n"
                f"  aps-agent outbox status --config {kiosk_toml}\n"
                f"  aps-central fleet --config {central_toml}\nCtrl-C to stop."
            )
            try:
                while all(p.poll() is None for p in procs):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            result = {**result, **summary(out / "kiosk.db", out / "central.db")}
    finally:
        if screen is not None:
            screen.stop()
        if office is not None:
            office.close()
        staff_phone.close()
        app.stop()
        devices.close()
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
    ok = ok and all(result.get("arrived", {"none": False}).values())
    sys.exit(0 if ok and result["receipts"] == result.get("submitted") else 1)


if __name__ == "__main__":
    main()
