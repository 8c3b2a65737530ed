"""``aps-central downlink pending``: what central would send a kiosk.

A thin, read-only layer over :mod:`central.downlink_log`: the kiosk's office
and audiences, the log's newest cursor and exactly the items the kiosk would
get for a cursor (the state reply's first page), for a technician checking
why a kiosk lacks something. (Which office a kiosk serves is set with
``aps-central kiosk set-office``, in :mod:`central.cli_backoffice`.)
"""

from __future__ import annotations

import json

import click

from central import downlink_log
from central.cli_backoffice import _config_option, _open
from sync.downlink import MAX_PAGE_ITEMS
from sync.envelope import EnvelopeError, check_kiosk_id


def _kiosk_id(value: str) -> str:
    try:
        return check_kiosk_id(value)
    except EnvelopeError as exc:
        raise click.BadParameter(exc.reason) from None


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
