"""``aps-central enroll|ca|kiosk ...``: tokens, the fleet CA and the registry (docs/enrolment.md).

Thin: every command loads central.toml, builds :class:`central.fleet.enrolment.Enrolment` (or
opens the CA) and calls one method; the logic is in :mod:`central.fleet`.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from central import backoffice_db
from central.cli_backoffice import kiosk as kiosk_group
from central.config import CentralConfig, load_central_config
from central.fleet import tokens
from central.fleet.ca import CaError, CertificateAuthority
from central.fleet.enrolment import Enrolment, EnrolRefused, from_config
from central.fleet.lifecycle import IllegalTransition
from central.fleet.registry import KioskEntry, Registry, RegistryError
from sync.config import ConfigError
from sync.envelope_signing import key_id
from sync.identity_files import KeyFileError, create_private_key

DEFAULT_CONFIG = "/etc/aps/central.toml"

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="Central's TOML configuration file.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

_DURATION_RE = re.compile(r"\A([0-9]{1,4})([mhd])\Z")


def _cfg(path: str) -> CentralConfig:
    try:
        return load_central_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _service(path: str) -> Enrolment:
    try:
        return from_config(_cfg(path))[0]
    except (CaError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


def _registry(path: str) -> Registry:
    """The registry alone (listing and showing need neither the CA nor the broker)."""
    try:
        return Registry(backoffice_db.target_of(_cfg(path).central))
    except OSError as exc:
        raise click.ClickException(f"central's database cannot be opened: {exc}") from None


def _duration(text: str) -> timedelta:
    match = _DURATION_RE.match(text.strip())
    if match is None:
        raise click.BadParameter(
            f"{text!r}: give a number and m, h or d, e.g. 30m, 24h, 2d", param_hint="--expires"
        )
    n, unit = int(match[1]), match[2]
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]


def _refused(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- enroll ------------------------------------------------------------------------------


@click.group()
def enroll() -> None:
    """One-time enrolment tokens: one office slot each, redeemed by `aps-agent provision`."""


@enroll.command("create")
@config_option
@click.option("--office", required=True, help="The office's agency id, e.g. 000.00.14.H56.")
@click.option("--slot", required=True, type=int, help="The kiosk's digit in its office (0-9).")
@click.option("--expires", default=None, help="Lifetime, e.g. 30m, 24h, 2d (default: config).")
@click.option("--location", default="", help="Where the kiosk stands (shown in kiosk list).")
@json_option
def enroll_create(
    config_path: str, office: str, slot: int, expires: str | None, location: str, as_json: bool
) -> None:
    """Issue a token for OFFICE's slot; refused while a kiosk or a live token holds it."""
    cfg = _cfg(config_path)
    service = _service(config_path)
    lifetime = (
        _duration(expires)
        if expires is not None
        else timedelta(hours=cfg.enrolment.token_lifetime_h)
    )
    try:
        issued = service.create_token(
            office=office, slot=slot, lifetime=lifetime, location=location
        )
    except RegistryError as exc:
        raise _refused(exc) from None
    entry = issued.entry
    central = cfg.enrolment.central_url or "https://CENTRAL:PORT"
    if as_json:
        click.echo(
            json.dumps(
                {
                    "token_id": entry.token_id,
                    "token": issued.token,
                    "office": entry.office,
                    "slot": entry.slot,
                    "expires_at": entry.expires_at.isoformat(),
                    "ca_pin": service.ca.pin,
                    "central_url": central,
                }
            )
        )
        return
    click.echo(f"token {entry.token_id} for office {entry.office}, slot {entry.slot}")
    click.echo(f"  expires  {_when(entry.expires_at)} (one use)")
    click.echo(f"  CA pin   {service.ca.pin}")
    click.echo("On the box, run:")
    click.echo(f"  sudo aps-agent provision --central {central} --token {issued.token}")


@enroll.command("list")
@config_option
@click.option("--office", default=None, help="Only this office.")
@json_option
def enroll_list(config_path: str, office: str | None, as_json: bool) -> None:
    """Tokens with their state (issued, used, expired, revoked); secrets are never shown."""
    registry = _registry(config_path)
    try:
        items = tokens.list_tokens(registry, office=office)
    finally:
        registry.close()
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "token_id": t.token_id,
            "office": t.office,
            "slot": t.slot,
            "state": "expired" if t.state.value == "issued" and now >= t.expires_at else t.state,
            "expires_at": t.expires_at.isoformat(),
            "kiosk": t.kiosk,
        }
        for t in items
    ]
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    if not rows:
        click.echo("no tokens")
    for r in rows:
        click.echo(
            f"{r['token_id']}  {r['office']} slot {r['slot']}  {r['state']}  "
            f"expires {r['expires_at']}  {r['kiosk'] or ''}".rstrip()
        )


@enroll.command("revoke")
@config_option
@click.argument("token_id", metavar="TOKEN-ID")
def enroll_revoke(config_path: str, token_id: str) -> None:
    """Withdraw an unused token; its slot is free again."""
    registry = _registry(config_path)
    try:
        entry = tokens.revoke(registry, token_id)
    except (RegistryError, IllegalTransition) as exc:
        raise _refused(exc) from None
    finally:
        registry.close()
    click.echo(f"token {entry.token_id} revoked (office {entry.office}, slot {entry.slot})")


# -- ca ----------------------------------------------------------------------------------


@click.group()
def ca() -> None:
    """The fleet CA: kiosk client certificates, central's HTTPS and the broker's TLS."""


@ca.command("init")
@config_option
def ca_init(config_path: str) -> None:
    """Make the CA in [enrolment] ca_dir and central's signing key if missing; print both."""
    cfg = _cfg(config_path)
    try:
        authority = CertificateAuthority.open(cfg.enrolment.ca_dir)
    except CaError as exc:
        raise _refused(exc) from None
    try:
        key, made = create_private_key(cfg.security.signing_key)
    except (KeyFileError, OSError) as exc:
        raise click.ClickException(f"[security] signing_key: {exc}") from None
    click.echo(f"CA       {authority.cert_path}")
    click.echo(f"CA pin   {authority.pin}")
    click.echo(
        f"signing  {cfg.security.signing_key} ({'made now' if made else 'kept'}; key id "
        f"{key_id(key.public_key())})"
    )
    if cfg.enrolment.crl_file is not None:
        _service(config_path).write_crl()
        click.echo(f"CRL      {cfg.enrolment.crl_file} (the broker's crlfile)")


@ca.command("broker-cert")
@config_option
@click.option("--name", "names", multiple=True, required=True, help="Broker host name or IP.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/etc/aps/tls"),
    show_default=True,
    help="Directory for ca.crt, broker.crt and broker.key (mosquitto's tls files).",
)
def ca_broker_cert(config_path: str, names: tuple[str, ...], out: Path) -> None:
    """The broker's TLS certificate (and the CA it trusts kiosks by) for mosquitto."""
    cfg = _cfg(config_path)
    try:
        authority = CertificateAuthority.open(cfg.enrolment.ca_dir, create=False)
        crt, key = authority.issue_server(list(names), out, "broker")
    except CaError as exc:
        raise _refused(exc) from None
    shutil.copyfile(authority.cert_path, out / "ca.crt")
    click.echo(f"broker certificate {crt} (key {key}), CA {out / 'ca.crt'}")
    click.echo("give the key to mosquitto: chown root:mosquitto broker.key; chmod 640 broker.key")


# -- kiosk (added to the back office's `kiosk` group) ------------------------------------


def _entry_json(e: KioskEntry) -> dict[str, Any]:
    return {
        "kiosk": e.kiosk,
        "office": e.office,
        "slot": e.slot,
        "agency": e.agency,
        "location": e.location,
        "state": e.state.value,
        "enrolled_at": e.enrolled_at.isoformat(),
        "connected_at": None if e.connected_at is None else e.connected_at.isoformat(),
        "cert_serial": e.cert_serial,
        "cert_not_after": None if e.cert_not_after is None else e.cert_not_after.isoformat(),
        "revoked_at": None if e.revoked_at is None else e.revoked_at.isoformat(),
        "revoke_reason": e.revoke_reason,
        "hostname": e.hostname,
        "signing_keys": [
            {
                "kid": k.kid,
                "added_at": k.added_at.isoformat(),
                "retired_at": None if k.retired_at is None else k.retired_at.isoformat(),
            }
            for k in e.keys
        ],
    }


@kiosk_group.command("list")
@config_option
@click.option("--office", default=None, help="Only this office.")
@json_option
def kiosk_list(config_path: str, office: str | None, as_json: bool) -> None:
    """Enrolled kiosks: office, slot, state, certificate expiry."""
    registry = _registry(config_path)
    try:
        entries = registry.list(office)
    finally:
        registry.close()
    if as_json:
        click.echo(json.dumps([_entry_json(e) for e in entries]))
        return
    if not entries:
        click.echo("no kiosks enrolled")
    for e in entries:
        click.echo(
            f"{e.kiosk}  {e.office} slot {e.slot}  {e.state.value}  "
            f"certificate until {_when(e.cert_not_after)}  {e.location}".rstrip()
        )


@kiosk_group.command("show")
@config_option
@click.argument("kiosk_id", metavar="KIOSK")
@json_option
def kiosk_show(config_path: str, kiosk_id: str, as_json: bool) -> None:
    """One kiosk's registry entry: keys, certificate, state and history."""
    registry = _registry(config_path)
    try:
        entry = registry.get(kiosk_id)
    finally:
        registry.close()
    if entry is None:
        raise click.ClickException(
            f"kiosk {kiosk_id!r} is not enrolled; `aps-central kiosk list` shows the kiosks"
        )
    doc = _entry_json(entry)
    if as_json:
        click.echo(json.dumps(doc))
        return
    for key, value in doc.items():
        if key != "signing_keys":
            click.echo(f"{key:<14} {'-' if value in (None, '') else value}")
    for k in doc["signing_keys"]:
        state = "accepted" if k["retired_at"] is None else f"retired {k['retired_at']}"
        click.echo(f"signing key    {k['kid']} (added {k['added_at']}, {state})")


@kiosk_group.command("revoke")
@config_option
@click.argument("kiosk_id", metavar="KIOSK")
@click.option("--reason", required=True, help="Why (kept in the registry).")
def kiosk_revoke(config_path: str, kiosk_id: str, reason: str) -> None:
    """Revoke KIOSK: broker access cut at once, its records refused, its slot freed."""
    service = _service(config_path)
    try:
        entry = service.revoke(kiosk_id, reason=reason)
    except EnrolRefused as exc:
        raise click.ClickException(
            f"{exc.message}; the registry says revoked, run this again once the broker is up"
        ) from None
    except (RegistryError, IllegalTransition) as exc:
        raise _refused(exc) from None
    click.echo(
        f"kiosk {entry.kiosk} revoked ({entry.revoke_reason}); slot {entry.slot} of "
        f"{entry.office} is free"
    )
    if service.broker_admin is None:
        click.echo(
            "no broker admin configured ([enrolment] broker_admin_password_file): cut its broker "
            "access now with `python -m central.broker_identities --admin-password-file FILE "
            f"remove-kiosk {entry.kiosk}`"
        )
    else:
        click.echo("its broker identity is removed: it was disconnected at once")


@kiosk_group.command("retire-key")
@config_option
@click.argument("kiosk_id", metavar="KIOSK")
@click.argument("kid", metavar="KEY-ID")
def kiosk_retire_key(config_path: str, kiosk_id: str, kid: str) -> None:
    """Stop accepting KIOSK's signing key KEY-ID (after a rotation by `aps-agent renew`)."""
    registry = _registry(config_path)
    try:
        registry.retire_signing_key(kiosk_id, kid)
    except RegistryError as exc:
        raise _refused(exc) from None
    finally:
        registry.close()
    click.echo(f"kiosk {kiosk_id}: signing key {kid} retired")
