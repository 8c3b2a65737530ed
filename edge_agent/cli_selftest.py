"""``aps-agent selftest`` and ``aps-agent doctor``: thin commands over edge_agent.selftest/doctor.

Both print a report a technician can read aloud (``--lang vi`` or ``en``) or, with
``--json``, one object for scripts; both exit 1 when a check failed, 0 otherwise
(warnings do not fail). Prompts of the self-test go to stderr. A test (or the
demo) may hand emulated devices in through click's context object, an
:class:`edge_agent.selftest.Hardware`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_agent.check_report import CheckResult, Lang, Words, overall, render_json, render_table
from edge_agent.config import load_agent_config
from edge_agent.doctor import config_unloadable, run_doctor
from edge_agent.host_checks import Policy
from edge_agent.selftest import Hardware, run_selftest
from sync.config import ConfigError

__all__ = ["COMMANDS"]

DEFAULT_CONFIG = "/etc/aps/agent.toml"

_config = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The agent's TOML configuration file.",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts.")
_service_user = click.option(
    "--service-user",
    default="aps",
    show_default=True,
    help="The account the agent runs as (owns the data directory, uses the devices).",
)
_config_owner = click.option(
    "--config-owner",
    default="root",
    show_default=True,
    hidden=True,
    help="Who must own the configuration file (test installs only).",
)


def _finish(results: list[CheckResult], lang: Lang, as_json: bool, heading: Words) -> None:
    if as_json:
        click.echo(render_json(results, lang))
    else:
        click.echo(render_table(results, lang, heading))
    sys.exit(1 if overall(results) == "fail" else 0)


@click.command("selftest")
@_config
@click.option(
    "--lang",
    type=click.Choice(["vi", "en"]),
    default="vi",
    show_default=True,
    help="Language of the report and the prompts.",
)
@_json
@click.option(
    "--timeout-s",
    type=click.FloatRange(1, 600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for a card, a scan, the broker and central.",
)
@click.option(
    "--skip-interactive",
    is_flag=True,
    help="Do not ask for a card or a scan (the reader and scanner are only opened).",
)
@_service_user
@_config_owner
@click.pass_context
def selftest(
    ctx: click.Context,
    config_path: str,
    lang: Lang,
    as_json: bool,
    timeout_s: float,
    skip_interactive: bool,
    service_user: str,
    config_owner: str,
) -> None:
    """Exercise every configured device, the round trip to central, the clock, disk and files.

    Prints a test slip, asks for a card and a scan, takes one camera frame,
    asks central for state through the broker with the kiosk's own identity,
    and compares the clock with central's. Stop the agent first
    (systemctl stop aps-agent): the test uses its devices and its broker
    identity. Exit status 1 if any check failed. See docs/selftest.md.
    """
    try:
        cfg = load_agent_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    hardware = ctx.obj if isinstance(ctx.obj, Hardware) else Hardware()

    def say(words: Words) -> None:
        click.echo(words.pick(lang), err=True)

    results = run_selftest(
        cfg,
        policy=Policy(
            service_user=service_user, config_owner=config_owner, config_path=Path(config_path)
        ),
        hardware=hardware,
        interactive=not skip_interactive,
        timeout_s=timeout_s,
        say=say,
    )
    heading = Words(vi=f"Tự kiểm tra kiosk {cfg.kiosk.id}", en=f"Self-test of kiosk {cfg.kiosk.id}")
    _finish(results, lang, as_json, heading)


@click.command("doctor")
@_config
@_json
@click.option(
    "--lang",
    type=click.Choice(["vi", "en"]),
    default="vi",
    show_default=True,
    help="Language of the report.",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(1, 600),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the broker and central.",
)
@_service_user
@_config_owner
@click.pass_context
def doctor(
    ctx: click.Context,
    config_path: str,
    as_json: bool,
    lang: Lang,
    timeout_s: float,
    service_user: str,
    config_owner: str,
) -> None:
    """Find what is wrong with this kiosk and say how to fix it; changes nothing.

    Config, identity keys, disk, permissions, devices present, broker (TCP and
    TLS handshake) and central reachable, the clock, the certificate's expiry,
    the outbox queue. Safe while the agent runs: it never logs in to the
    broker, opens a device or writes a file. Exit status 1 if any check failed.
    """
    heading = Words(vi="Chẩn đoán kiosk", en="Kiosk doctor")
    try:
        cfg = load_agent_config(config_path)
    except ConfigError as exc:
        _finish([config_unloadable(str(exc))], lang, as_json, heading)
        return
    hardware = ctx.obj if isinstance(ctx.obj, Hardware) else Hardware()
    results = run_doctor(
        cfg,
        Path(config_path),
        policy=Policy(
            service_user=service_user, config_owner=config_owner, config_path=Path(config_path)
        ),
        timeout_s=timeout_s,
        usb_backend=hardware.usb_backend,
    )
    heading = Words(vi=f"Chẩn đoán kiosk {cfg.kiosk.id}", en=f"Doctor for kiosk {cfg.kiosk.id}")
    _finish(results, lang, as_json, heading)


COMMANDS = [selftest, doctor]
