"""The central process: collector(s), store and downlink service, until stopped.

The downlink service (:mod:`central.downlink`) rides on the collector's MQTT
connection: state replies, remote calls (``self.downlink.register_rpc``) and
nudges.

Under systemd (``Type=notify``) it says READY=1 once the collector runs and
pings the watchdog (WATCHDOG=1) only while the collector's writer loop makes
progress: a writer stuck in a commit, or dead, stops the pings and systemd
restarts the service after ``WatchdogSec``.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, cast

from central import answers, backoffice_db, dossiers, quotas, reports
from central.amqp_source import AmqpCollector
from central.collector import Collector
from central.config import CentralConfig
from central.downlink import DownlinkService
from central.fleet import desired_config, rollout
from central.fleet import jobs as fleet_jobs
from central.fleet.alert_sources import DesiredVersions
from central.fleet.alert_watch import AlertWatch, watch_from_config
from central.fleet.lifecycle import KioskState
from central.fleet.registry import Registry
from central.signing import signing_service
from central.store import SQLiteStore
from central.stores import open_store
from central.support_router import SupportRouter
from sync.files import make_private_dir
from sync.systemd_notify import Notifier

if TYPE_CHECKING:
    from central.store_pg import PostgresStore
    from central.web.server import ApiServer

log = logging.getLogger("aps.central")

REPORT_EVERY_S = 30.0
DEFAULT_WRITER_STALL_S = 60.0


def format_ranges(gaps: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in gaps)


class CentralService:
    def __init__(self, cfg: CentralConfig, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        db = cfg.central.database
        make_private_dir(db.parent)  # 0700: the store holds citizen data
        # [central] store: everything (records, back office, registry, fleet) lives in the
        # SQLite file, or all of it in PostgreSQL (docs/scale.md).
        self.target = backoffice_db.target_of(cfg.central)
        # Create the schema (or run the migrations) before the broker speaks.
        open_store(cfg).close()
        backoffice_db.connect(self.target).close()
        # Who may send (the registry, in the same database) and central's own signing key:
        # records are verified against the first, acks and the downlink signed with the other.
        self.registry = Registry(self.target)
        self.signing_key = cfg.security.load_signing_key()
        self.collector: Collector | AmqpCollector
        if cfg.collector.source == "amqp":  # competing consumers on a RabbitMQ cluster
            self.collector = AmqpCollector(
                store_factory=lambda: open_store(cfg),
                settings=cfg.amqp_settings(),
                keys=self.registry,
                signing_key=self.signing_key,
                quotas=quotas.Quotas(cfg.quotas.settings()),
            )
        else:
            self.collector = Collector(
                store_factory=lambda: open_store(cfg),  # [central] store
                mqtt_settings=cfg.mqtt.settings(),
                settings=cfg.collector.settings(),
                keys=self.registry,
                signing_key=self.signing_key,
                quotas=quotas.Quotas(cfg.quotas.settings()),
            )
        # State replies, remote calls and nudges, on the collector's connection.
        # Other parts register their remote methods on it before run():
        # ``service.downlink.register_rpc("sign.start", fn)``.
        self.downlink = DownlinkService(
            database=self.target,
            publish=self._publish_down,
            signing_key=self.signing_key,
            settings=cfg.downlink.settings(),
        )
        self.collector.downlink = self.downlink
        self.collector.key_announcement = cfg.security.key_announcement()
        self.collector.on_verified = self._kiosk_verified
        # Remote signing (docs/signing.md): sign.start / sign.poll over the downlink's RPC.
        self.signing = signing_service(cfg.signing.settings())
        for method, handler in self.signing.rpc_handlers().items():
            self.downlink.register_rpc(method, handler)
        self.notifier = Notifier() if notifier is None else notifier
        # The writer counts as stuck after half the watchdog period without
        # progress (systemd then restarts us within another WatchdogSec).
        self.writer_stall_s = self.notifier.watchdog_interval_s or DEFAULT_WRITER_STALL_S
        self.stop_event = threading.Event()
        self._pinging = True
        self.support_router: SupportRouter | None = None
        # Fleet alerts: the engine's thread; ``desired_versions(conn) -> {kiosk: version}``
        # turns on the software-behind rule: the rollouts' desired version per kiosk.
        self.alert_watch: AlertWatch | None = None
        self.desired_versions: DesiredVersions | None = rollout.desired_versions
        self.api_server: ApiServer | None = None
        self._backoffice: sqlite3.Connection | None = None

    def start_staff_side(self) -> None:
        """The support router's thread, and the HTTP API's when ``[api] listen`` is set."""
        self.support_router = SupportRouter(
            self.target,
            self.cfg.notify.notifier(),
            self.cfg.support_settings(),
            every_s=self.cfg.support.route_every_s,
        )
        self.support_router.start()
        if self.cfg.alerts.engine_enabled:  # fleet alerts (docs/alerts.md), their own thread
            self.alert_watch = watch_from_config(self.cfg, self.desired_versions)
            self.alert_watch.start()
        address = self.cfg.api.host_port()
        if address is not None:
            from central.web.app import app_from_config
            from central.web.server import ApiServer

            app, tls = app_from_config(self.cfg)  # HTTPS when [enrolment] is enabled
            app.state.collector_counters = self.collector.counters  # for GET /metrics
            self.api_server = ApiServer(app, *address, tls=tls)
            self.api_server.start()

    def stop_staff_side(self) -> None:
        if self.api_server is not None:
            self.api_server.stop()
        if self.support_router is not None:
            self.support_router.stop()
        if self.alert_watch is not None:
            self.alert_watch.stop()

    def _kiosk_verified(self, kiosk: str) -> None:
        """A pending kiosk's first record signed with its enrolled key: it is active now."""
        sender = self.registry.sender(kiosk)
        if sender is not None and sender.state is KioskState.PENDING:
            self.registry.mark_connected(kiosk)
            log.info("kiosk %s sent its first signed record: active", kiosk)

    def _publish_down(self, topic: str, payload: bytes) -> None:
        self.collector.publish(topic, payload)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.downlink.start()
        self.collector.start()
        try:
            self.start_staff_side()
        except BaseException:
            self.stop_staff_side()
            self.collector.stop()
            self.downlink.stop()
            self.signing.close()
            raise
        log.info(
            "central collector %s started; store %s; %s",
            self.cfg.collector.client_id,
            self.target,
            self._source_text(),
        )
        self.notifier.ready(f"collector {self.cfg.collector.client_id} running")
        rollout_every = self.cfg.updates.tick_s  # [updates] hook: the rollout's own pace
        tick = min(self.notifier.watchdog_interval_s or 5.0, 5.0, rollout_every)
        next_report = time.monotonic() + REPORT_EVERY_S
        next_rollout = time.monotonic() + rollout_every
        # The records' housekeeping and gap alerts, on the configured store.
        records = cast("SQLiteStore | PostgresStore", open_store(self.cfg))
        try:
            while not self.stop_event.wait(tick):
                self.feed_watchdog()
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + REPORT_EVERY_S
                    self._report(records)
                    self.housekeep(records)
                if time.monotonic() >= next_rollout:
                    next_rollout = time.monotonic() + rollout_every
                    self.tick_rollout(records)
        finally:
            self.notifier.stopping()
            self.stop_staff_side()
            self.collector.stop()
            self.downlink.stop()
            self.signing.close()
            self.housekeep(records)  # [quotas] hook: the last counters
            records.close()
            if self._backoffice is not None:
                self._backoffice.close()
        log.info("central stopped")
        return 0

    def _source_text(self) -> str:
        if self.cfg.collector.source == "amqp":
            return f"AMQP queue {self.cfg.amqp.queue} on {len(self.cfg.amqp.urls)} node(s)"
        return f"broker {self.cfg.mqtt.host}:{self.cfg.mqtt.port}"

    def tick_rollout(self, records: SQLiteStore | PostgresStore) -> None:
        """[updates] hook: advance or stop the running rollout (docs/updates.md).

        The rollout's rows are the back office's; the kiosks' status rows are the
        records store's (``records``), in the same database either way.
        """
        try:
            conn = self.backoffice()
            status = None if isinstance(records, SQLiteStore) else records  # SQLite: conn's
            done = rollout.tick(conn, status=status)
            ordered = rollout.dispatch_jobs(conn, status=status)
        except Exception:  # a rollout problem must never stop the collector
            log.exception("rollout tick failed")
            return
        if done:
            log.info("rollout: %s", done)
        if ordered:
            log.info("rollout: update ordered on %s", ", ".join(ordered))

    def feed_watchdog(self, now: float | None = None) -> bool:
        """Ping the watchdog if the writer loop made progress lately; True if it pinged."""
        stalled_for = self.collector.writer_stalled_for(now)
        alive = self.collector.writer_alive()
        if alive and stalled_for < self.writer_stall_s:
            if not self._pinging:
                log.warning("collector writer is making progress again; watchdog fed")
            self._pinging = True
            self.notifier.watchdog()
            c = self.collector.counters
            self.notifier.status(f"stored {c.stored}, batches {c.batches}, errors {c.store_errors}")
            return True
        if self._pinging:
            log.error(
                "collector writer %s for %.0f s: not feeding the watchdog",
                "made no progress" if alive else "is dead",
                stalled_for,
            )
        self._pinging = False
        return False

    def _report(self, store: SQLiteStore | PostgresStore) -> None:
        c = self.collector.counters
        log.info(
            "received %d, stored %d, duplicates %d, dead letters %d, batches %d",
            c.received,
            c.stored,
            c.duplicates,
            c.dead_letters,
            c.batches,
        )
        d = self.downlink.counters
        log.info(
            "downlink: %d state requests, %d replies (%d items), %d nudges, %d rpc (%d errors), "
            "%d throttled, %d dropped (queue full), %d invalid, %d office conflicts",
            d.state_requests,
            d.state_replies,
            d.items_sent,
            d.nudges,
            d.rpc_requests,
            d.rpc_errors,
            d.throttled,
            d.queue_full,
            d.invalid,
            d.office_conflicts,
        )
        self.log_gap_alerts(store)

    def housekeep(
        self, store: SQLiteStore | PostgresStore, now: float | None = None
    ) -> quotas.Housekeeping | None:
        """[quotas] hook: counters to the database, expiry, quota alerts (every 30 s)."""
        self.project_backoffice()
        try:
            return store.housekeep(
                self.collector.quotas,
                self.cfg.quotas.settings(),
                self.cfg.attachments.limits(),
                now=now,
            )
        except Exception:  # the collector keeps running; next round tries again
            log.exception("housekeeping failed (counters kept for the next round)")
            return None

    def backoffice(self) -> sqlite3.Connection:
        """The main loop's own back-office connection (opened once, on first use)."""
        if self._backoffice is None:
            self._backoffice = backoffice_db.connect(self.target)
        return self._backoffice

    def project_backoffice(self) -> int:
        """Fold new records into the back office's indexes (dossiers, inquiries, ratings).

        Every back-office query catches up by itself too; doing it here keeps
        each catch-up small. Returns how many records were folded in.
        """
        try:
            conn = self.backoffice()
            window = self.cfg.dossiers.duplicate_window_s
            return (
                dossiers.project(conn, duplicate_window_s=window)
                + answers.project(conn)
                + reports.project(conn)
                # fleet operations: job reports (and deadlines persisted), config reports
                + fleet_jobs.project(conn)
                + desired_config.project(conn)
            )
        except Exception:  # the collector keeps running; next round tries again
            log.exception("back-office projection failed (it resumes next round)")
            return 0

    def log_gap_alerts(self, store: SQLiteStore | PostgresStore, now: float | None = None) -> int:
        """Log one ALERT line per stale gap (at most ``report_limit``); returns how many."""
        after, limit = self.cfg.alerts.gap_alert_after_s, self.cfg.alerts.report_limit
        total = store.stale_gap_count(after, now=now)
        if not total:
            return 0
        for gap in store.stale_gaps(after, now=now, limit=limit, max_ranges=5):
            more = gap.gap_count - len(gap.gaps)
            log.warning(
                "ALERT kiosk %s stream %s: %d seqs in %d ranges (%s%s) were committed on the "
                "kiosk but have not reached central for over %.0f s",
                gap.kiosk,
                gap.stream,
                gap.missing_count,
                gap.gap_count,
                format_ranges(gap.gaps),
                f" and {more} more ranges" if more > 0 else "",
                after,
            )
        if total > limit:
            log.warning(
                "ALERT and %d more streams with gaps older than %.0f s", total - limit, after
            )
        return total

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_event.set()
