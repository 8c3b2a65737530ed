"""Prometheus metrics of the fleet, computed from central's database when scraped.

:class:`FleetCollector` is a prometheus-client custom collector: each scrape reads the
database once (kiosk health, alerts, dead letters, dossiers) and, when central's collector
runs in the same process, its counters. Nothing is kept between scrapes, so the numbers are
never stale and a restart loses nothing but the collector's own counters (which Prometheus
handles as a counter reset). Labels are bounded: states, kinds, severities and offices, never
kiosk ids (a fleet of thousands must not make thousands of series per metric).

Metric names are listed in docs/alerts.md ("/metrics").
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from central.fleet.alert_rules import KINDS, SEVERITIES
from central.fleet.health import OverallState, Thresholds, health_rows, overall_state

__all__ = ["FleetCollector", "registry_for"]


def _rows(conn: sqlite3.Connection, sql: str) -> list[Any]:
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # that part of central never ran: nothing to count
        return []


class FleetCollector(Collector):
    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        counters: Any = None,
        thresholds: Thresholds | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.counters = counters  # central.collector.CollectorCounters, when in-process
        self.thresholds = thresholds
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._kiosks()
        yield from self._alerts()
        yield from self._ingest()
        yield from self._dossiers()

    def _kiosks(self) -> Iterator[Metric]:
        now = self.clock()
        states: Counter[str] = Counter()
        per_office: Counter[tuple[str, str]] = Counter()
        lag = GaugeMetricFamily(
            "aps_ingest_lag_seconds",
            "Age of the oldest record kiosks still hold unsent (their last heartbeat)",
            labels=["stat"],
        )
        lags = []
        queued = 0
        for h in health_rows(self.conn):
            state, _ = overall_state(h, now, self.thresholds)
            states[state.value] += 1
            per_office[(h.office or "-", state.value)] += 1
            if h.oldest_queued_s is not None:
                lags.append(h.oldest_queued_s)
            queued += h.queued or 0
        g = GaugeMetricFamily("aps_kiosks", "Kiosks by overall state", labels=["state"])
        for each in OverallState:
            g.add_metric([each.value], states.get(each.value, 0))
        yield g
        g = GaugeMetricFamily(
            "aps_office_kiosks", "Kiosks by office and overall state", labels=["office", "state"]
        )
        for (office, name), n in sorted(per_office.items()):
            g.add_metric([office, name], n)
        yield g
        lag.add_metric(["max"], max(lags, default=0.0))
        lag.add_metric(["sum"], sum(lags))
        yield lag
        yield GaugeMetricFamily(
            "aps_kiosk_queued_records", "Records queued on kiosks (their last heartbeat)", queued
        )

    def _alerts(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "aps_alerts_open",
            "Alerts open or acknowledged, by kind, severity and state",
            labels=["kind", "severity", "state"],
        )
        found = {
            (k, sev, st): n
            for k, sev, st, n in _rows(
                self.conn,
                "SELECT kind, severity, state, count(*) FROM alerts"
                " WHERE state IN ('open', 'acknowledged') GROUP BY kind, severity, state",
            )
        }
        for kind in KINDS:  # every kind's open count, zero included: rate() and absent() work
            for sev in SEVERITIES:
                g.add_metric([kind, sev, "open"], found.pop((kind, sev, "open"), 0))
        for (kind, sev, st), n in sorted(found.items()):
            g.add_metric([kind, sev, st], n)
        yield g
        pending = _rows(
            self.conn,
            "SELECT count(*) FROM alerts WHERE notify_due IS NOT NULL AND notify_attempts > 0",
        )
        yield GaugeMetricFamily(
            "aps_alert_notifications_failing",
            "Alert notifications that failed at least once and wait for a retry",
            pending[0][0] if pending else 0,
        )

    def _ingest(self) -> Iterator[Metric]:
        stored = _rows(self.conn, "SELECT coalesce(sum(records), 0) FROM kiosk_usage")
        yield GaugeMetricFamily(
            "aps_records_stored", "Records central holds", stored[0][0] if stored else 0
        )
        dead = _rows(self.conn, "SELECT count(*) FROM dead_letters")
        yield GaugeMetricFamily(
            "aps_dead_letters", "Dead letters central keeps", dead[0][0] if dead else 0
        )
        c = self.counters
        if c is not None:
            yield CounterMetricFamily(
                "aps_records_ingested", "Records stored by this collector process", c.stored
            )
            yield CounterMetricFamily(
                "aps_messages_received", "Messages received by this collector process", c.received
            )
            yield CounterMetricFamily(
                "aps_records_duplicate", "Duplicate records received (already stored)", c.duplicates
            )
            yield CounterMetricFamily(
                "aps_dead_lettered",
                "Messages dead-lettered by this collector process",
                c.dead_letters,
            )
            yield CounterMetricFamily(
                "aps_store_errors", "Store transactions that failed in this process", c.store_errors
            )

    def _dossiers(self) -> Iterator[Metric]:
        m = CounterMetricFamily(
            "aps_dossiers_filed", "Dossiers filed, by office", labels=["office"]
        )
        for office, n in _rows(
            self.conn, "SELECT office, count(*) FROM dossier_index GROUP BY office ORDER BY office"
        ):
            m.add_metric([office], n)
        yield m


def registry_for(
    conn: sqlite3.Connection, *, counters: Any = None, thresholds: Thresholds | None = None
) -> CollectorRegistry:
    """A dedicated registry (never the global one) holding one :class:`FleetCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(conn, counters=counters, thresholds=thresholds))
    return registry
