"""The central process: collector(s) and store, until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from central import quotas
from central.collector import Collector
from central.config import CentralConfig
from central.store import SQLiteStore

log = logging.getLogger("aps.central")


class CentralService:
    def __init__(self, cfg: CentralConfig) -> None:
        self.cfg = cfg
        cfg.central.database.parent.mkdir(parents=True, exist_ok=True)
        SQLiteStore(cfg.central.database).close()  # create the schema before the broker speaks
        limits = cfg.attachments.limits()  # [quotas] hook: attachment limits and quotas
        self.collector = Collector(
            store_factory=lambda: SQLiteStore(cfg.central.database, attachment_limits=limits),
            mqtt_settings=cfg.mqtt.settings(),
            settings=cfg.collector.settings(),
            quotas=quotas.Quotas(cfg.quotas.settings()),
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
        store = SQLiteStore(self.cfg.central.database)
        try:
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
                self.log_gap_alerts(store)
                self.housekeep(store)
        finally:
            self.collector.stop()
            self.housekeep(store)  # [quotas] hook: the last counters
            store.close()
        log.info("central stopped")
        return 0

    def housekeep(self, store: SQLiteStore, now: float | None = None) -> quotas.Housekeeping | None:
        """[quotas] hook: counters to the database, expiry, quota alerts (every 30 s)."""
        try:
            return quotas.housekeep(
                store.conn,
                self.collector.quotas,
                self.cfg.quotas.settings(),
                self.cfg.attachments.limits(),
                now=now,
            )
        except Exception:  # the collector keeps running; next round tries again
            log.exception("housekeeping failed (counters kept for the next round)")
            return None

    def log_gap_alerts(self, store: SQLiteStore, now: float | None = None) -> int:
        """Log one ALERT line per stream whose gap is older than the threshold."""
        after = self.cfg.alerts.gap_alert_after_s
        gaps = store.stale_gaps(after, now=now)
        for gap in gaps:
            log.warning(
                "ALERT kiosk %s stream %s: seqs %s were committed on the kiosk but have not "
                "reached central for over %.0f s",
                gap.kiosk,
                gap.stream,
                list(gap.missing[:20]),
                after,
            )
        return len(gaps)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_event.set()
