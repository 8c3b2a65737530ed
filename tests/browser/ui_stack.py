"""The whole kiosk behind the screen, on loopback, for the browser tests.

Theory of operation
-------------------
:class:`UiStack` starts what a kiosk screen talks to, as close to the box as one
machine allows:

- a private mosquitto with the shipped configuration
  (:class:`central.mosquitto.MosquittoProcess`; never the broker on 1883);
- central as a subprocess (``python -m central.cli run``, what its systemd unit runs)
  with its staff HTTP API on a free loopback port, a bearer token made with
  ``aps-central api-token add``, a webhook receiver standing in for the on-duty staff
  member's phone, and one staff member on duty today and tomorrow;
- the kiosk: a :class:`edge_agent.app.KioskApp` in the test process with emulated
  devices at their lowest seams (a USB receipt printer through pyusb, a CDC QR scanner
  on a pty, the evdev help button, a V4L2 document camera), whose MQTT goes through a
  :class:`tests.tcp_proxy.TcpProxy` so a test can cut the 4G link; and the local API
  (:class:`edge_agent.api.ApiServer` with its :class:`EventHub`) on ``127.0.0.1:0``.

The test drives the citizen's side of the glass: :meth:`UiStack.scan_card` sends a
CCCD QR's bytes through the emulated scanner, :meth:`UiStack.paper_out` opens the
printer's paper switch, :meth:`UiStack.offline` cuts the proxy; and the office's side
with :attr:`UiStack.back_office` (central's staff HTTP API). Nothing here is shipped.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from central.mosquitto import MosquittoProcess, TestPki, free_port, mqtt_toml
from drivers.cccd_qr import encode_cccd_qr
from drivers.document_camera import DocumentCamera
from drivers.identity import Identity
from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from edge_agent.config import AgentConfig, DevicesSection, load_agent_config
from edge_agent.demo_backoffice import (
    STAFF_ID,
    BackOffice,
    WebhookInbox,
    central_toml_extra,
    new_token,
)
from edge_agent.devices import DeviceSupervisor
from firmware_mocks.cdc_scanner import EmulatedCdcScanner
from firmware_mocks.help_button import EmulatedHelpButton
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from firmware_mocks.v4l2_camera import EmulatedV4l2Camera
from sync.mqtt_link import MqttSettings
from tests import identity as keyring
from tests.tcp_proxy import TcpProxy

KIOSK_ID = "k-ui-01"
AGENCY = "000.00.14.H56"
CAMERA_URL = "v4l2:///dev/video0?width=1600&height=1200&format=YUYV&warmup=1"
#: Seconds any wait in the stack may take before it fails with a message.
WAIT_S = 30.0


def wait_for(cond: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``cond`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def default_citizen(number: int = 1234) -> Identity:
    """The citizen the tests scan unless they bring their own: a CCCD with a Vietnamese name."""
    return Identity(
        id_number=f"0872050{number:05d}",
        old_id_number=None,
        full_name="Nguyễn Thị Ngọc Hường",
        date_of_birth=date(1954, 3, 14),
        sex="F",
        address="Số 12, đường Hùng Vương, Phường 1, TP. Sa Đéc, Đồng Tháp",
        issue_date=date(2021, 8, 15),
        expiry_date=None,
        document_number=None,
        nationality=None,
        source="qr",
    )


class StaffApi(BackOffice):
    """The office's back-office system and staff: central's staff HTTP API (docs/api.md).

    Adds to the demo's :class:`BackOffice` (``advance``, ``bank_pays``, ``answer``,
    ``publish_faq``, ``publish_catalogue``) what the browser tests need one call for.
    """

    def dossier(self, code: str) -> dict[str, Any] | None:
        """The dossier as central holds it, or None while it has not arrived."""
        r = self.http.get(f"/dossiers/{code}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return dict(r.json())

    def set_status(self, code: str, state: str, note: str | None = None) -> dict[str, Any]:
        """One status move (``received``, ``processing``, ``result-ready``, ...)."""
        return dict(
            self._call("POST", f"/dossiers/{code}/status", json={"state": state, "note": note})
        )

    def mark_paid(
        self, code: str, amount_vnd: int, *, reference: str | None = None
    ) -> dict[str, Any]:
        """A payment recorded at the desk (cash); ``bank_pays`` is the bank's signed notice."""
        body = {
            "amount_vnd": amount_vnd,
            "reference": reference or f"CASH-{code}",
            "paid_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        return dict(self._call("POST", f"/dossiers/{code}/payments", json=body))

    def support_request(self, lookup_code: str) -> dict[str, Any] | None:
        """The support request (help or home visit) with this lookup code, once central has it."""
        rows = self._call("GET", "/support", params={"lookup_code": lookup_code})["requests"]
        return dict(rows[0]) if rows else None

    def support_requests(self, type: str | None = None) -> list[dict[str, Any]]:
        """Support requests central holds, newest first (``type``: help or home-visit)."""
        params = {} if type is None else {"type": type}
        return list(self._call("GET", "/support", params=params)["requests"])

    def reply_support(self, lookup_code: str, *, staff: str = STAFF_ID) -> dict[str, Any]:
        """Staff take the request: assigned to ``staff`` if it is not, then acknowledged.

        The kiosk is told who is coming (docs/support.md).
        """
        req = wait_for(lambda: self.support_request(lookup_code), f"support {lookup_code}")
        n = req["n"]
        if req["status"] not in ("assigned", "no-one-on-duty") or req.get("staff") != staff:
            req = self._call("POST", f"/support/{n}/assign", json={"staff": staff})
        if req["status"] != "acknowledged":
            req = self._call("POST", f"/support/{n}/acknowledge", json={"staff": staff})
        return dict(req)

    def resolve_support(self, lookup_code: str, note: str | None = None) -> dict[str, Any]:
        req = wait_for(lambda: self.support_request(lookup_code), f"support {lookup_code}")
        return dict(self._call("POST", f"/support/{req['n']}/resolve", json={"note": note}))

    def inquiry(self, lookup_code: str) -> dict[str, Any] | None:
        """A question / petition as central holds it, or None while it has not arrived."""
        r = self.http.get(f"/inquiries/{lookup_code}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return dict(r.json())

    def answer_inquiry(self, lookup_code: str, text: str) -> None:
        """Answer a question or petition once central has it."""
        wait_for(lambda: self.inquiry(lookup_code), f"inquiry {lookup_code} at central")
        self.answer(lookup_code, text)


class KioskDevices:
    """The kiosk's emulated devices; they outlive a kiosk restart, as the hardware does."""

    def __init__(self) -> None:
        self.printer = EmulatedUsbPrinter()
        self.scanner = EmulatedCdcScanner()
        self.camera = EmulatedV4l2Camera(width=1600, height=1200, pixel_format="YUYV")
        self.button = EmulatedHelpButton()
        self.cfg = DevicesSection(
            printer="usb://04b8:0e15",
            scanner=self.scanner.port_path,
            help_button="emulated",
            document_camera=CAMERA_URL,
            reopen_s=0.2,
            printer_poll_s=0.2,
        )

    def supervisor(self, spool_dir: Path) -> DeviceSupervisor:
        """A new supervisor on the same devices (the help button is a new pipe each time)."""
        self.button = EmulatedHelpButton()
        button = self.button
        return DeviceSupervisor(
            self.cfg,
            spool_dir=spool_dir,
            usb_backend=self.printer,
            open_help_button=lambda: button,
        )

    def document_camera(self) -> DocumentCamera:
        return DocumentCamera(CAMERA_URL, source=self.camera, reopen_s=0)

    def close(self) -> None:
        self.scanner.close()


class UiStack:
    """Broker, central, the kiosk app and its local API; see the module docstring."""

    def __init__(
        self,
        root: Path,
        pki: TestPki,
        *,
        session_idle_s: float = 120.0,
        kiosk_extra: str = "",
    ) -> None:
        self.root = root
        self.session_idle_s = session_idle_s
        self._kiosk_extra = kiosk_extra
        self._pki = pki
        self._procs: list[subprocess.Popen[bytes]] = []
        self._closers: list[Callable[[], None]] = []
        self.kiosk: KioskApp
        self.api: ApiServer
        self.back_office: StaffApi

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> UiStack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.broker = MosquittoProcess(self.root / "broker", pki=self._pki).start()
        self._closers.append(self.broker.stop)
        self.staff_phone = WebhookInbox()
        self._closers.append(self.staff_phone.close)
        api_port = free_port()
        self.central_toml = self.root / "central.toml"
        self.central_db = self.root / "central.db"
        collector = self.broker.collector("aps-collector-ui")
        # Keys (tests/identity.py): central's, the kiosk's, and the kiosk in the registry.
        self.keys = keyring.write_keys(self.root / "keys")
        keyring.register(self.central_db, KIOSK_ID)
        self.central_toml.write_text(
            f'[central]\ndatabase = "{self.central_db}"\n\n{mqtt_toml(collector)}\n'
            '[collector]\nclient_id = "aps-collector-ui"\n\n'
            + self.keys.central_toml()
            + central_toml_extra(api_port, self.staff_phone.url),
            encoding="utf-8",
        )
        log = (self.root / "central.log").open("ab")
        central = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "run", "--config", str(self.central_toml)],
            stdout=log,
            stderr=log,
        )
        log.close()
        self._procs.append(central)
        wait_for(lambda: self._central_alive() and self.central_db.exists(), "central.db")
        self.back_office = StaffApi(api_port, new_token(self.central_toml))
        self._closers.append(self.back_office.close)
        wait_for(self._staff_api_answers, "central's staff HTTP API")

        kiosk_mqtt = self.broker.kiosk(KIOSK_ID)
        self.proxy = TcpProxy(kiosk_mqtt.port)
        self._closers.append(self.proxy.close)
        self.kiosk_toml = self._write_kiosk_toml(replace(kiosk_mqtt, port=self.proxy.port))
        self.cfg: AgentConfig = load_agent_config(self.kiosk_toml)
        today = datetime.now(ZoneInfo(self.cfg.kiosk.timezone)).date()  # the office's date
        days = [today.isoformat(), (today + timedelta(days=1)).isoformat()]
        self.back_office.put_on_duty(AGENCY, days)
        self.devices = KioskDevices()
        self._closers.append(self.devices.close)
        self._start_kiosk(port=0)
        wait_for(self._devices_ok, "the emulated devices to come up")

    def _central_alive(self) -> bool:
        central = self._procs[0]
        if central.poll() is not None:
            log = (self.root / "central.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"central exited with {central.returncode}:\n{log}")
        return True

    def _staff_api_answers(self) -> bool:
        self._central_alive()
        try:
            return self.back_office.http.get("/roster/staff").status_code == 200
        except httpx.HTTPError:
            return False

    def _write_kiosk_toml(self, mqtt: MqttSettings) -> Path:
        path = self.root / "kiosk.toml"
        path.write_text(
            f'[kiosk]\nid = "{KIOSK_ID}"\nagency = "{AGENCY}"\nslot = 1\n'
            'office_name = "UBND Phường 1, TP. Sa Đéc"\nhotline = "0277 3861 234"\n'
            f"session_idle_s = {self.session_idle_s}\n{self._kiosk_extra}\n"
            f'[agent]\ndatabase = "{self.root / "kiosk.db"}"\n'
            f'receipts_dir = "{self.root / "receipt-spool"}"\n\n'
            f"{mqtt_toml(mqtt)}\n"
            "[sync]\nack_timeout_s = 5\nreconnect_min_s = 0.2\nreconnect_max_s = 1\n"
            "heartbeat_interval_s = 5\n\n"
            # A made-up account (letters: no bank has it) so slips and screen show a VietQR.
            '[payment]\nbank_bin = "970436"\naccount = "TEST0000001"\n'
            'beneficiary = "UBND PHUONG 1 TP SA DEC (TEST)"\n\n' + self.keys.agent_toml(),
            encoding="utf-8",
        )
        return path

    def _start_kiosk(self, port: int) -> None:
        self.kiosk = KioskApp(
            self.cfg,
            devices=self.devices.supervisor(self.cfg.agent.receipts_dir),
            camera=self.devices.document_camera(),
        )
        self.kiosk.start()
        try:
            self.api = ApiServer(self.kiosk, f"127.0.0.1:{port}")
        except OSError:  # the old port is taken meanwhile: a new one (restart_kiosk says so)
            self.api = ApiServer(self.kiosk, "127.0.0.1:0")
        self.api.start()

    def _stop_kiosk(self) -> None:
        self.api.stop()
        self.kiosk.stop()

    def close(self) -> None:
        """Stop everything started, in reverse order; never raises."""
        if hasattr(self, "api"):
            with contextlib.suppress(Exception):
                self._stop_kiosk()
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()

    # -- what a test reads -------------------------------------------------------------
    @property
    def url(self) -> str:
        """The page's address (``http://127.0.0.1:<port>``); ``url + "/"`` is the screen."""
        return self.api.url

    def health(self) -> dict[str, Any]:
        """``GET /api/v1/health`` as the screen sees it."""
        return dict(httpx.get(f"{self.url}/api/v1/health", timeout=10).json())

    def _devices_ok(self) -> bool:
        states = {name: h["state"] for name, h in self.kiosk.devices.health().items()}
        return set(states.values()) == {"ok"}

    # -- the citizen's side of the glass -----------------------------------------------
    def scan_card(self, identity: Identity | None = None) -> Identity:
        """A CCCD's QR shown to the scanner: its real bytes through the emulated CDC scanner."""
        identity = identity or default_citizen()
        self.devices.scanner.scan(encode_cccd_qr(identity))
        return identity

    def scan_text(self, text: str) -> None:
        """Any QR shown to the scanner, e.g. an appointment slip's tracking QR."""
        self.devices.scanner.scan(text)

    def press_help_button(self) -> None:
        """The physical help button beside the screen."""
        self.devices.button.press(time.time())

    def paper_out(self, timeout: float = WAIT_S) -> None:
        """The roll runs out; returns once the agent's health says so."""
        self.devices.printer.paper_end = True
        wait_for(lambda: self._printer_state() == "paper_out", "printer paper_out", timeout)

    def paper_ok(self, timeout: float = WAIT_S) -> None:
        """A new roll is in; returns once the agent's health says the printer is fine."""
        self.devices.printer.paper_end = False
        wait_for(lambda: self._printer_state() == "ok", "printer ok", timeout)

    def _printer_state(self) -> str:
        return str(self.kiosk.devices.health().get("printer", {}).get("state"))

    def offline(self, timeout: float = WAIT_S) -> None:
        """The 4G link drops; returns once the agent knows it is offline."""
        self.proxy.cut()
        wait_for(lambda: not self.kiosk.health()["online"], "the kiosk to go offline", timeout)

    def online(self, timeout: float = WAIT_S) -> None:
        """The link is back; returns once the agent is connected again."""
        self.proxy.restore()
        wait_for(lambda: self.kiosk.health()["online"], "the kiosk to come online", timeout)

    def wait_online(self, timeout: float = WAIT_S) -> None:
        wait_for(lambda: self.kiosk.health()["online"], "the kiosk to be online", timeout)

    def restart_kiosk(self) -> str:
        """The agent dies and comes back (no screen confirmation of anything in between).

        The KioskApp is stopped without the screen confirming the code it was showing,
        and a new one starts on the same files and devices, with a new ApiServer on the
        same port when it is free (else on a new one). Returns the page's url, which a
        test must use from then on if it changed.
        """
        port = self.api.port
        self._stop_kiosk()
        self._start_kiosk(port=port)
        wait_for(self._devices_ok, "the emulated devices after the restart")
        return self.url

    # -- the office's side -------------------------------------------------------------
    def wait_at_central(self, code: str, timeout: float = 60.0) -> dict[str, Any]:
        """Until central holds the dossier ``code`` (it came through the broker); returns it."""
        found: dict[str, Any] = wait_for(
            lambda: self.back_office.dossier(code), f"dossier {code} at central", timeout
        )
        return found
