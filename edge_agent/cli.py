"""``aps-agent``: the kiosk agent's command line (thin layer over the packages)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
from pathlib import Path

import click

from drivers.decode_cli import decode
from edge_agent.cli_app import filing
from edge_agent.cli_catalogue import COMMANDS as catalogue_commands
from edge_agent.cli_provision import provision_command, renew_command
from edge_agent.cli_selftest import COMMANDS as selftest_commands
from edge_agent.config import AgentConfig, load_agent_config
from edge_agent.updater.cli import update_group
from sync.config import ConfigError, markdown_reference
from sync.logs import setup_logging
from sync.outbox import Outbox, OutboxError, OutboxMissing

DEFAULT_CONFIG = "/etc/aps/agent.toml"

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The agent's TOML configuration file.",
)


def _load(path: str) -> AgentConfig:
    try:
        return load_agent_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(
    package_name="aps-kiosk", prog_name="aps-agent", message="%(prog)s %(version)s"
)
def main() -> None:
    """APS kiosk agent: files dossiers durably and syncs them to central."""


main.add_command(decode)
for _command in catalogue_commands:
    main.add_command(_command)
main.add_command(filing)
for _command in selftest_commands:
    main.add_command(_command)
main.add_command(provision_command)
main.add_command(renew_command)
main.add_command(update_group)


@main.command()
@config_option
def run(config_path: str) -> None:
    """Run the agent until SIGTERM (what the systemd unit starts)."""
    from edge_agent.agent import Agent

    cfg = _load(config_path)
    setup_logging(cfg.agent.log_level)
    for warning in cfg.mqtt.warnings(Path(config_path)):
        logging.getLogger("aps.config").warning("%s: %s", config_path, warning)
    try:
        agent = Agent(cfg)
    except OutboxError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # e.g. the database's directory cannot be created
        raise click.ClickException(
            f"cannot prepare {exc.filename or cfg.agent.database}: {exc.strerror}; check "
            f"agent.database and agent.receipts_dir in {config_path}"
        ) from None
    sys.exit(agent.run())


@main.command("check-config")
@config_option
def check_config(config_path: str) -> None:
    """Validate the configuration file and print it with defaults filled in.

    Secrets (the MQTT password) are shown as ``**********``; what is allowed but
    unsafe is printed as a warning on stderr.
    """
    cfg = _load(config_path)
    for warning in [*cfg.mqtt.warnings(Path(config_path)), *cfg.payment.warnings()]:
        click.echo(f"warning: {config_path}: {warning}", err=True)
    click.echo(cfg.model_dump_json(indent=2))


@main.command("config-doc")
def config_doc() -> None:
    """Print the reference of every configuration key (markdown)."""
    click.echo(markdown_reference(AgentConfig, "Kiosk agent (`/etc/aps/agent.toml`)"))


@main.group()
def outbox() -> None:
    """Inspect the kiosk's outbox."""


@outbox.command("status")
@config_option
def outbox_status(config_path: str) -> None:
    """Print queue depth, oldest unsynced record and database size as JSON.

    Opens the database read-only: never creates one, never writes to it.
    """
    cfg = _load(config_path)
    try:
        ob = Outbox.open_readonly(cfg.agent.database, cfg.kiosk.id)
    except OutboxMissing as exc:
        raise click.ClickException(f"{exc}: check agent.database in {config_path}") from None
    except OutboxError as exc:
        raise click.ClickException(str(exc)) from None
    s = ob.stats()
    click.echo(
        json.dumps(
            {
                "kiosk": cfg.kiosk.id,
                "stream": ob.stream,
                "queued": s.queued,
                "acked": s.acked,
                "rejected": s.rejected,
                "oldest_queued": s.oldest_queued_created,
                "db_bytes": s.db_bytes,
            }
        )
    )
    ob.close()


@outbox.command("salvage")
@click.argument("damaged", type=click.Path(exists=True, dir_okay=False))
@click.argument("output", type=click.Path(exists=False, dir_okay=False))
def outbox_salvage(damaged: str, output: str) -> None:
    """Copy every readable unsynced record of a DAMAGED database into a JSON-lines OUTPUT.

    The damaged file is opened read-only and never changed. Each line of
    OUTPUT is one stored record envelope, ready to be replayed by an operator.
    """
    out = Path(output)
    if out.exists():
        raise click.ClickException(f"{out} exists; choose a new file name")
    saved = skipped = 0
    try:
        conn = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
        rows = conn.execute("SELECT seq, payload FROM outbox WHERE state = 'queued' ORDER BY seq")
        # Whole ID numbers and names: 0600, and never over a file that appeared meanwhile.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as fh:
            while True:
                try:
                    row = rows.fetchone()
                except sqlite3.DatabaseError:
                    skipped += 1
                    break
                if row is None:
                    break
                fh.write(bytes(row[1]) + b"\n")
                saved += 1
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"cannot read {damaged}: {exc}") from None
    click.echo(json.dumps({"saved": saved, "stopped_early": bool(skipped), "output": str(out)}))


if __name__ == "__main__":
    main()
