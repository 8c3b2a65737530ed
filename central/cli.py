"""``aps-central``: central's command line (thin layer over the packages)."""

from __future__ import annotations

import json
import sys
import time

import click

from central.config import CentralConfig, load_central_config
from central.quotas import report as quota_report
from central.store import SQLiteStore
from sync.config import ConfigError, markdown_reference

DEFAULT_CONFIG = "/etc/aps/central.toml"

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Central's TOML configuration file.",
)


def _load(path: str) -> CentralConfig:
    try:
        return load_central_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """APS central: collects what every kiosk files and watches the fleet."""


@main.command()
@config_option
def run(config_path: str) -> None:
    """Run the collector until SIGTERM (what the systemd unit starts)."""
    from central.service import CentralService
    from edge_agent.agent import setup_logging

    cfg = _load(config_path)
    setup_logging(cfg.central.log_level)
    sys.exit(CentralService(cfg).run())


@main.command()
@config_option
def status(config_path: str) -> None:
    """Print records held, per-kiosk sequence state (gaps) and dead letters, as JSON."""
    cfg = _load(config_path)
    store = SQLiteStore(cfg.central.database)
    streams = [
        {
            "kiosk": s.kiosk,
            "stream": s.stream,
            "contiguous_seq": s.contiguous_seq,
            "max_seq": s.max_seq,
            "missing": list(s.missing[:50]),
            "gap_open_s": None if s.gap_since is None else round(time.time() - s.gap_since),
        }
        for s in store.streams()
    ]
    alerts = [
        f"kiosk {g.kiosk}: {len(g.missing)} records committed on the kiosk have not reached "
        f"central for over {cfg.alerts.gap_alert_after_s:.0f} s"
        for g in store.stale_gaps(cfg.alerts.gap_alert_after_s)
    ]
    click.echo(
        json.dumps(
            {
                "records": store.count(),
                "dossiers": store.count("dossier"),
                "streams": streams,
                "alerts": alerts,
                "dead_letters": len(store.dead_letters()),
                "quotas": quota_report(store.conn, cfg.quotas.settings()),
            },
            ensure_ascii=False,
        )
    )
    store.close()


@main.command()
@config_option
@click.option(
    "--stale-after",
    default=180,
    show_default=True,
    help="Seconds without a heartbeat after which a kiosk counts as down.",
)
def fleet(config_path: str, stale_after: int) -> None:
    """List every kiosk: online/offline (Last Will), last heartbeat, queue, devices (JSON lines)."""
    cfg = _load(config_path)
    store = SQLiteStore(cfg.central.database)
    now = time.time()
    for k in store.fleet():
        seen = k["last_heartbeat_at"]
        k["seconds_since_heartbeat"] = None if seen is None else round(now - seen)
        k["down"] = k["state"] != "online" or seen is None or now - seen > stale_after
        click.echo(json.dumps(k, ensure_ascii=False))
    store.close()


@main.command("dead-letters")
@config_option
def dead_letters(config_path: str) -> None:
    """List messages central could not ingest, with the reason (JSON lines)."""
    cfg = _load(config_path)
    store = SQLiteStore(cfg.central.database)
    for row in store.dead_letters():
        click.echo(json.dumps(row, ensure_ascii=False))
    store.close()


@main.command("config-doc")
def config_doc() -> None:
    """Print the reference of every configuration key (markdown)."""
    click.echo(markdown_reference(CentralConfig, "Central (`/etc/aps/central.toml`)"))


if __name__ == "__main__":
    main()
