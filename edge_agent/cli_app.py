"""``aps-agent filing ...``: what the kiosk application recorded about its filings.

Read-only over the kiosk's database (never creates or writes it), for the
technician at a kiosk that restarted: ``aps-agent filing unconfirmed`` prints
the filings committed but never confirmed as shown to their citizen.
"""

from __future__ import annotations

import json
import sqlite3

import click

from edge_agent.config import load_agent_config
from sync.config import ConfigError
from sync.outbox import Outbox, OutboxError


@click.group()
def filing() -> None:
    """Filings at this kiosk (read-only)."""


@filing.command("unconfirmed")
@click.option("--config", "config_path", default="/etc/aps/agent.toml", show_default=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def unconfirmed(config_path: str, limit: int) -> None:
    """Print, newest first, filings committed but never shown to their citizen (JSON lines).

    Each line: code, procedure, applicant_name, filed_at (UTC), printed, and
    superseded_by (the code of the same citizen's later filing of the same
    procedure, which carries unconfirmed_before).
    """
    try:
        cfg = load_agent_config(config_path)
        ob = Outbox.open_readonly(cfg.agent.database, cfg.kiosk.id)
    except (ConfigError, OutboxError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        rows = ob.conn.execute(
            "SELECT code, procedure, applicant_name, filed_at, printed_at, superseded_by"
            " FROM filing_confirmations WHERE shown_at IS NULL"
            " ORDER BY filed_at DESC, code DESC LIMIT ?",
            (limit,),
        ).fetchall()
    except sqlite3.OperationalError:
        rows = []  # no filing through the application yet
    finally:
        ob.close()
    for code, proc, name, filed_at, printed_at, superseded in rows:
        click.echo(
            json.dumps(
                {
                    "code": code,
                    "procedure": proc,
                    "applicant_name": name,
                    "filed_at": filed_at,
                    "printed": printed_at is not None,
                    "superseded_by": superseded,
                },
                ensure_ascii=False,
            )
        )
