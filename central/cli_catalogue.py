"""``aps-central catalogue``: publish the procedure catalogue and show the current one."""

from __future__ import annotations

import getpass
import json
import sqlite3
from pathlib import Path

import click

from central.catalogue_publish import (
    CatalogueRefused,
    current_catalogue,
    kiosk_catalogues,
    publish_catalogue,
)
from central.cli_db import open_backoffice

config_option = click.option(
    "--config",
    "config_path",
    default="/etc/aps/central.toml",
    show_default=True,
    help="Central's TOML configuration file.",
)


def _open(config_path: str, *, read_only: bool) -> sqlite3.Connection:
    from central.cli import _load

    return open_backoffice(
        _load(config_path).central, config_path, must_exist=read_only, read_only=read_only
    )


@click.group("catalogue")
def catalogue() -> None:
    """Publish the procedure catalogue to every kiosk, or show the current one."""


@catalogue.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@config_option
def publish(file: str, config_path: str) -> None:
    """Validate FILE (catalogue JSON, docs/catalogue.md) and publish it to every kiosk.

    Refused, with the path of the first bad value, when the document is invalid;
    refused when its version is not newer than the current one. Prints
    {"published": VERSION, "procedures": N}.
    """
    try:
        doc = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"cannot read {file} as JSON: {exc}") from None
    conn = _open(config_path, read_only=False)
    try:
        version = publish_catalogue(conn, doc, f"cli:{getpass.getuser()}")
    except CatalogueRefused as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    finally:
        conn.close()
    click.echo(json.dumps({"published": version, "procedures": len(doc["procedures"])}))


@catalogue.command("show")
@click.option("--full", is_flag=True, help="Print the whole document, not only the summary.")
@config_option
def show(full: bool, config_path: str) -> None:
    """Print the catalogue kiosks are given now (version and procedures) as JSON."""
    # Read-only: a report never creates or changes a database.
    conn = _open(config_path, read_only=True)
    try:
        doc = current_catalogue(conn)
    except sqlite3.OperationalError:  # no downlink table: nothing was ever published
        doc = None
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"cannot read central's database: {exc}") from None
    finally:
        conn.close()
    if doc is None:
        raise click.ClickException(
            "no catalogue published yet: kiosks use the one shipped with the agent; "
            "publish one with: aps-central catalogue publish FILE"
        )
    if full:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=1))
        return
    summary = {
        "version": doc["version"],
        "published_at": doc.get("published_at"),
        "procedures": [{"code": p["code"], "name": p["name"]} for p in doc["procedures"]],
    }
    click.echo(json.dumps(summary, ensure_ascii=False))


@catalogue.command("kiosks")
@config_option
def kiosks(config_path: str) -> None:
    """Print, per kiosk, the catalogue version it runs and the last one it refused (JSON lines).

    From each kiosk's last heartbeat; a kiosk with a "rejected_version" kept its
    previous catalogue: its "error" says why the new one was refused.
    """
    conn = _open(config_path, read_only=True)
    try:
        rows = kiosk_catalogues(conn)
    finally:
        conn.close()
    for row in rows:
        click.echo(json.dumps(row, ensure_ascii=False))
