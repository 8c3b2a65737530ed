"""``aps-agent catalogue`` and ``aps-agent due-date``: the kiosk's procedures and due dates.

Both read the agent configuration (database path, office rules, time zone) and
the kiosk's active catalogue, opened read-only (never created or changed);
without one (a kiosk that has not heard from central yet) the bundled
catalogue is used, as the agent itself does.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from edge_agent import CitizenError
from edge_agent.catalogue import Catalogue, bundled_catalogue, read_active
from edge_agent.config import AgentConfig
from edge_agent.due_date import WorkCalendar, due_for
from sync.catalogue import CatalogueInvalid, is_newer


def active_catalogue(database: Path) -> tuple[Catalogue, str]:
    """The catalogue the kiosk would use now, and where it came from (database|bundled)."""
    bundled = bundled_catalogue()
    if not database.exists():
        return bundled, "bundled"
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            stored = read_active(conn)
        finally:
            conn.close()
    except (sqlite3.DatabaseError, CatalogueInvalid, ValueError) as exc:
        raise click.ClickException(f"cannot read the catalogue in {database}: {exc}") from None
    if stored is None or is_newer(bundled.version, stored.version):
        return bundled, "bundled"
    return stored, "database"


def _config(config_path: str) -> AgentConfig:
    from edge_agent.cli import _load

    return _load(config_path)


@click.command("catalogue")
@click.option(
    "--config",
    "config_path",
    default="/etc/aps/agent.toml",
    show_default=True,
    help="The agent's TOML configuration file.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array (one object per procedure)."
)
def catalogue_command(config_path: str, as_json: bool) -> None:
    """List the procedures of the kiosk's active catalogue (code, name, limit, fee).

    The active catalogue is the one central last sent (in agent.database), or the
    one shipped with the agent when none was received or the shipped one is newer.
    """
    cfg = _config(config_path)
    cat, origin = active_catalogue(cfg.agent.database)
    listing = cat.listing()
    if as_json:
        click.echo(json.dumps(listing, ensure_ascii=False))
        return
    click.echo(f"catalogue {cat.version} ({origin}), {len(listing)} procedures")
    for p in listing:
        days = "same day" if p["time_limit_days"] == 0 else f"{p['time_limit_days']} WD"
        click.echo(f"{p['code']:<10} {days:>8}  {p['name']}  [{p['fee']['text_vi']}]")


@click.command("due-date")
@click.argument("procedure_code")
@click.option(
    "--at",
    "at_text",
    default=None,
    help="When the dossier is received, ISO 8601 (e.g. 2026-02-13T10:30); without an "
    "offset it is the office's time zone (kiosk.timezone), with one it is converted to "
    "it. Default: now.",
)
@click.option(
    "--config",
    "config_path",
    default="/etc/aps/agent.toml",
    show_default=True,
    help="The agent's TOML configuration file.",
)
def due_date_command(procedure_code: str, at_text: str | None, config_path: str) -> None:
    """Print the due date of a dossier for PROCEDURE_CODE as one JSON object.

    Keys: due_date (ISO 8601), on_the_spot (settled while the citizen waits),
    rule, reason (the rules that applied, in words) and reason_vi (for the slip).
    Uses the office's rules from [office] in the configuration.
    """
    cfg = _config(config_path)
    tz = ZoneInfo(cfg.kiosk.timezone)
    if at_text is None:
        received = datetime.now(tz)
    else:
        try:
            received = datetime.fromisoformat(at_text)
        except ValueError:
            raise click.BadParameter(
                f"{at_text!r} is not an ISO 8601 date-time; write e.g. 2026-02-13T10:30",
                param_hint="--at",
            ) from None
        # The office's wall clock decides (cut-off, weekday): convert an explicit offset.
        received = (
            received.replace(tzinfo=tz) if received.tzinfo is None else received.astimezone(tz)
        )
    cat, _ = active_catalogue(cfg.agent.database)
    try:
        proc = cat.get(procedure_code)
    except CitizenError as exc:
        raise click.ClickException(
            f"{exc}; list the codes with: aps-agent catalogue --config {config_path}"
        ) from None
    due = due_for(received, proc, WorkCalendar(cfg.office.rules()))
    click.echo(
        json.dumps(
            {
                "procedure": proc.code,
                "received_at": received.isoformat(timespec="minutes"),
                "due_date": due.at.isoformat(timespec="minutes"),
                "on_the_spot": due.on_the_spot,
                "rule": due.rule,
                "reason": due.reason,
                "reason_vi": due.reason_vi,
                "catalogue_version": cat.version,
            },
            ensure_ascii=False,
        )
    )


COMMANDS = (catalogue_command, due_date_command)
