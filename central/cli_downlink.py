"""``aps-central kiosk|downlink``: which office a kiosk reads, and what it would be sent.

A thin layer over :mod:`central.downlink_log`. ``kiosk set-office`` is the
fix a refused state request names (a kiosk that moved to another one-stop
office claims the new office and central refuses it until an admin says so);
it is audited with the actor ``cli:<unix user>``. ``downlink pending`` shows
exactly the items a kiosk would get for a cursor (the state reply's
first page), for a technician checking why a kiosk lacks something.
"""

from __future__ import annotations

import json
import re

import click

from central import audit, backoffice_db, downlink_log
from central.cli_backoffice import _config_option, _open, actor
from sync.downlink import AGENCY_RE_TEXT, MAX_PAGE_ITEMS
from sync.envelope import EnvelopeError, check_kiosk_id


def _kiosk_id(value: str) -> str:
    try:
        return check_kiosk_id(value)
    except EnvelopeError as exc:
        raise click.BadParameter(exc.reason) from None


@click.group()
def kiosk() -> None:
    """Kiosks at central: which one-stop office each one belongs to."""


@kiosk.command("set-office")
@_config_option
@click.argument("kiosk_id")
@click.argument("office")
def set_office(config_path: str, kiosk_id: str, office: str) -> None:
    """Put KIOSK_ID in OFFICE (the agency identifier that starts its dossier codes)."""
    kiosk_id = _kiosk_id(kiosk_id)
    if not re.match(AGENCY_RE_TEXT, office):
        raise click.BadParameter(
            f"{office!r}: expected an agency identifier such as 000.00.14.H56 "
            "(letters, digits and dots, at most 40)",
            param_hint="OFFICE",
        )
    with _open(config_path) as (_cfg, conn), backoffice_db.transaction(conn):
        before = downlink_log.office_of(conn, kiosk_id)
        downlink_log.assign_office(conn, kiosk_id, office)
        audit.record(
            conn, actor(), "kiosk.set-office", kiosk_id, {"office": office, "before": before}
        )
    click.echo(f"{kiosk_id}: office {office} (was {before or 'none'})")


@kiosk.command("offices")
@_config_option
def offices(config_path: str) -> None:
    """List every kiosk's office and where central learnt it (first-claim or admin)."""
    with _open(config_path) as (_cfg, conn):
        rows = conn.execute(
            "SELECT kiosk, office, source FROM kiosk_offices ORDER BY office, kiosk"
        ).fetchall()
    for kiosk_id, office, source in rows:
        click.echo(f"{kiosk_id}  {office}  {source}")


@click.group()
def downlink() -> None:
    """The downlink log: what central sends kiosks (docs/protocol.md, "Downlink")."""


@downlink.command("pending")
@_config_option
@click.argument("kiosk_id")
@click.option("--after", default=0, show_default=True, help="The kiosk's stored cursor.")
@click.option("--limit", default=MAX_PAGE_ITEMS, show_default=True, help="Items, at most 100.")
def pending(config_path: str, kiosk_id: str, after: int, limit: int) -> None:
    """Print (JSON) the first page KIOSK_ID would be sent after cursor --after."""
    kiosk_id = _kiosk_id(kiosk_id)
    if not 1 <= limit <= MAX_PAGE_ITEMS or after < 0:
        raise click.BadParameter(f"--limit must be 1..{MAX_PAGE_ITEMS} and --after >= 0")
    with _open(config_path) as (_cfg, conn):
        audiences = downlink_log.audiences_for(conn, kiosk_id)
        items, next_cursor, more = downlink_log.items_since(conn, audiences, after, limit=limit)
        out = {
            "kiosk": kiosk_id,
            "office": downlink_log.office_of(conn, kiosk_id),
            "audiences": audiences,
            "latest_cursor": downlink_log.latest_cursor(conn),
            "items": [i.wire() for i in items],
            "next_cursor": next_cursor,
            "more": more,
        }
    click.echo(json.dumps(out, ensure_ascii=False, indent=2))


def register(main: click.Group) -> None:
    """Add ``kiosk`` and ``downlink`` to ``aps-central`` (one line in central/cli.py)."""
    main.add_command(kiosk)
    main.add_command(downlink)
