"""``aps-central console user ...``: the web console's accounts (docs/console.md).

Each command opens central's database and calls one function of
:mod:`central.web.console.users` with the actor ``cli:<unix user>`` (audited). A password
is read from a prompt (typed twice, not echoed) or from ``--password-file`` (its first
line), never from the command line, where other users could read it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import click

from central.cli_support import cli_actor, config_option, emit, opened
from central.web.console import users


def _password(password_file: Path | None) -> str:
    if password_file is None:
        value: str = click.prompt(
            "Password (at least 12 characters)", hide_input=True, confirmation_prompt=True
        )
        return value
    try:
        text = password_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"--password-file {password_file}: {exc.strerror}") from None
    return text.splitlines()[0] if text else ""


password_file_option = click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the password from the first line of this file instead of a prompt.",
)


@click.group("console")
def console_group() -> None:
    """The web console at /console: accounts for admins and staff."""


@console_group.group("user")
def user_group() -> None:
    """Console accounts: add, list, disable, set a password, unlock."""


@user_group.command("add")
@config_option
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice([r.value for r in users.Role]),
    help="admin: everything; staff: one office's work; viewer: read-only, every office.",
)
@click.option("--office", default=None, help="The staff member's office (staff only).")
@password_file_option
def user_add(
    config_path: str, name: str, role: str, office: str | None, password_file: Path | None
) -> None:
    """Add a console account (the password is asked for, or read from --password-file)."""
    with opened(config_path) as (conn, cfg):
        try:
            users.ensure_schema(conn)
            users.check_name(name)
            user = users.add_user(
                conn,
                cli_actor(),
                name,
                _password(password_file),
                role=role,
                office=office,
                settings=cfg.console.settings(),
            )
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None
        emit(user.as_dict(time.time()))


@user_group.command("list")
@config_option
def user_list(config_path: str) -> None:
    """Every console account, one JSON object a line."""
    with opened(config_path, report=True) as (conn, _):
        try:
            accounts = users.list_users(conn)
        except sqlite3.OperationalError:  # no console table yet: no accounts
            accounts = []
        for user in accounts:
            emit(user.as_dict(time.time()))


@user_group.command("disable")
@config_option
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the account again instead.")
def user_disable(config_path: str, name: str, enable: bool) -> None:
    """Disable an account (its sessions end at once), or --enable it again."""
    with opened(config_path) as (conn, _):
        try:
            users.ensure_schema(conn)
            users.set_disabled(conn, cli_actor(), name, disabled=not enable)
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None
        emit({"name": name, "disabled": not enable})


@user_group.command("passwd")
@config_option
@click.argument("name")
@password_file_option
def user_passwd(config_path: str, name: str, password_file: Path | None) -> None:
    """Set a new password (the account's sessions end, a lock-out is lifted)."""
    with opened(config_path) as (conn, cfg):
        try:
            users.ensure_schema(conn)
            users.require_user(conn, name)
            users.set_password(
                conn, cli_actor(), name, _password(password_file), settings=cfg.console.settings()
            )
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None
        emit({"name": name, "password": "changed"})


@user_group.command("unlock")
@config_option
@click.argument("name")
def user_unlock(config_path: str, name: str) -> None:
    """Lift a lock-out after too many wrong passwords, now."""
    with opened(config_path) as (conn, _):
        try:
            users.ensure_schema(conn)
            users.unlock(conn, cli_actor(), name)
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None
        emit({"name": name, "locked": False})
