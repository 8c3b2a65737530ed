"""``aps-central roster|support|api-token|api``: the support team's commands.

Each command opens central's database (:func:`central.backoffice_db.connect`)
and calls one library function with the actor ``cli:<unix user>``; output
is JSON (one object, or JSON lines for lists), errors name the field to fix.
"""

from __future__ import annotations

import getpass
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from central import api_tokens, roster, support
from central.cli_db import open_backoffice
from central.config import CentralConfig, load_central_config
from sync.config import ConfigError

DEFAULT_CONFIG = "/etc/aps/central.toml"

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Central's TOML configuration file.",
)


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def load_config(path: str) -> CentralConfig:
    try:
        return load_central_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def opened(
    config_path: str, *, report: bool = False
) -> Iterator[tuple[sqlite3.Connection, CentralConfig]]:
    """The back-office connection; library errors become one clear CLI error.

    ``report``: a listing, which never creates a database (a wrong path is an error).
    """
    cfg = load_config(config_path)
    conn = open_backoffice(cfg.central, config_path, must_exist=report)
    try:
        yield conn, cfg
    except (roster.RosterError, support.SupportError, api_tokens.TokenError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        conn.close()


def emit(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


# -- roster --------------------------------------------------------------------------


@click.group("roster")
def roster_group() -> None:
    """The support team's duty roster: staff, channels and shifts."""


@roster_group.command("add")
@config_option
@click.argument("staff_id")
@click.option("--name", required=True, help="Display name, shown to citizens (Vietnamese).")
@click.option("--phone", required=True, help="Phone number (hotline / Zalo).")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    required=True,
    type=click.Choice(roster.CHANNELS),
    help="A channel they answer on (repeat; the first is preferred).",
)
@click.option("--email", default=None, help="E-mail for notifications.")
def roster_add(
    config_path: str, staff_id: str, name: str, phone: str, channels: tuple[str, ...], email: str
) -> None:
    """Add a staff member (or update the one with this id)."""
    with opened(config_path) as (conn, _):
        staff = roster.add_staff(
            conn,
            cli_actor(),
            staff_id=staff_id,
            name=name,
            phone=phone,
            channels=list(channels),
            email=email,
        )
        emit(staff.as_dict())


@roster_group.command("list")
@config_option
@click.option("--office", default=None, help="Only this office's shifts.")
def roster_list(config_path: str, office: str | None) -> None:
    """Print staff and shifts (JSON lines: {"staff": ...} then {"shift": ...})."""
    with opened(config_path, report=True) as (conn, _):
        for staff in roster.list_staff(conn):
            emit({"staff": staff.as_dict()})
        for shift in roster.list_shifts(conn, office=office):
            emit({"shift": shift.as_dict()})


@roster_group.command("remove")
@config_option
@click.argument("staff_id")
def roster_remove(config_path: str, staff_id: str) -> None:
    """Take a staff member off the roster (their shifts are dropped)."""
    with opened(config_path) as (conn, _):
        roster.remove_staff(conn, cli_actor(), staff_id)
        emit({"removed": staff_id})


@roster_group.command("shift")
@config_option
@click.argument("staff_id")
@click.option("--office", required=True, help="Agency identifier of the office, 000.00.14.H56.")
@click.option("--start", required=True, help="HH:MM, office time.")
@click.option("--end", required=True, help="HH:MM (excluded), after start.")
@click.option("--weekday", type=click.IntRange(0, 6), default=None, help="0 Monday .. 6 Sunday.")
@click.option("--day", default=None, help="One date, YYYY-MM-DD (instead of --weekday).")
def roster_shift(
    config_path: str,
    staff_id: str,
    office: str,
    start: str,
    end: str,
    weekday: int | None,
    day: str | None,
) -> None:
    """Put a staff member on duty for an office, every --weekday or on one --day."""
    with opened(config_path) as (conn, _):
        shift = roster.add_shift(
            conn,
            cli_actor(),
            staff_id=staff_id,
            office=office,
            start=start,
            end=end,
            weekday=weekday,
            day=day,
        )
        emit(shift.as_dict())


@roster_group.command("remove-shift")
@config_option
@click.argument("n", type=click.IntRange(1, 2**62))
def roster_remove_shift(config_path: str, n: int) -> None:
    """Delete shift number N (see `roster list`)."""
    with opened(config_path) as (conn, _):
        roster.remove_shift(conn, cli_actor(), n)
        emit({"removed_shift": n})


@roster_group.command("on-duty")
@config_option
@click.option("--office", required=True, help="Agency identifier of the office.")
@click.option("--at", "at_text", default=None, help="ISO 8601 with offset (default: now).")
def roster_on_duty(config_path: str, office: str, at_text: str | None) -> None:
    """Who is on duty for an office now (or --at), least busy first (JSON lines)."""
    with opened(config_path, report=True) as (conn, cfg):
        at = datetime.now(UTC)
        if at_text is not None:
            try:
                at = datetime.fromisoformat(at_text)
            except ValueError:
                raise click.BadParameter("expected ISO 8601", param_hint="--at") from None
            if at.tzinfo is None:
                raise click.BadParameter("give an offset, e.g. +07:00", param_hint="--at")
        try:
            staff = roster.on_duty(conn, office, at, timezone=cfg.support.timezone)
        except OverflowError:
            raise click.BadParameter(
                "outside the years central handles", param_hint="--at"
            ) from None
        for one in staff:
            emit(one.as_dict())


# -- support requests ----------------------------------------------------------------


@click.group("support")
def support_group() -> None:
    """Help and home-visit requests from the kiosks."""


@support_group.command("list")
@config_option
@click.option("--status", type=click.Choice(support.STATUSES), default=None)
@click.option("--type", "kind", type=click.Choice(["help", "home-visit"]), default=None)
@click.option("--office", default=None, help="Only this office.")
@click.option("--open", "open_only", is_flag=True, help="Only requests not resolved.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def support_list(
    config_path: str,
    status: str | None,
    kind: str | None,
    office: str | None,
    open_only: bool,
    limit: int,
) -> None:
    """List support requests, newest first, with response times (JSON lines)."""
    with opened(config_path, report=True) as (conn, _):
        for req in support.list_requests(
            conn, status=status, type=kind, office=office, open_only=open_only, limit=limit
        ):
            emit(req.as_dict())


@support_group.command("report")
@config_option
@click.option("--office", default=None, help="Only this office.")
@click.option("--since", default=None, help="First day, YYYY-MM-DD (office time).")
@click.option("--until", default=None, help="Last day, YYYY-MM-DD.")
def support_report(
    config_path: str, office: str | None, since: str | None, until: str | None
) -> None:
    """Requests per office and day with response times, p50/p90 seconds (JSON lines)."""
    with opened(config_path, report=True) as (conn, cfg):
        for row in support.response_report(
            conn, office=office, since=since, until=until, timezone=cfg.support.timezone
        ):
            emit(row)


@support_group.command("ack")
@config_option
@click.argument("n", type=click.IntRange(1, 2**62))
@click.option("--staff", default=None, help="Who is on it (default: the assignee).")
def support_ack(config_path: str, n: int, staff: str | None) -> None:
    """Acknowledge request N: someone is on it."""
    with opened(config_path) as (conn, _):
        emit(support.acknowledge(conn, cli_actor(), n, staff_id=staff).as_dict())


@support_group.command("resolve")
@config_option
@click.argument("n", type=click.IntRange(1, 2**62))
@click.option("--note", default=None, help="What was done (staff only).")
def support_resolve(config_path: str, n: int, note: str | None) -> None:
    """Resolve request N (the kiosk is told)."""
    with opened(config_path) as (conn, cfg):
        req = support.resolve(conn, cli_actor(), n, note=note, settings=cfg.support_settings())
        emit(req.as_dict())


@support_group.command("assign")
@config_option
@click.argument("n", type=click.IntRange(1, 2**62))
@click.argument("staff_id")
def support_assign(config_path: str, n: int, staff_id: str) -> None:
    """Give request N (e.g. a queued home visit) to a staff member; they are notified."""
    with opened(config_path) as (conn, cfg):
        req = support.assign(conn, cli_actor(), n, staff_id, settings=cfg.support_settings())
        emit(req.as_dict())


# -- API tokens ----------------------------------------------------------------------


@click.group("api-token")
def api_token_group() -> None:
    """Tokens for central's HTTP API (the name is the audit actor)."""


@api_token_group.command("add")
@config_option
@click.argument("name")
def api_token_add(config_path: str, name: str) -> None:
    """Create token NAME and print it once (only its hash is kept)."""
    with opened(config_path) as (conn, _):
        click.echo(api_tokens.add(conn, cli_actor(), name))


@api_token_group.command("list")
@config_option
def api_token_list(config_path: str) -> None:
    """List tokens: name, created, revoked, last used (JSON lines; never the token)."""
    with opened(config_path, report=True) as (conn, _):
        for info in api_tokens.list_tokens(conn):
            emit(info.as_dict())


@api_token_group.command("revoke")
@config_option
@click.argument("name")
def api_token_revoke(config_path: str, name: str) -> None:
    """Revoke token NAME at once (its name stays listed and cannot be reused)."""
    with opened(config_path) as (conn, _):
        api_tokens.revoke(conn, cli_actor(), name)
        emit({"revoked": name})


# -- the API server ------------------------------------------------------------------


@click.command("api")
@config_option
@click.option(
    "--listen",
    default=None,
    help="host:port (default: [api] listen, else 127.0.0.1:8080).",
)
def api_command(config_path: str, listen: str | None) -> None:
    """Serve central's HTTP API in the foreground (uvicorn) until SIGINT/SIGTERM."""
    from central.web.app import app_from_config
    from central.web.server import serve_forever

    cfg = load_config(config_path)
    if listen is not None:
        try:
            cfg = load_central_config(config_path, {"api.listen": listen})
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None
    host, port = cfg.api.host_port() or ("127.0.0.1", 8080)
    app, tls = app_from_config(cfg)  # HTTPS when [enrolment] is enabled
    serve_forever(app, host, port, tls=tls)
