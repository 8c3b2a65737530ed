"""The kiosk agent process: sync, housekeeping, health, systemd integration."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.catalogue import bundled_catalogue
from edge_agent.catalogue import status_of_database as catalogue_status_of
from edge_agent.config import AgentConfig
from edge_agent.devices import DeviceSupervisor
from edge_agent.dossiers import DossierDesk
from edge_agent.due_date import WorkCalendar
from sync.client import SyncClient
from sync.files import make_private_dir
from sync.outbox import Outbox
from sync.systemd_notify import Notifier

log = logging.getLogger("aps.agent")


def open_desk(cfg: AgentConfig) -> DossierDesk:
    """A dossier desk over the kiosk's database (its own connection)."""
    outbox = Outbox(cfg.agent.database, cfg.kiosk.id, **cfg.sync.outbox_options())
    return DossierDesk(
        outbox,
        bundled_catalogue(),
        WorkCalendar(cfg.office.rules()),
        agency=cfg.kiosk.agency,
        slot=cfg.kiosk.slot,
        tz=ZoneInfo(cfg.kiosk.timezone),
    )


class Agent:
    """The agent process. ``devices``: a supervisor to use instead of one built from
    ``cfg.devices`` (tests and the demo hand in one over emulated devices)."""

    def __init__(self, cfg: AgentConfig, *, devices: DeviceSupervisor | None = None) -> None:
        self.cfg = cfg
        # 0700 before anything creates them: the database and the receipts hold citizen data.
        make_private_dir(cfg.agent.database.parent)
        make_private_dir(cfg.agent.receipts_dir)
        self.devices = devices or DeviceSupervisor(cfg.devices, spool_dir=cfg.agent.receipts_dir)
        self.started = time.monotonic()
        # Creating the desk makes sure the kiosk's own tables exist before sync starts.
        open_desk(cfg).outbox.close()
        self.sync = SyncClient(
            database=cfg.agent.database,
            kiosk=cfg.kiosk.id,
            mqtt_settings=cfg.mqtt.settings(),
            settings=cfg.sync.settings(),
            # open_desk() has just run quick_check on this file: once per start.
            outbox_options={**cfg.sync.outbox_options(), "check_integrity": False},
            heartbeat_fields=self._heartbeat_fields,
        )
        self.stop_event = threading.Event()

    def _heartbeat_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "uptime_s": int(time.monotonic() - self.started),
            "agent_version": "0.1.0",
        }
        try:
            fields["devices"] = self.devices.health()
        except Exception:  # health must never cost the heartbeat (invariant 6)
            log.exception("device health unavailable")
        try:  # the active catalogue and the last refused one (docs/catalogue.md)
            fields["catalogue"] = catalogue_status_of(self.cfg.agent.database)
        except Exception:
            log.exception("catalogue status unavailable")
        return fields

    def run(self) -> int:
        notifier = Notifier()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.sync.start()
        self.devices.start()
        log.info(
            "agent for kiosk %s started; database %s; broker %s:%d",
            self.cfg.kiosk.id,
            self.cfg.agent.database,
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
        )
        notifier.ready(f"kiosk {self.cfg.kiosk.id} running")
        interval = notifier.watchdog_interval_s or 5.0
        while not self.stop_event.wait(min(interval, 5.0)):
            # Ping the watchdog only while the sync thread is alive: a hung agent
            # gets restarted by systemd.
            if self.sync.is_alive():
                notifier.watchdog()
                stats = self.sync.counters
                notifier.status(
                    f"published {stats.published}, acked {stats.acked}, "
                    f"online {self.sync.network.connected.is_set()}"
                )
            else:
                log.error("sync thread died; not pinging the watchdog")
        notifier.stopping()
        self.devices.stop()
        self.sync.stop()
        log.info("agent stopped")
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        self.stop_event.set()
