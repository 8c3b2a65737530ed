"""The central process: collector(s) and store, until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from central.collector import Collector
from central.config import CentralConfig
from central.store import SQLiteStore

log = logging.getLogger("aps.central")


class CentralService:
    def __init__(self, cfg: CentralConfig) -> None:
        self.cfg = cfg
        cfg.central.database.parent.mkdir(parents=True, exist_ok=True)
        SQLiteStore(cfg.central.database).close()  # create the schema before the broker speaks
        self.collector = Collector(
            store_factory=lambda: SQLiteStore(cfg.central.database),
            mqtt_settings=cfg.mqtt.settings(),
            settings=cfg.collector.settings(),
        )
        self.stop_event = threading.Event()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.collector.start()
        log.info(
            "central collector %s started; store %s; broker %s:%d",
            self.cfg.collector.client_id,
            self.cfg.central.database,
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
        )
        while not self.stop_event.wait(30):
            c = self.collector.counters
            log.info(
                "received %d, stored %d, duplicates %d, dead letters %d, batches %d",
                c.received,
                c.stored,
                c.duplicates,
                c.dead_letters,
                c.batches,
            )
        self.collector.stop()
        log.info("central stopped")
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_event.set()
