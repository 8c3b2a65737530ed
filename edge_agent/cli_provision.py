"""``aps-agent provision`` and ``aps-agent renew``: thin over :mod:`edge_agent.provision`."""

from __future__ import annotations

from pathlib import Path

import click

from edge_agent.provision import ProvisionError, hand_over, provision, renew

DEFAULT_CONFIG = Path("/etc/aps/agent.toml")
DEFAULT_STATE_DIR = Path("/var/lib/aps/identity")


@click.command("provision")
@click.option("--central", default="", help="Central's https:// address (from the admin).")
@click.option(
    "--token", default=None, help="The one-time token `aps-central enroll create` printed."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The agent config to write (other sections in it are kept).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the keys (0600), certificate and CA go.",
)
@click.option(
    "--service-user",
    default="aps",
    show_default=True,
    help="The account the agent runs as: it gets the keys, and read access to the config.",
)
def provision_command(
    central: str, token: str | None, config_path: Path, state_dir: Path, service_user: str
) -> None:
    """Enrol this box: keys made here, a certificate from central, the config written.

    Safe to re-run: a box already provisioned with a valid certificate says so and
    exits 0 without using a token.
    """
    try:
        done = provision(
            central, token, config=config_path.absolute(), state_dir=state_dir.absolute()
        )
    except ProvisionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(done.summary())
    owner = hand_over(done, service_user)
    if owner is not None:
        click.echo(owner)


@click.command("renew")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The provisioned agent config.",
)
@click.option(
    "--rotate-signing-key",
    is_flag=True,
    help="Also make a new record-signing key; central accepts both until the old is retired.",
)
@click.option(
    "--service-user",
    default="aps",
    show_default=True,
    help="The account the agent runs as: it gets the keys, and read access to the config.",
)
def renew_command(config_path: Path, rotate_signing_key: bool, service_user: str) -> None:
    """Renew this kiosk's certificate before it expires (signed with its current key)."""
    try:
        done = renew(config_path.absolute(), rotate_signing_key=rotate_signing_key)
    except ProvisionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(done.summary().replace("provisioned:", "renewed:", 1))
    owner = hand_over(done, service_user)
    if owner is not None:
        click.echo(owner)
