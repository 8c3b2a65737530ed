"""``aps-central alerts``: list, show and acknowledge fleet alerts; read and tune the rules.

Thin over :mod:`central.fleet.alerts` and :mod:`central.fleet.alert_rules`. Listings open
the database read-only and never create one; changes (``ack``, ``rules set``) are audited
with the actor ``cli:<unix user>`` (``--as NAME`` puts a staff member's name in front).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from central.cli_backoffice import actor as cli_actor
from central.cli_db import open_backoffice
from central.cli_support import DEFAULT_CONFIG, load_config
from central.config import CentralConfig
from central.fleet import alert_rules, alerts
from central.humanize import age

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
SORTS = ("newest", "oldest", "severity", "kiosk", "office", "kind")

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Central's TOML configuration file.",
)


@contextmanager
def _read(config_path: str) -> Iterator[tuple[sqlite3.Connection, CentralConfig]]:
    cfg = load_config(config_path)
    conn = open_backoffice(cfg.central, config_path, read_only=True)
    try:
        yield conn, cfg
    except (alerts.AlertError, alert_rules.RuleError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        conn.close()


@contextmanager
def _write(config_path: str) -> Iterator[tuple[sqlite3.Connection, CentralConfig]]:
    cfg = load_config(config_path)
    conn = open_backoffice(cfg.central, config_path, must_exist=False)
    try:
        yield conn, cfg
    except (alerts.AlertError, alert_rules.RuleError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        conn.close()


def _iso(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def _sorted(items: list[alerts.Alert], how: str) -> list[alerts.Alert]:
    keys: dict[str, Any] = {
        "newest": lambda a: -a.id,
        "oldest": lambda a: a.id,
        "severity": lambda a: (SEVERITY_ORDER.get(a.severity, 9), a.opened_at),
        "kiosk": lambda a: (a.kiosk, -a.id),
        "office": lambda a: (a.office or "", -a.id),
        "kind": lambda a: (a.kind, -a.id),
    }
    return sorted(items, key=keys[how])


@click.group("alerts", invoke_without_command=True)
@config_option
@click.option("--office", "offices", multiple=True, help="Only this office (repeatable).")
@click.option("--kiosk", default=None, help="Only this kiosk.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(alerts.STATES),
    help="Only alerts in this state (repeatable); default: open and acknowledged.",
)
@click.option("--all", "every", is_flag=True, help="Every state, cleared ones included.")
@click.option("--kind", "kinds", multiple=True, help="Only this kind (repeatable).")
@click.option(
    "--severity",
    "severities",
    multiple=True,
    type=click.Choice(alert_rules.SEVERITIES),
    help="Only this severity (repeatable).",
)
@click.option(
    "--sort",
    "sort",
    type=click.Choice(SORTS),
    default="newest",
    show_default=True,
    help="Order of the rows.",
)
@click.option("--limit", default=100, show_default=True, help="At most this many alerts.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one alert per line.")
@click.pass_context
def alerts_group(
    ctx: click.Context,
    config_path: str,
    offices: tuple[str, ...],
    kiosk: str | None,
    states: tuple[str, ...],
    every: bool,
    kinds: tuple[str, ...],
    severities: tuple[str, ...],
    sort: str,
    limit: int,
    as_json: bool,
) -> None:
    """Fleet alerts (docs/alerts.md): without a subcommand, list those needing attention."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"config_path": config_path}
        return
    for kind in kinds:
        if kind not in alert_rules.KINDS:
            raise click.BadParameter(
                f"unknown kind {kind!r}; one of {', '.join(alert_rules.KINDS)}", param_hint="--kind"
            )
    with _read(config_path) as (conn, _cfg):
        found = alerts.list_alerts(
            conn,
            offices=offices or None,
            kiosk=kiosk,
            states=None if every else (states or ("open", "acknowledged")),
            kinds=kinds or None,
            severities=severities or None,
            limit=limit,
        )
    found = _sorted(found, sort)
    if as_json:
        for a in found:
            click.echo(json.dumps(a.as_dict(), ensure_ascii=False))
        return
    if not found:
        click.echo("no alerts")
        return
    now = time.time()
    rows = [
        [
            str(a.id),
            a.kiosk,
            a.office or "-",
            a.kind,
            a.severity,
            a.state,
            age(now - a.opened_at, parts=2),  # 45s, 12m, 3h05m, 2d04h
            a.detail,
        ]
        for a in found
    ]
    click.echo(table(rows, ["ID", "KIOSK", "OFFICE", "KIND", "SEVERITY", "STATE", "AGE", "DETAIL"]))


def _config_path(ctx: click.Context, given: str | None) -> str:
    """``--config`` given to the subcommand, else to ``alerts``, else the default."""
    if given is not None:
        return given
    obj = ctx.find_object(dict) or {}
    return str(obj.get("config_path", DEFAULT_CONFIG))


sub_config_option = click.option(
    "--config",
    "config_path",
    default=None,
    help=f"Central's TOML configuration file [default: {DEFAULT_CONFIG}].",
)


@alerts_group.command("show")
@sub_config_option
@click.argument("alert_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, history included.")
@click.pass_context
def show(ctx: click.Context, config_path: str | None, alert_id: int, as_json: bool) -> None:
    """One alert with its history."""
    with _read(_config_path(ctx, config_path)) as (conn, _cfg):
        a = alerts.get_alert(conn, alert_id)
        events = alerts.alert_events(conn, alert_id)
    if as_json:
        click.echo(
            json.dumps({**a.as_dict(), "events": [e.as_dict() for e in events]}, ensure_ascii=False)
        )
        return
    fields = [
        ("alert", str(a.id)),
        ("kiosk", a.kiosk),
        ("office", a.office or "-"),
        ("kind", a.kind),
        ("severity", a.severity),
        ("state", a.state),
        ("detail", a.detail),
        ("opened", _iso(a.opened_at)),
        ("last seen", _iso(a.last_seen_at)),
        ("cause gone", _iso(a.cause_gone_at)),
        ("cleared", _iso(a.cleared_at)),
        (
            "acknowledged",
            f"{_iso(a.acked_at)} by {a.acked_by}: {a.ack_comment}" if a.acked_by else "-",
        ),
        ("escalated", _iso(a.escalated_at)),
        ("notified", f"{_iso(a.notified_at)} ({a.notify_count} sent)"),
    ]
    if a.notify_due:
        fields.append(("waiting to send", f"{a.notify_due} (attempts {a.notify_attempts})"))
    if a.notify_error:
        fields.append(("last notify error", a.notify_error))
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        click.echo(f"{k.ljust(width)}  {v}")
    click.echo("")
    click.echo(
        table(
            [[_iso(e.at), e.event, e.actor, e.detail or ""] for e in events],
            ["AT", "EVENT", "ACTOR", "DETAIL"],
        )
    )


@alerts_group.command("ack")
@sub_config_option
@click.argument("alert_id", type=int)
@click.option("--comment", required=True, help="What is being done about it (kept, audited).")
@click.option("--as", "as_name", default=None, help="The staff member acknowledging.")
@click.pass_context
def ack(
    ctx: click.Context, config_path: str | None, alert_id: int, comment: str, as_name: str | None
) -> None:
    """Acknowledge an open alert: no more re-notifications; it still clears by itself."""
    who = cli_actor() if as_name is None else f"{as_name} ({cli_actor()})"
    with _write(_config_path(ctx, config_path)) as (conn, _cfg):
        a = alerts.acknowledge(conn, alert_id, actor=who, comment=comment)
    click.echo(f"alert {a.id} ({a.kiosk} {a.kind}) acknowledged by {a.acked_by}")


@alerts_group.group("rules", invoke_without_command=True)
@sub_config_option
@click.option("--office", default=None, help="The rules in force at this office.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one rule per line.")
@click.pass_context
def rules(ctx: click.Context, config_path: str | None, office: str | None, as_json: bool) -> None:
    """The effective rule of every kind (config defaults, then the office's overrides)."""
    path = _config_path(ctx, config_path)
    ctx.obj = {"config_path": path}
    if ctx.invoked_subcommand is not None:
        return
    with _read(path) as (conn, cfg):
        found = alert_rules.effective_rules(conn, cfg.alerts.rules, office)
        overridden = {
            r["kind"] for r in alert_rules.office_overrides(conn, office) if office is not None
        }
    if as_json:
        for r in found:
            click.echo(json.dumps(r.as_dict(), ensure_ascii=False))
        return
    rows = []
    for r in found:
        params = " ".join(f"{k}={v:g}" for k, v in r.params.items())
        rows.append(
            [
                r.kind + (" *" if r.kind in overridden else ""),
                "yes" if r.enabled else "no",
                r.severity,
                f"{r.open_after_s:g}",
                f"{r.hold_down_s:g}",
                f"{r.renotify_min:g}",
                f"{r.escalate_after_min:g}",
                params or "-",
            ]
        )
    click.echo(
        table(
            rows,
            [
                "KIND",
                "ON",
                "SEVERITY",
                "OPEN_AFTER_S",
                "HOLD_DOWN_S",
                "RENOTIFY_MIN",
                "ESCALATE_AFTER_MIN",
                "PARAMS",
            ],
        )
    )
    if overridden:
        click.echo(f"* set for office {office} (aps-central alerts rules set)")


@rules.command("set")
@sub_config_option
@click.option("--office", required=True, help="The office the change applies to.")
@click.argument("kind")
@click.argument("settings", nargs=-1)
@click.option("--disable", is_flag=True, help="Turn this kind off for the office.")
@click.pass_context
def rules_set(
    ctx: click.Context,
    config_path: str | None,
    office: str,
    kind: str,
    settings: tuple[str, ...],
    disable: bool,
) -> None:
    """Tune one kind for one office: KIND key=value ... (audited); enabled=true turns it on."""
    with _write(_config_path(ctx, config_path)) as (conn, cfg):
        values = alert_rules.parse_assignments(kind, list(settings))
        if not values and not disable:
            raise click.UsageError("give key=value settings or --disable")
        alert_rules.set_rule(
            conn, office, kind, values, actor=cli_actor(), disable=disable, now=time.time()
        )
        (rule,) = [
            r for r in alert_rules.effective_rules(conn, cfg.alerts.rules, office) if r.kind == kind
        ]
    click.echo(json.dumps(rule.as_dict(), ensure_ascii=False))
