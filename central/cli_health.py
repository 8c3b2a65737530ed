"""``aps-central fleet`` and ``aps-central fleet show KIOSK`` (docs/fleet.md).

Thin: loads central.toml, opens the store read-only, reads :func:`central.fleet.health.health_rows`
and :func:`central.fleet.heartbeats.health_history`, and prints what
:mod:`central.fleet.fleet_table` renders. Never writes the database.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from central.cli_db import open_backoffice
from central.config import CentralConfig, load_central_config
from central.fleet.duplicates import duplicate_identities
from central.fleet.fleet_table import (
    SORT_KEYS,
    FleetRow,
    devices_summary,
    render_table,
    row_json,
    sort_rows,
    summary_line,
    when,
)
from central.fleet.health import (
    KioskHealth,
    OverallState,
    Thresholds,
    health_rows,
    overall_state,
    sample_health,
)
from central.fleet.heartbeats import HealthSample, health_history
from central.humanize import age
from central.store import SQLiteStore, StoreError, StoreMissing
from sync.config import ConfigError

if TYPE_CHECKING:
    from central.store_pg import PostgresStore

DEFAULT_CONFIG = "/etc/aps/central.toml"
_SINCE_RE = re.compile(r"\A([0-9]{1,5})([mhd])\Z")

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Central's TOML configuration file.",
)


class _Views:
    """The fleet file (registry) and, with ``[central] store = "postgresql"``, the
    records' store where the collectors write the status rows and history; read-only."""

    def __init__(
        self, conn: sqlite3.Connection, close: Callable[[], None], records: PostgresStore | None
    ) -> None:
        self.conn, self._close, self.records = conn, close, records

    def health(self) -> list[KioskHealth]:
        return health_rows(self.conn, self.records)

    def history(self, kiosk: str, since: float) -> list[HealthSample]:
        if self.records is not None:
            return self.records.health_history(kiosk, since)
        return health_history(self.conn, kiosk, since=since)

    def close(self) -> None:
        self._close()
        if self.records is not None:
            self.records.close()


def _open(config_path: str) -> tuple[CentralConfig, _Views]:
    try:
        cfg = load_central_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if cfg.central.store == "postgresql":
        # Registry, identity alerts and status rows all in PostgreSQL (read-only sessions).
        conn = open_backoffice(cfg.central, config_path, read_only=True)
        try:
            records = open_status_source(cfg, config_path)
        except click.ClickException:
            conn.close()
            raise
        return cfg, _Views(conn, conn.close, records)
    try:
        fleet = SQLiteStore.open_readonly(cfg.central.database)
    except StoreMissing as exc:
        raise click.ClickException(f"{exc}: check central.database in {config_path}") from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    return cfg, _Views(fleet.conn, fleet.close, None)


def open_status_source(cfg: CentralConfig, config_path: str) -> PostgresStore | None:
    """The PostgreSQL store, read-only, when the collectors write the status rows there
    (``[central] store = "postgresql"``); None when they are in the SQLite file."""
    if cfg.central.store != "postgresql" or cfg.central.postgresql_dsn is None:
        return None
    import psycopg  # only when it is used

    from central.store_pg import PostgresStore

    try:
        return PostgresStore.open_readonly(cfg.central.postgresql_dsn.get_secret_value())
    except (psycopg.OperationalError, StoreMissing) as exc:
        raise click.ClickException(
            f"cannot read the PostgreSQL store: {str(exc).strip()}; check"
            f" central.postgresql_dsn in {config_path}"
        ) from None


def _limits(cfg: CentralConfig, stale_after: float | None) -> Thresholds:
    limits = cfg.fleet.thresholds()
    if stale_after is not None:
        limits = dataclasses.replace(limits, offline_after_s=stale_after)
    return limits


def _rows(store: _Views, limits: Thresholds, now: float) -> list[FleetRow]:
    duplicates = duplicate_identities(store.conn)
    out = []
    for h in store.health():
        state, reasons = overall_state(h, now, limits)
        pairs = tuple(tuple(p) for p in duplicates.get(h.kiosk, []))
        out.append(
            FleetRow(health=h, state=state, reasons=tuple(reasons), duplicate_identity=pairs)
        )
    return out


stale_option = click.option(
    "--stale-after",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds without being heard after which a kiosk counts as offline "
    "(default: [fleet] offline_after_s, 180).",
)


@click.group(invoke_without_command=True)
@config_option
@click.option("--office", "offices", multiple=True, help="Only this office (repeatable).")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in OverallState]),
    help="Only kiosks in this state (repeatable).",
)
@click.option("--problems", is_flag=True, help="Only kiosks that are not operational.")
@click.option(
    "--sort",
    "sort_key",
    type=click.Choice(SORT_KEYS),
    default="kiosk",
    show_default=True,
    help="Order: kiosk id, office, state (worst first), heard (longest silent first), "
    "queue (largest first).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines for scripts, one per kiosk.")
@stale_option
@click.pass_context
def fleet(
    ctx: click.Context,
    config_path: str,
    offices: tuple[str, ...],
    states: tuple[str, ...],
    problems: bool,
    sort_key: str,
    as_json: bool,
    stale_after: float | None,
) -> None:
    """Every kiosk's state at a glance: a table with a summary line (or JSON lines).

    The state is derived now from what central last heard (docs/fleet.md): operational,
    degraded, offline, never-seen, revoked, updating or inconsistent, with the reasons.
    """
    if ctx.invoked_subcommand is not None:  # `fleet --config X show K` works as well
        ctx.obj = {"config": config_path, "stale_after": stale_after}
        return
    cfg, store = _open(config_path)
    try:
        now = time.time()
        rows = _rows(store, _limits(cfg, stale_after), now)
    finally:
        store.close()
    if offices:
        rows = [r for r in rows if r.health.office in offices]
    if states:
        rows = [r for r in rows if r.state.value in states]
    if problems:
        rows = [r for r in rows if r.state is not OverallState.OPERATIONAL]
    rows = sort_rows(rows, sort_key, now)
    if as_json:
        for r in rows:
            click.echo(json.dumps(row_json(r, now), ensure_ascii=False))
        return
    for line in render_table(rows, now):
        click.echo(line)
    click.echo(summary_line(rows))


def _since(text: str) -> float:
    match = _SINCE_RE.match(text.strip())
    if match is None:
        raise click.BadParameter(
            f"{text!r}: give a number and m, h or d, e.g. 90m, 24h, 7d", param_hint="--since"
        )
    return int(match[1]) * {"m": 60, "h": 3600, "d": 86400}[match[2]]


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1024 * 1024):.0f} MiB"


def _show_lines(h: KioskHealth, state: OverallState, reasons: list[str], now: float) -> list[str]:
    heard = None if h.last_heard_at is None else now - h.last_heard_at
    where = ", ".join(
        x
        for x in (
            f"office {h.office}" if h.office else None,
            f"slot {h.slot}" if h.slot is not None else None,
            h.location,
            f"registry {h.registry}",
        )
        if x
    )
    update = h.update or {}
    lines = [
        f"Kiosk       {h.kiosk} ({where})",
        f"State       {state.value}" + (f": {'; '.join(reasons)}" if reasons else ""),
        f"Heard       {age(heard)} ago ({when(h.last_heard_at)}); presence {h.presence or '-'}"
        f" since {when(h.presence_at)}",
        f"Queue       {'-' if h.queued is None else h.queued} records,"
        f" oldest {age(h.oldest_queued_s)}",
        f"Disk free   {_mib(h.disk_free_bytes)}",
        "Clock       "
        + ("-" if h.clock_offset_s is None else f"{h.clock_offset_s:+.1f} s against central"),
        f"Agent       {h.agent_version or '-'}, up {age(h.uptime_s)};"
        f" catalogue {h.catalogue_version or '-'}; config {h.config_version or '-'}",
    ]
    if update:
        lines.append(
            f"Update      {update.get('state')} {update.get('version') or ''}"
            f" (from {update.get('previous') or '-'}) {update.get('reason') or ''}".rstrip()
        )
    lines.append(f"Last error  {h.last_error or '-'}")
    lines.append("Devices" + ("" if h.devices else "     -"))
    for name, dev in sorted(h.devices.items()):
        extra = "; ".join(
            f"{k} {dev[k]}" for k in ("since", "last_error", "pending_receipts") if dev.get(k)
        )
        lines.append(f"  {name:<18} {dev.get('state', '-'):<16} {extra}".rstrip())
    return lines


@fleet.command("show")
@click.option(
    "--config",
    "config_path",
    default=None,
    help=f"Central's TOML configuration file.  [default: {DEFAULT_CONFIG}]",
)
@click.argument("kiosk_id")
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="How far back the history goes: a number and m, h or d.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object for scripts.")
@stale_option
@click.pass_context
def fleet_show(
    ctx: click.Context,
    config_path: str | None,
    kiosk_id: str,
    since: str,
    as_json: bool,
    stale_after: float | None,
) -> None:
    """One kiosk: its health, each device, and its history (one sample per interval)."""
    parent = ctx.obj or {}
    config_path = config_path or parent.get("config") or DEFAULT_CONFIG
    stale_after = stale_after if stale_after is not None else parent.get("stale_after")
    back = _since(since)
    cfg, store = _open(config_path)
    try:
        now = time.time()
        limits = _limits(cfg, stale_after)
        match = [r for r in _rows(store, limits, now) if r.health.kiosk == kiosk_id]
        samples = store.history(kiosk_id, now - back)
    finally:
        store.close()
    if not match:
        raise click.ClickException(
            f"no kiosk {kiosk_id!r}: central has neither heard from it nor enrolled it"
            " (aps-central fleet lists every kiosk)"
        )
    row = match[0]
    if as_json:
        out = row_json(row, now)
        out["history"] = [
            {
                **dataclasses.asdict(s),
                "state": overall_state(sample_health(s, row.health), s.at, limits)[0].value,
            }
            for s in samples
        ]
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    for line in _show_lines(row.health, row.state, list(row.reasons), now):
        click.echo(line)
    click.echo(f"History     {len(samples)} samples since {when(now - back)}")
    for s in samples:
        state, reasons = overall_state(sample_health(s, row.health), s.at, limits)
        queue = "-" if s.queued is None else str(s.queued)
        devices = devices_summary({k: {"state": v} for k, v in s.devices.items()})
        click.echo(
            f"  {when(s.at)}  {state.value:<12} queue {queue:<5} disk {_mib(s.disk_free_bytes):<9}"
            f" {devices}" + (f"  ({'; '.join(reasons)})" if reasons else "")
        )
