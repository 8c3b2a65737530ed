"""The kiosk agent's configuration file (``/etc/aps/agent.toml``)."""

from __future__ import annotations

import ipaddress
from datetime import date, time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.due_date import OfficeRules
from sync.client import SyncSettings
from sync.config import MqttSection, Section, load


class KioskSection(Section):
    id: str = Field(
        ...,
        pattern=r"^[a-z0-9][a-z0-9-]{1,62}$",
        description="Kiosk id given at enrolment (lower-case letters, digits, '-'); "
        "also its MQTT user name and certificate CN.",
    )
    agency: str = Field(
        ...,
        pattern=r"^[0-9A-Z][0-9A-Z.]{2,30}$",
        description="Receiving agency identifier that starts every dossier code "
        "(TT 01/2018/TT-VPCP art. 19), e.g. `000.00.14.H56`.",
    )
    slot: int = Field(
        ...,
        ge=0,
        le=9,
        description="This kiosk's digit among the office's kiosks (0-9), given at "
        "enrolment; dossier codes are slot*1000 + n so offline kiosks never collide.",
    )
    office_name: str = Field("Bộ phận Một cửa", description="Office name printed on receipts.")
    hotline: str = Field("", description="Support team hotline printed on receipts.")
    timezone: str = Field(
        "Asia/Ho_Chi_Minh",
        description="Time zone of the office, an IANA name (Vietnam: `Asia/Ho_Chi_Minh`).",
    )
    tracking_url: str = Field(
        "",
        max_length=200,
        description="Receipt tracking QR: this URL with the dossier code appended, e.g. "
        "`https://dichvucong.example.vn/tra-cuu?ma=`. Empty: the QR holds the bare dossier code.",
    )

    session_idle_s: float = Field(
        120.0,
        ge=10,
        le=3600,
        description="Seconds without a touch after which the citizen's session (their name "
        "and ID from the card) is cleared from the screen.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. "Asia", a directory
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name; Vietnam is Asia/Ho_Chi_Minh"
            ) from None
        return value


class AgentSection(Section):
    database: Path = Field(
        Path("/var/lib/aps/kiosk.db"),
        description="The kiosk's SQLite database (outbox, dossiers). Keep it on the "
        "most reliable disk; its directory must be writable.",
    )
    receipts_dir: Path = Field(
        Path("/var/lib/aps/receipts"), description="Copies of printed receipts, for reprints."
    )
    log_level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level."
    )


class DevicesSection(Section):
    printer: str = Field(
        "",
        description="Receipt printer URL: `usb://VID:PID` (e.g. `usb://04b8:0e15`), "
        "`serial:///dev/ttyUSB0?baudrate=115200` or `tcp://192.168.1.50:9100`, options "
        "`profile` and `timeout` (docs/printer.md). Empty: no printer; the screen shows the "
        "dossier code instead of printing.",
    )
    scanner: str = Field(
        "",
        description="QR scanner in USB-CDC (serial) mode, which reads the CCCD QR: a device "
        "path such as `/dev/ttyACM0` (better a `/dev/serial/by-id/...` link) or a pyserial "
        "URL. Empty: none.",
    )
    hid_scanner: str = Field(
        "",
        description="QR scanner in USB-HID keyboard mode (ASCII codes only, e.g. tracking "
        "codes): its evdev node, e.g. `/dev/input/by-id/...-event-kbd`; grabbed exclusively. "
        "Empty: none.",
    )
    card_reader: str = Field(
        "",
        description="Chip/ID-card reader (serial protocol in docs/devices.md): a device path "
        "or pyserial URL. Empty: none.",
    )
    document_camera: str = Field(
        "",
        description="Document camera (UVC, V4L2) that photographs paper originals: "
        "`v4l2:///dev/video0?width=1920&height=1080`, options `format` (MJPG, YUYV, auto) "
        "and `warmup` (frames dropped while exposure settles); better a "
        "`/dev/v4l/by-id/...` link (docs/devices.md). Empty: none; the citizen hands the "
        "originals in at the desk.",
    )
    page_max_bytes: int = Field(
        1_500_000,
        ge=100_000,
        le=5_000_000,
        description="Largest JPEG of one captured page, in bytes; a page is recompressed and "
        "downscaled until it fits. All attachments of a dossier share 10 MiB.",
    )
    printer_poll_s: float = Field(
        5.0,
        ge=0.1,
        le=60,
        description="Seconds between printer status polls (paper, cover, offline); 2-5 is plenty.",
    )
    reopen_s: float = Field(
        5.0,
        ge=0.1,
        le=300,
        description="Seconds between attempts to reopen a scanner or card reader that is "
        "missing or was unplugged.",
    )
    reader_check_s: float = Field(
        10.0,
        ge=0.5,
        le=600,
        description="Seconds between card reader status requests; a reader that does not "
        "answer is reported as `not_answering`.",
    )
    help_button: str = Field(
        "",
        description="A physical help button wired as a key (e.g. a USB arcade-button "
        "encoder): its evdev node, e.g. `/dev/input/by-id/...-event-kbd`; grabbed "
        "exclusively. A press queues a help request. Empty: none.",
    )
    help_button_key: int = Field(
        138,
        ge=1,
        le=767,
        description="Linux key code the help button sends (`evtest` shows it); default "
        "138, KEY_HELP.",
    )
    paper_width_mm: Literal[80, 58] = Field(
        80,
        description="Receipt paper width, 80 or 58 mm. For 58 mm, also give the printer URL "
        "a 58 mm profile, e.g. `?profile=NT-5890K`.",
    )

    @field_validator("printer")
    @classmethod
    def _printer_url(cls, value: str) -> str:
        if value:
            from drivers.printer import parse_printer_url

            parse_printer_url(value)  # PrinterConfigError is a ValueError: names the fix
        return value

    @field_validator("document_camera")
    @classmethod
    def _camera_url(cls, value: str) -> str:
        if value:
            from drivers.document_camera import parse_camera_url

            parse_camera_url(value)  # CameraConfigError is a ValueError: names the fix
        return value


PLACEHOLDER_BANK_BIN = "970415"
PLACEHOLDER_ACCOUNT = "0000000000"


class PaymentSection(Section):
    bank_bin: str = Field(
        "970415",
        pattern=r"^[0-9]{6}$",
        description="NAPAS BIN (6 digits) of the bank holding the office's fee account, for "
        "the VietQR payment code on receipts. The default is a PLACEHOLDER: set the office's "
        "own before going live.",
    )
    account: str = Field(
        "0000000000",
        pattern=r"^[0-9A-Za-z]{1,19}$",
        description="The office's fee account number for the VietQR payment code. The "
        "default is a PLACEHOLDER: set the real account before going live.",
    )
    beneficiary: str = Field(
        "",
        max_length=100,
        description="Account holder's name printed beside the VietQR code (what the "
        "citizen's bank app will show), e.g. `UBND PHUONG 1 TP SA DEC`.",
    )
    payment_qr: bool = Field(
        True,
        description="Print a VietQR payment code on receipts with a fee; false: the receipt "
        "says to pay at the counter. No code is printed while bank_bin/account are the "
        "placeholder defaults.",
    )

    @property
    def is_placeholder(self) -> bool:
        """True while the account is the shipped placeholder (no payment code is printed)."""
        return self.bank_bin == PLACEHOLDER_BANK_BIN and self.account == PLACEHOLDER_ACCOUNT

    def warnings(self) -> list[str]:
        if self.payment_qr and self.is_placeholder:
            return [
                f"[payment] bank_bin/account are the placeholder {PLACEHOLDER_BANK_BIN}/"
                f"{PLACEHOLDER_ACCOUNT}: receipts will print no payment QR and tell citizens "
                "to pay at the counter; set the office's own bank BIN, account and "
                "beneficiary (or payment_qr = false)"
            ]
        return []


class SyncSection(Section):
    inflight_window: int = Field(
        256, ge=1, le=1000, description="Records published and not yet acknowledged, at most."
    )
    inflight_kb: int = Field(
        4096, ge=64, description="Bytes published and not yet acknowledged, at most (KiB)."
    )
    ack_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Publish a record again if central has not acked it."
    )
    reconnect_min_s: float = Field(
        1.0, gt=0, description="Backoff after the first failed connect (random, exponential)."
    )
    reconnect_max_s: float = Field(300.0, gt=0, description="Longest wait between connects.")
    heartbeat_interval_s: float = Field(60.0, ge=1, description="Seconds between heartbeats.")
    heartbeat_min_gap_s: float = Field(
        5.0,
        ge=0.5,
        le=3600,
        description="A device changing state sends a heartbeat at once, but never two within "
        "this many seconds (a flapping device cannot flood central).",
    )
    retention_days: float = Field(
        7.0, ge=0, description="Synced records are deleted from the kiosk after this many days."
    )
    max_queued: int = Field(
        100_000, ge=1, description="Records waiting to sync, at most; then filing is refused."
    )
    max_db_mb: int = Field(2048, ge=1, description="Size limit of the kiosk database, MiB.")
    min_free_disk_mb: int = Field(
        64, ge=0, description="Refuse new filings when the disk has less free space, MiB."
    )
    max_record_kb: int = Field(
        256, ge=1, le=1024, description="Largest record envelope, KiB (attachments are chunked)."
    )
    state_reply_timeout_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="Ask central for downstream state again if it has not answered "
        '(docs/protocol.md, "Downlink").',
    )
    state_max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="State requests in a row without a reply before the kiosk waits "
        "`state_idle_retry_s` (or a nudge, or a reconnect).",
    )
    state_idle_retry_s: float = Field(
        300.0, gt=0, le=86400, description="The wait after `state_max_attempts` unanswered."
    )
    state_page_items: int = Field(
        100, ge=1, le=100, description="Downlink items asked for per state request."
    )
    rpc_max_outstanding: int = Field(
        8, ge=1, le=64, description="Remote calls (remote signing) waiting at once, at most."
    )
    deaf_after_ack_timeouts: int = Field(
        3,
        ge=2,
        le=20,
        description="Connected but deaf: this many ack timeouts in a row of an in-flight "
        "record, with nothing at all heard from the broker's downlink meanwhile (no ack, "
        "state, nudge or presence) and central not known to be offline, make the kiosk "
        'reconnect for a fresh subscription (docs/protocol.md, "Connected but deaf").',
    )

    def settings(self) -> SyncSettings:
        return SyncSettings(
            inflight_window=self.inflight_window,
            inflight_bytes=self.inflight_kb * 1024,
            ack_timeout_s=self.ack_timeout_s,
            reconnect_min_s=self.reconnect_min_s,
            reconnect_max_s=self.reconnect_max_s,
            heartbeat_interval_s=self.heartbeat_interval_s,
            heartbeat_min_gap_s=self.heartbeat_min_gap_s,
            retention_s=self.retention_days * 86400,
            state_reply_timeout_s=self.state_reply_timeout_s,
            state_max_attempts=self.state_max_attempts,
            state_idle_retry_s=self.state_idle_retry_s,
            state_page_limit=self.state_page_items,
            rpc_max_outstanding=self.rpc_max_outstanding,
            deaf_after_ack_timeouts=self.deaf_after_ack_timeouts,
        )

    def outbox_options(self) -> dict[str, Any]:
        return {
            "max_queued": self.max_queued,
            "max_db_bytes": self.max_db_mb * 1024 * 1024,
            "min_free_disk_bytes": self.min_free_disk_mb * 1024 * 1024,
            "max_record_bytes": self.max_record_kb * 1024,
        }


_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HM = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"


class OfficeSection(Section):
    """The office's due-date rules (edge_agent/due_date.py, docs/due-dates.md)."""

    cutoff: str = Field(
        "15:00",
        pattern=_HM,
        description="Dossiers received at or after this time (HH:MM) count as received the "
        "next working day (NĐ 61/2018 art. 18).",
    )
    return_time: str = Field(
        "16:00", pattern=_HM, description="Time of day printed as the result's return time."
    )
    no_wait_weekdays: list[str] = Field(
        ["tuesday", "friday"],
        max_length=7,
        description="No-wait days (English weekday names): an eligible procedure whose limit "
        "is in `no_wait_limits`, received that day before the cut-off, is settled the same day.",
    )
    no_wait_limits: list[int] = Field(
        [3, 5, 7], max_length=50, description="Limits (working days) the no-wait day applies to."
    )
    thursday_weekdays: list[str] = Field(
        ["thursday"],
        max_length=7,
        description='"Thursday, no appointment" days: an eligible procedure whose limit is in '
        "`thursday_limits`, received that day before the cut-off, is settled while the "
        "citizen waits. Empty list: the office does not run it.",
    )
    thursday_limits: list[int] = Field(
        [1, 2, 3, 4, 5],
        max_length=50,
        description="Limits (working days) the Thursday rule applies to.",
    )
    extra_holidays: list[date] = Field(
        [],
        max_length=400,
        description="The office's own days off beyond the national holidays, e.g. "
        "`[2026-02-23]` (TOML dates); one list for every year.",
    )
    extra_workdays: list[date] = Field(
        [],
        max_length=400,
        description="Make-up working days (a Saturday worked in exchange for a bridge day), "
        "e.g. `[2026-01-10]`.",
    )

    @field_validator("no_wait_weekdays", "thursday_weekdays")
    @classmethod
    def _weekday_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if name.lower() not in _WEEKDAY_NAMES:
                raise ValueError(
                    f"unknown weekday {name!r}: use English names such as tuesday, friday"
                )
        return [n.lower() for n in value]

    @field_validator("no_wait_limits", "thursday_limits")
    @classmethod
    def _limits(cls, value: list[int]) -> list[int]:
        for n in value:
            if not 1 <= n <= 365:
                raise ValueError(f"limit {n} is not a number of working days from 1 to 365")
        return value

    @model_validator(mode="after")
    def _disjoint_days(self) -> OfficeSection:
        both = sorted(set(self.extra_holidays) & set(self.extra_workdays))
        if both:
            raise ValueError(
                f"{both[0].isoformat()} is in both extra_holidays and extra_workdays: keep it "
                "in one list"
            )
        return self

    def rules(self) -> OfficeRules:
        return OfficeRules(
            cutoff=time.fromisoformat(self.cutoff),
            return_time=time.fromisoformat(self.return_time),
            no_wait_weekdays=frozenset(_WEEKDAY_NAMES.index(n) for n in self.no_wait_weekdays),
            no_wait_limits=frozenset(self.no_wait_limits),
            thursday_weekdays=frozenset(_WEEKDAY_NAMES.index(n) for n in self.thursday_weekdays),
            thursday_limits=frozenset(self.thursday_limits),
            extra_holidays=frozenset(self.extra_holidays),
            extra_workdays=frozenset(self.extra_workdays),
        )


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8765"`` / ``"[::1]:8765"`` -> (host, port); ValueError naming the fix."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{listen!r} is not host:port; e.g. 127.0.0.1:8765")
    host = host.removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{host!r} is not an IP address; give a loopback address such as 127.0.0.1:8765"
        ) from None
    if not address.is_loopback:
        raise ValueError(
            f"{host} is not a loopback address: the screen's API holds citizen data and must "
            "not be reachable from the network; use 127.0.0.1:8765"
        )
    return host, int(port)


class UiSection(Section):
    listen: str = Field(
        "",
        max_length=60,
        description="Where the agent serves the screen's local HTTP API, `host:port` on a "
        "loopback address only (e.g. `127.0.0.1:8765`); empty: not served (docs/api-local.md).",
    )
    max_body_kb: int = Field(
        256, ge=4, le=4096, description="Largest request body the local API takes, KiB (413)."
    )
    max_event_clients: int = Field(
        4, ge=1, le=32, description="Screens that may hold the event stream at once (429)."
    )
    typing_method: Literal["telex", "vni"] = Field(
        "telex",
        description="How the on-screen keyboard composes Vietnamese: `telex` (aa -> â, s f r x j "
        "tones) or `vni` (a6 -> â, 1-5 tones).",
    )
    tone_style: Literal["new", "old"] = Field(
        "new",
        description="Where the keyboard puts the tone mark in oa/oe/uy: `new` (hoà, thuý) or "
        "`old` (hòa, thúy).",
    )
    idle_warning_s: float = Field(
        30.0,
        ge=5,
        le=600,
        description="Seconds before the idle timeout (`kiosk.session_idle_s`) at which the screen "
        "asks whether the citizen is still there; must be shorter than the timeout.",
    )
    speech_voice: str = Field(
        "vi",
        pattern=r"^[A-Za-z0-9_+-]{1,40}$",
        description="espeak-ng voice for the screen's read-aloud button (`vi` Northern, "
        "`vi-vn-x-central`, `vi-vn-x-south`).",
    )
    speech_binary: str = Field(
        "espeak-ng",
        min_length=1,
        max_length=200,
        description="The espeak-ng program (a name on PATH or an absolute path); missing: the "
        "read-aloud button says speech is unavailable.",
    )

    @field_validator("listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if value == "":
            return value
        split_listen(value)  # ValueError naming the fix
        return value


class IdentitySection(Section):
    """What ``aps-agent provision`` writes: the kiosk's own signing key and central's keys."""

    office: str = Field(
        "",
        max_length=64,
        description="Office code the kiosk was enrolled in (given by central at provisioning).",
    )
    central_url: str = Field(
        "",
        max_length=300,
        description="Central's HTTPS address the kiosk was provisioned from (renewal, clock "
        "check, self-test).",
    )
    signing_key: Path | None = Field(
        None,
        description="The kiosk's Ed25519 record-signing key (PKCS#8 PEM, mode 0600), made on "
        "the box by `aps-agent provision`; it never leaves the box.",
    )
    central_keys: Path | None = Field(
        None,
        description="Central's public signing keys (JSON, from provisioning): acks and "
        "everything sent down are verified against them before the kiosk acts.",
    )


class UpdateSection(Section):
    """Software updates on this box (docs/updates.md, edge_agent/updater/)."""

    prefix: Path = Field(
        Path("/opt/aps"),
        description="The install layout's root: releases/<version>/ and the current link.",
    )
    state_dir: Path = Field(
        Path("/var/lib/aps/update"),
        description="The update's state.json and its downloads (outside every release).",
    )
    trial_s: float = Field(
        300.0,
        ge=30,
        le=3600,
        description="After the switch, the new release must pass its health check within "
        "this long, or it is rolled back.",
    )
    hand_over: Literal["auto", "always"] = Field(
        "auto",
        description="How an `update` job is carried out: `auto` hands it over to the root "
        "aps-update.service (request.json) when the agent cannot write `prefix`, else "
        "applies it in the agent; `always` hands it over even when the agent could write "
        "`prefix` (a box whose agent runs as root, the end-to-end tests).",
    )
    session_wait_s: float = Field(
        1800.0,
        ge=0,
        le=86400,
        description="aps-update.service waits at most this long, before the switch and the "
        "restart, for no citizen to be in a session (asked of the local API at `[ui] "
        "listen`); still in one after that, the request stays and aps-update.path runs it again "
        "(keep it well above 5 s: systemd stops a unit started too often).",
    )


class AgentConfig(Section):
    kiosk: KioskSection
    agent: AgentSection = Field(default_factory=AgentSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    sync: SyncSection = Field(default_factory=SyncSection)
    devices: DevicesSection = Field(default_factory=DevicesSection)
    payment: PaymentSection = Field(default_factory=PaymentSection)
    office: OfficeSection = Field(default_factory=OfficeSection)
    ui: UiSection = Field(default_factory=UiSection)
    identity: IdentitySection = Field(default_factory=IdentitySection)
    update: UpdateSection = Field(default_factory=UpdateSection)

    @model_validator(mode="after")
    def _warning_before_timeout(self) -> AgentConfig:
        if self.ui.idle_warning_s >= self.kiosk.session_idle_s:
            raise ValueError(
                f"ui.idle_warning_s ({self.ui.idle_warning_s:g}) must be shorter than "
                f"kiosk.session_idle_s ({self.kiosk.session_idle_s:g}): the screen warns that "
                "long before it wipes; lower idle_warning_s or raise session_idle_s"
            )
        return self


def load_agent_config(path: Path | str, overrides: dict[str, Any] | None = None) -> AgentConfig:
    return load(AgentConfig, path, overrides)
