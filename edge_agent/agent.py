"""The kiosk agent process: the kiosk application under systemd (ready, watchdog, stop)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from edge_agent.catalogue import bundled_catalogue
from edge_agent.config import AgentConfig
from edge_agent.devices import DeviceSupervisor
from edge_agent.dossiers import DossierDesk
from edge_agent.due_date import WorkCalendar
from edge_agent.updater.agent_hook import start_trial
from edge_agent.updater.job import register_update_job
from sync.outbox import Outbox
from sync.systemd_notify import Notifier

if TYPE_CHECKING:
    from edge_agent.api import ApiServer

log = logging.getLogger("aps.agent")


def open_desk(cfg: AgentConfig) -> DossierDesk:
    """A dossier desk over the kiosk's database (its own connection; tools and tests).

    The agent itself files through :class:`edge_agent.app.KioskApp`.
    """
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
    """The agent process: runs the kiosk application (:class:`edge_agent.app.KioskApp`).

    ``devices``: a supervisor to use instead of one built from ``cfg.devices``
    (tests and the demo hand in one over emulated devices).
    """

    def __init__(self, cfg: AgentConfig, *, devices: DeviceSupervisor | None = None) -> None:
        from edge_agent.app import KioskApp

        self.cfg = cfg
        self.app = KioskApp(cfg, devices=devices)
        self.devices = self.app.devices
        self.sync = self.app.sync
        self.stop_event = threading.Event()
        # A remote restart-agent job: stop cleanly; systemd (Restart=always) starts us again.
        self.app.on_restart.append(self.stop_event.set)
        self.api: ApiServer | None = None
        self.exit_code = 0  # 3: the release on trial found itself unhealthy (updater)
        # the "update" job kind, on the app's job runner once it has one (docs/updates.md)
        register_update_job(self.app)

    def start_api(self) -> None:
        """Serve the screen's local API (``[ui] listen``) on a thread, when configured."""
        if not self.cfg.ui.listen:
            return
        from edge_agent.api import ApiServer

        self.api = ApiServer(
            self.app,
            self.cfg.ui.listen,
            max_body_kb=self.cfg.ui.max_body_kb,
            max_event_clients=self.cfg.ui.max_event_clients,
        )
        self.api.start()

    def run(self) -> int:
        notifier = Notifier()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.app.start()
        try:
            self.start_api()
        except (OSError, RuntimeError) as exc:
            # The screen is down, but what is queued still syncs and the help button works.
            log.error("local API not served on %s: %s", self.cfg.ui.listen, exc)
        log.info(
            "agent for kiosk %s started; database %s; broker %s:%d",
            self.cfg.kiosk.id,
            self.cfg.agent.database,
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
        )
        notifier.ready(f"kiosk {self.cfg.kiosk.id} running")
        start_trial(self)  # a release just switched to checks itself (docs/updates.md)
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
        if self.api is not None:
            self.api.stop()
        self.app.stop()
        log.info("agent stopped")
        return self.exit_code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        self.stop_event.set()
