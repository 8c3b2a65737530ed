"""``aps-central``: central's command line (thin layer over the packages)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from central import cli_backoffice, cli_downlink, cli_fleet, cli_health, cli_jobs
from central.broker_config import broker_config_command
from central.cli_alerts import alerts_group
from central.cli_catalogue import catalogue
from central.cli_console import console_group
from central.cli_releases import release, rollout
from central.cli_signing import signing
from central.cli_support import api_command, api_token_group, roster_group, support_group
from central.config import CentralConfig, load_central_config
from central.store import SQLiteStore, StoreError, StoreMissing
from sync.config import ConfigError, markdown_reference
from sync.logs import setup_logging

if TYPE_CHECKING:
    from central.store_pg import PostgresStore

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


def _open_store(cfg: CentralConfig, config_path: str) -> SQLiteStore | PostgresStore:
    """The records store ``[central] store`` names, read-only: reports never create or
    change a database."""
    try:
        if cfg.central.store == "postgresql":
            import psycopg  # only when it is used

            from central.store_pg import PostgresStore

            dsn = cfg.central.postgresql_dsn
            assert dsn is not None  # CentralSection refuses postgresql without a dsn
            try:
                return PostgresStore.open_readonly(dsn.get_secret_value())
            except psycopg.OperationalError as exc:
                raise click.ClickException(
                    f"cannot reach PostgreSQL: {str(exc).strip()}; check central.postgresql_dsn "
                    f"in {config_path}"
                ) from None
        return SQLiteStore.open_readonly(cfg.central.database)
    except StoreMissing as exc:
        setting = "postgresql_dsn" if cfg.central.store == "postgresql" else "database"
        raise click.ClickException(f"{exc}: check central.{setting} in {config_path}") from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(
    package_name="aps-kiosk", prog_name="aps-central", message="%(prog)s %(version)s"
)
def main() -> None:
    """APS central: collects what every kiosk files and watches the fleet."""


main.add_command(catalogue)


@main.command()
@config_option
def run(config_path: str) -> None:
    """Run the collector until SIGTERM (what the systemd unit starts)."""
    from central.service import CentralService
    from central.web import ApiListenError

    cfg = _load(config_path)
    if cfg.api.listen is not None:
        # The web stack (FastAPI) takes about a second to import: before the store
        # exists and the collector subscribes, not in the middle of start-up.
        import central.web.app  # noqa: F401
    setup_logging(cfg.central.log_level)
    for warning in cfg.mqtt.warnings(Path(config_path)):
        logging.getLogger("aps.config").warning("%s: %s", config_path, warning)
    try:
        service = CentralService(cfg)
    except OSError as exc:  # e.g. the database's directory cannot be created
        raise click.ClickException(
            f"cannot prepare {exc.filename or cfg.central.database}: {exc.strerror}; check "
            f"central.database in {config_path}"
        ) from None
    try:
        code = service.run()
    except ApiListenError as exc:
        raise click.ClickException(f"{exc}; check [api] listen in {config_path}") from None
    sys.exit(code)


@main.command("check-config")
@config_option
def check_config(config_path: str) -> None:
    """Validate the configuration file and print it with defaults filled in.

    Secrets (the MQTT password) are shown as ``**********``; what is allowed but
    unsafe is printed as a warning on stderr.
    """
    cfg = _load(config_path)
    for warning in cfg.mqtt.warnings(Path(config_path)):
        click.echo(f"warning: {config_path}: {warning}", err=True)
    click.echo(cfg.model_dump_json(indent=2))


@main.command()
@config_option
def status(config_path: str) -> None:
    """Print records held, per-kiosk sequence state (gaps) and dead letters, as JSON."""
    # Every list is bounded by [alerts] report_limit; what is not listed is counted.
    cfg = _load(config_path)
    store = _open_store(cfg, config_path)
    limit, after, now = cfg.alerts.report_limit, cfg.alerts.gap_alert_after_s, time.time()
    streams = [
        {
            "kiosk": s.kiosk,
            "stream": s.stream,
            "contiguous_seq": s.contiguous_seq,
            "max_seq": s.max_seq,
            "missing_count": s.missing_count,
            "gaps": [list(g) for g in s.gaps],
            "gaps_not_listed": s.gap_count - len(s.gaps),
            "gap_open_s": None if s.gap_since is None else round(now - s.gap_since),
        }
        for s in store.streams(limit=limit, max_ranges=limit)
    ]
    stale = store.stale_gap_count(after, now=now)
    alerts = [
        f"kiosk {g.kiosk}: {g.missing_count} records committed on the kiosk have not reached "
        f"central for over {after:.0f} s (stream {g.stream}, {g.gap_count} gap ranges)"
        for g in store.stale_gaps(after, now=now, limit=limit, max_ranges=0)
    ]
    if stale > len(alerts):
        alerts.append(f"and {stale - len(alerts)} more streams with gaps older than {after:.0f} s")
    total_streams = store.stream_count()
    click.echo(
        json.dumps(
            {
                "records": store.count(),
                "dossiers": store.count("dossier"),
                "streams": streams,
                "streams_total": total_streams,
                "streams_with_gaps": store.stream_count(with_gaps=True),
                "streams_not_listed": total_streams - len(streams),
                "alerts": alerts,
                "dead_letters": store.dead_letter_count(),
                "id_conflicts": {
                    "count": store.counter("id_conflicts"),
                    "latest": store.conflicts(limit),
                },
                "seq_jumps_parked": store.counter("seq_jumps_parked"),
                "clock_skew": [
                    {
                        "kiosk": k["kiosk"],
                        "skew_s": k["clock_skew_s"],
                        "measured_s_ago": round(now - k["clock_skew_at"]),
                    }
                    for k in store.clock_skews(limit)
                ],
                "quotas": store.quota_report(cfg.quotas.settings()),
            },
            ensure_ascii=False,
        )
    )
    store.close()


@main.command("dead-letters")
@config_option
def dead_letters(config_path: str) -> None:
    """List messages central could not ingest, with the reason (JSON lines)."""
    cfg = _load(config_path)
    store = _open_store(cfg, config_path)
    for row in store.dead_letters():
        click.echo(json.dumps(row, ensure_ascii=False))
    store.close()


@main.command("config-doc")
def config_doc() -> None:
    """Print the reference of every configuration key (markdown)."""
    click.echo(markdown_reference(CentralConfig, "Central (`/etc/aps/central.toml`)"))


main.add_command(roster_group)
main.add_command(support_group)
main.add_command(api_token_group)
main.add_command(api_command)
main.add_command(cli_backoffice.dossier)
main.add_command(cli_backoffice.inquiry)
main.add_command(cli_backoffice.faq)
main.add_command(cli_backoffice.news)
main.add_command(cli_backoffice.report)
main.add_command(cli_backoffice.kiosk)
main.add_command(cli_downlink.downlink)
main.add_command(signing)
main.add_command(broker_config_command)
main.add_command(cli_fleet.enroll)
main.add_command(cli_fleet.ca)
main.add_command(alerts_group)
main.add_command(console_group)
main.add_command(cli_jobs.config_group)
main.add_command(cli_jobs.job_group)
main.add_command(release)
main.add_command(rollout)
main.add_command(cli_health.fleet)

if __name__ == "__main__":
    main()
