"""The kiosk application: one composition root for everything the agent serves.

Theory of operation
-------------------
:class:`KioskApp` is built once per process (``aps-agent run``, ``aps-demo``,
tests) and owns:

- the **outbox** (:class:`sync.outbox.Outbox`): ONE connection, one writer
  (its lock), shared by every service, so the screen's HTTP API may call from
  any number of threads. Every commit wakes the sync at once
  (``outbox.on_commit`` -> ``SyncClient.wake``): nothing polls.
- the **sync client** (:class:`sync.client.SyncClient`), which drains the
  outbox to central on its own thread and connection.
- the **inbox** (downlink: catalogue, statuses, answers, replies, FAQ/news),
  built by :func:`make_inbox` when ``edge_agent/inbox.py`` exists; it writes
  the ``downlink_items`` cache the services read.
- the **catalogue** in force: :meth:`catalogue` (the inbox's cached one when
  it has one, else the bundled copy).
- the **devices** (:class:`edge_agent.devices.DeviceSupervisor`) and a thread
  consuming their events: a CCCD QR or a chip read puts the identity into
  the citizen's **session**; a code scanned by the HID scanner (the slip's
  QR) is looked up in tracking; the help button queues a help request. What
  the screen should show about them is queued as :class:`Notice`
  (:meth:`next_notice`).
- the **services**: ``filing``, ``support``, ``feedback``, ``ratings``,
  ``tracking``, ``info``, ``capture`` (document camera pages, which become
  the filing's attachments) (``edge_agent/services/``): plain methods taking and
  returning plain values/dataclasses with ``to_json_dict()``; citizen errors
  are :class:`edge_agent.CitizenError` with a Vietnamese ``message_vi``.

Lifecycle: ``KioskApp(cfg)`` opens the database (creating the kiosk's tables)
and builds everything without starting a thread; :meth:`start` starts sync,
devices and the event thread; :meth:`stop` stops them in reverse order.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from drivers.document_camera import DocumentCamera
from drivers.identity import Identity
from edge_agent import CitizenError
from edge_agent.catalogue import Catalogue, CatalogueStore, bundled_catalogue
from edge_agent.catalogue import ensure_schema as ensure_catalogue_schema
from edge_agent.config import AgentConfig
from edge_agent.devices import DeviceEvent, DeviceSupervisor
from edge_agent.dossiers import DossierDesk
from edge_agent.due_date import WorkCalendar
from edge_agent.lookup_codes import SCHEMA as LOOKUP_SCHEMA
from edge_agent.services._common import Office
from edge_agent.services.capture import CaptureService
from edge_agent.services.feedback import FeedbackService
from edge_agent.services.filing import FilingService
from edge_agent.services.info import InfoService
from edge_agent.services.job_kinds import RecentLogs, register_builtin
from edge_agent.services.jobs import JobRunner
from edge_agent.services.printer_help import PrinterHelp
from edge_agent.services.ratings import RatingService
from edge_agent.services.remote_config import RemoteConfigService
from edge_agent.services.remote_signing import RemoteSigner
from edge_agent.services.support import SupportService
from edge_agent.services.tracking import TrackingService
from edge_agent.session import CitizenSession
from edge_agent.updater.agent_hook import update_health
from sync.client import SyncClient, SyncSettings
from sync.files import make_private_dir
from sync.logs import LastErrorHandler
from sync.outbox import Outbox
from sync.wire_signing import KioskIdentity

log = logging.getLogger("aps.app")

#: Notices kept for the screen, at most (oldest dropped first).
MAX_NOTICES = 64
#: Downlink kinds whose arrival the screen hears of (``downlink`` notices) ...
DOWNLINK_NOTICE_KINDS = frozenset(
    {"answer", "dossier-status", "support-reply", "faq", "news", "catalogue"}
)
#: ... and those whose key (a lookup or dossier code) goes with it.
KEYED_DOWNLINK_KINDS = frozenset({"answer", "dossier-status", "support-reply"})
#: More items of one keyed kind in one page than this: one notice with key null instead
#: (a page after a long offline spell must not push the screen's other events out).
MAX_KEYED_NOTICES = 8
AGENT_VERSION = "0.1.0"


@dataclass(frozen=True, kw_only=True)
class Notice:
    """Something the screen should react to, born of a device event.

    kinds: ``identity`` (a card was read: data is the session snapshot),
    ``tracking`` (a slip was scanned: the tracking result), ``support`` (the
    help button: the ticket), ``card_error`` / ``scan_rejected`` / ``error``
    (data has ``message_vi``), ``session`` (the citizen's session ended:
    ``{"active": false, "reason": "idle" | "ended" | "replaced"}``), ``downlink``
    (an item from central arrived: ``{"kind", "key"}``, the key a lookup or
    dossier code, or null for faq, news and catalogue).
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def make_inbox(app: KioskApp) -> object | None:
    """The downlink inbox (``edge_agent.inbox``), or None while it is not built in.

    The seam for the inbox: it gets the app (outbox, sync client, catalogue
    hook) and registers its handlers on the sync client.
    """
    try:
        module = importlib.import_module("edge_agent.inbox")
    except ModuleNotFoundError:
        return None
    factory = getattr(module, "for_app", None)
    return None if factory is None else factory(app)


class KioskApp:
    """The kiosk's application; see the module docstring."""

    def __init__(
        self,
        cfg: AgentConfig,
        *,
        devices: DeviceSupervisor | None = None,
        clock: Callable[[], datetime] | None = None,
        catalogue: Callable[[], Catalogue] | None = None,
        sync_settings: SyncSettings | None = None,
        camera: DocumentCamera | None = None,
        session_clock: Callable[[], float] | None = None,
    ) -> None:
        self.cfg = cfg
        self.started = time.monotonic()
        #: The agent's last ERROR line for the heartbeat (masked, one line); on the root
        #: logger from start() to stop().
        self.last_error = LastErrorHandler()
        self._device_states: dict[str, str] | None = None
        self.tz = ZoneInfo(cfg.kiosk.timezone)
        self._clock = clock
        # 0700 before anything creates them: the database and the receipts hold citizen data.
        make_private_dir(cfg.agent.database.parent)
        make_private_dir(cfg.agent.receipts_dir)
        self.outbox = Outbox(cfg.agent.database, cfg.kiosk.id, **cfg.sync.outbox_options())
        try:
            with self.outbox.lock:
                self.outbox.conn.executescript(LOOKUP_SCHEMA)
                ensure_catalogue_schema(self.outbox.conn)
            # The catalogue in force: the newest good one central sent (the inbox swaps
            # it inside its apply transaction, on the outbox's connection), read on a
            # connection of its own so readers never wait for the writer.
            self._catalogue_conn = sqlite3.connect(
                cfg.agent.database, check_same_thread=False, isolation_level=None, timeout=10
            )
            self.catalogues = CatalogueStore(self._catalogue_conn, fallback=bundled_catalogue())
            self._catalogue_source = catalogue or self.catalogues.current
            self.session = CitizenSession(
                idle_timeout_s=cfg.kiosk.session_idle_s,
                monotonic=session_clock or time.monotonic,
            )
            self.desk = DossierDesk(
                self.outbox,
                self.catalogue,
                WorkCalendar(cfg.office.rules()),
                agency=cfg.kiosk.agency,
                slot=cfg.kiosk.slot,
                tz=self.tz,
            )
            self.devices = devices or DeviceSupervisor(
                cfg.devices, spool_dir=cfg.agent.receipts_dir
            )
            office = Office(
                agency=cfg.kiosk.agency,
                slot=cfg.kiosk.slot,
                tz=self.tz,
                hotline=cfg.kiosk.hotline,
                now=clock,
            )
            self.filing = FilingService(
                outbox=self.outbox,
                desk=self.desk,
                cfg=cfg,
                session=self.session,
                catalogue=self.catalogue,
                printer=lambda: self.devices.printer,
                tz=self.tz,
                now=clock,
            )
            self.support = SupportService(self.outbox, office, self.session)
            # A slip that does not print calls staff, once per printer fault episode.
            # the devices' own configuration: a supervisor handed in (the demo, the browser
            # tests) names its printer there, not in cfg.devices
            self.printer_help = PrinterHelp(
                self.support, printer_configured=bool(self.devices.cfg.printer)
            )
            self.filing.after_print = self.printer_help.after_print
            self.feedback = FeedbackService(self.outbox, office)
            self.ratings = RatingService(self.outbox)
            self.tracking = TrackingService(self.outbox, tracking_url=cfg.kiosk.tracking_url)
            self.info = InfoService(self.outbox)
            if camera is None and cfg.devices.document_camera:
                camera = DocumentCamera(cfg.devices.document_camera, reopen_s=cfg.devices.reopen_s)
            self.capture = CaptureService(camera, page_max_bytes=cfg.devices.page_max_bytes)
            self.sync = SyncClient(
                database=cfg.agent.database,
                kiosk=cfg.kiosk.id,
                mqtt_settings=cfg.mqtt.settings(),
                settings=sync_settings or cfg.sync.settings(),
                identity=KioskIdentity.load(cfg.identity.signing_key, cfg.identity.central_keys),
                # The outbox above has just run quick_check on this file: once per start.
                outbox_options={**cfg.sync.outbox_options(), "check_integrity": False},
                heartbeat_fields=self._heartbeat_fields,
            )
            # Every commit in this process wakes the sync: published without polling.
            self.outbox.on_commit.append(self.sync.wake)
            self.inbox = make_inbox(self)
            # Remote signing (VNPT SmartCA, CSC/MySign) goes through central's RPC: the
            # provider's secrets stay at central (docs/signing.md).
            self.signing = RemoteSigner(self.sync.call)
            # Remote jobs and configuration from central (docs/jobs.md, docs/remote-config.md).
            self.jobs = JobRunner(self.outbox, busy=self._session_in_use)
            self.remote_config = RemoteConfigService(
                self.outbox, self._apply_remote_config, local_check=self._check_remote_config
            )
            if self.inbox is not None:
                self.jobs.install(self.inbox)
                self.remote_config.install(self.inbox)
            self.jobs.on_tick.append(self.remote_config.flush_reports)
            self._recent_logs = RecentLogs()
            register_builtin(self, self._recent_logs)
            #: Called when a remote ``restart-agent`` job asks the process to exit.
            self.on_restart: list[Callable[[], None]] = []
            self.restart_requested = threading.Event()
            self.remote_config.apply_current()
        except BaseException:
            if hasattr(self, "sync"):
                self.sync.outbox.close()
            if hasattr(self, "_catalogue_conn"):
                self._catalogue_conn.close()
            self.outbox.close()
            raise
        self._notices: deque[Notice] = deque(maxlen=MAX_NOTICES)
        self._notice_ready = threading.Condition()
        self._stop = threading.Event()
        self._started = False
        self._events_thread = threading.Thread(
            target=self._consume_events, name="kiosk-events", daemon=True
        )
        for warning in cfg.payment.warnings():
            log.warning("%s", warning)
        self.session.on_clear.append(self._session_ended)
        listeners = getattr(self.inbox, "on_applied", None)
        if isinstance(listeners, list):
            listeners.append(self._downlink_arrived)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        logging.getLogger("aps").addHandler(self._recent_logs)
        logging.getLogger().addHandler(self.last_error)
        self.sync.start()
        self.devices.start()
        self._events_thread.start()
        self.jobs.start()
        unconfirmed = self.filing.last_unconfirmed()
        if unconfirmed is not None:
            log.warning(
                "last filing %s was committed but never shown to its citizen", unconfirmed.code
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop what :meth:`start` started and close the database (also when never started)."""
        self._stop.set()
        self.jobs.stop(timeout)
        logging.getLogger("aps").removeHandler(self._recent_logs)
        logging.getLogger().removeHandler(self.last_error)
        if self._events_thread.is_alive():
            self._events_thread.join(timeout)
        self.devices.stop(timeout)
        if self._started:
            self.sync.stop(timeout)
        else:
            self.sync.outbox.close()
        self.outbox.close()
        self._catalogue_conn.close()

    def __enter__(self) -> KioskApp:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what the screen asks ------------------------------------------------------------
    def catalogue(self) -> Catalogue:
        """The catalogue in force now."""
        return self._catalogue_source()

    def set_catalogue_source(self, source: Callable[[], Catalogue]) -> None:
        """The inbox hands in its cached catalogue (swapped atomically there)."""
        self._catalogue_source = source

    def now(self) -> datetime:
        return self._clock() if self._clock is not None else datetime.now(self.tz)

    def identify(self, identity: Identity) -> dict[str, Any]:
        """A card read (or details confirmed on screen) for the citizen at the kiosk."""
        self.session.set_identity(identity)
        return self.session.snapshot().to_json_dict()

    def health(self) -> dict[str, Any]:
        """Devices, sync and outbox, JSON-ready (for the screen's status bar and checks)."""
        stats = self.outbox.stats()
        unconfirmed = self.filing.last_unconfirmed()
        return {
            "kiosk": self.cfg.kiosk.id,
            "online": self.sync.network.connected.is_set(),
            "queued": stats.queued,
            "devices": self.device_health(),
            "payment_placeholder": self.cfg.payment.is_placeholder,
            "last_unconfirmed": None if unconfirmed is None else unconfirmed.to_json_dict(),
        }

    def device_health(self) -> dict[str, dict[str, Any]]:
        """The supervised devices' health and the document camera's (opened per capture)."""
        out = self.devices.health()
        camera = self.capture.health()
        if camera is not None:
            out["document_camera"] = camera
        return out

    def _printer_state(self) -> str | None:
        """The printer's last known state (no I/O), or None without a printer."""
        printer = self.devices.printer
        return None if printer is None else printer.status().state.value

    def next_notice(self, timeout: float = 0.0) -> Notice | None:
        """The oldest notice not yet taken, waiting up to ``timeout`` seconds for one."""
        with self._notice_ready:
            self._notice_ready.wait_for(lambda: bool(self._notices), timeout)
            return self._notices.popleft() if self._notices else None

    def _session_ended(self, reason: str) -> None:
        """The citizen's session ended: their pages go, and the screen is told (no data)."""
        self.capture.clear()
        self._notify(Notice(kind="session", data={"active": False, "reason": reason}))

    def _downlink_arrived(self, items: list[tuple[str, str]]) -> None:
        """Downlink items applied: one ``downlink`` notice per (kind, key), no citizen data.

        The key is the lookup or dossier code the screen may be waiting on; FAQ, news and
        the catalogue, and more than :data:`MAX_KEYED_NOTICES` items of one kind in a page,
        are one notice per kind with key null: the screen reloads what it shows.
        """
        keys: dict[str, list[str]] = {}
        for kind, key in items:
            if kind in DOWNLINK_NOTICE_KINDS and key not in keys.setdefault(kind, []):
                keys[kind].append(key)
        for kind, of_kind in keys.items():
            if kind in KEYED_DOWNLINK_KINDS and len(of_kind) <= MAX_KEYED_NOTICES:
                for key in of_kind:
                    self._notify(Notice(kind="downlink", data={"kind": kind, "key": key}))
            else:  # unkeyed, or a flood after a long offline spell: "reload what you show"
                self._notify(Notice(kind="downlink", data={"kind": kind, "key": None}))

    def _notify(self, notice: Notice) -> None:
        with self._notice_ready:
            self._notices.append(notice)
            self._notice_ready.notify_all()

    # -- device events ---------------------------------------------------------------------
    def handle_device_event(self, event: DeviceEvent) -> Notice | None:
        """Act on one device event; returns the notice queued for the screen, if any."""
        notice: Notice | None = None
        try:
            if event.kind == "identity" and event.identity is not None:
                notice = Notice(kind="identity", data=self.identify(event.identity))
            elif event.kind == "code" and event.text is not None:
                # A slip's QR (HID scanner) or a code shown to the CDC scanner.
                notice = Notice(
                    kind="tracking", data=self.tracking.lookup(event.text).to_json_dict()
                )
            elif event.kind == "help_pressed":
                ticket = self.support.request_help(source="button")
                notice = Notice(kind="support", data=ticket.to_json_dict())
            elif event.kind == "card_removed":
                pass  # the session stays until "Kết thúc" or the idle timeout
            elif event.kind in ("card_error", "scan_rejected"):
                message = event.text if event.kind == "card_error" else None
                notice = Notice(
                    kind=event.kind,
                    data={
                        "message_vi": message
                        or "Không đọc được mã. Xin mời Ông/Bà đưa mã vào máy quét lần nữa."
                    },
                )
        except CitizenError as exc:
            notice = Notice(kind="error", data={"message_vi": exc.message_vi, "event": event.kind})
        if notice is not None:
            self._notify(notice)
        return notice

    def _consume_events(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.devices.next_event(timeout=0.5)
                self.session.expire_if_idle()
                self.printer_help.printer_seen(self._printer_state())
                self._watch_device_states()
                if event is not None:
                    self.handle_device_event(event)
            except Exception:  # the event loop must not die of one event (invariant 6)
                log.exception("device event handling failed")

    # -- remote jobs and configuration (docs/jobs.md, docs/remote-config.md) ----------------
    def _session_in_use(self) -> bool:
        """A citizen's session is in use (a remote job waits for its end)."""
        return self.session.snapshot().idle_left_s is not None

    def request_restart(self) -> None:
        """Exit the process for systemd to start it again (remote ``restart-agent``)."""
        log.warning("restarting the agent at central's request")
        self.restart_requested.set()
        for hook in self.on_restart:
            hook()

    def _check_remote_config(self, settings: dict[str, Any]) -> None:
        idle = settings.get("session_idle_s")
        if idle is not None and idle <= self.cfg.ui.idle_warning_s:
            from sync.remote_config import RemoteConfigError

            raise RemoteConfigError(
                "session_idle_s",
                f"{idle} must be longer than this kiosk's ui.idle_warning_s "
                f"({self.cfg.ui.idle_warning_s:g} s): the screen warns that long before",
            )

    def _apply_remote_config(self, settings: dict[str, Any]) -> None:
        """Put central's settings into force; a setting absent means the local one."""
        self.session.idle_timeout_s = float(
            settings.get("session_idle_s", self.cfg.kiosk.session_idle_s)
        )
        base = getattr(self, "_local_heartbeat_s", None)
        if base is None:
            base = self._local_heartbeat_s = self.sync.settings.heartbeat_interval_s
        beat = float(settings.get("heartbeat_interval_s", base))
        if beat != self.sync.settings.heartbeat_interval_s:
            self.sync.settings = dataclasses.replace(self.sync.settings, heartbeat_interval_s=beat)
        level = settings.get("log_level")
        logging.getLogger("aps").setLevel(level.upper() if level else logging.NOTSET)

    # -- heartbeat -------------------------------------------------------------------------
    def _watch_device_states(self) -> None:
        """A device changed state (paper out, cover open, unplugged, back): heartbeat now
        (the sync client rate-limits it), so central knows within seconds, not a minute."""
        states = self.devices.states()
        if self._device_states is not None and states != self._device_states:
            self.sync.heartbeat_soon()
        self._device_states = states

    def _heartbeat_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "uptime_s": int(time.monotonic() - self.started),
            "agent_version": AGENT_VERSION,
            "last_error": self.last_error.line,
        }
        try:  # the remote configuration in force (docs/remote-config.md)
            fields["config_version"] = self.remote_config.version_text()
        except Exception:
            log.exception("remote configuration version unavailable")
        try:
            fields["devices"] = self.device_health()
        except Exception:  # health must never cost the heartbeat (invariant 6)
            log.exception("device health unavailable")
        try:  # the active catalogue and the last refused one (docs/catalogue.md)
            fields["catalogue"] = self.catalogues.catalogue_status()
        except Exception:
            log.exception("catalogue status unavailable")
        if (update := update_health(self.cfg)) is not None:  # docs/updates.md
            fields["update"] = update
        return fields
