"""Broker identities: who may connect to mosquitto and what each may do.

Theory of operation
-------------------
The broker runs mosquitto's dynamic-security plugin (docs/broker.md says why
it and not ``password_file`` + ``acl_file``). Every client has its own
identity there, and nothing is anonymous:

- a **kiosk** is a dynsec client named by its kiosk id, with **no password**
  (it can only log in with its TLS certificate, whose CN the kiosk listener
  makes its user name and client id) and a role of its own, ``kiosk-<id>``,
  that may publish under ``aps/v1/<id>/up/`` and subscribe to and receive
  ``aps/v1/<id>/down/`` and ``aps/v1/fleet/down/``. mosquitto 2.0.11's
  dynsec does not substitute ``%u``, hence one role per kiosk. Subscriptions
  are checked when made, so a kiosk asking for
  ``$share/aps-collectors/aps/v1/+/up/records`` or ``#`` is refused (0x80),
  and never joins the collectors' share group.
- a **collector** has a password, its client id bound to its user name, and
  the shared role ``aps-collector``.
- the **admin** (made by ``mosquitto_ctrl dynsec init``) manages the rest.

Default access is deny for everything, receiving included, so an identity
gets exactly what its roles grant.

This module builds the plugin's JSON commands (pure functions, testable
without a broker) and sends them over MQTT as the admin
(:class:`DynsecAdmin`); ``python -m central.broker_identities`` is the
technician's command line over it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import paho.mqtt.client as mqtt

from central import CentralError
from sync.envelope import TOPIC_ROOT, check_kiosk_id
from sync.mqtt_link import MqttSettings, make_paho_client

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
COLLECTOR_ROLE = "aps-collector"
#: Names kiosks may not take: they would collide with central's identities.
RESERVED_PREFIXES = ("aps-", "fleet")

Command = dict[str, Any]


class BrokerIdentityError(CentralError):
    """The broker refused an identity command, or could not be reached."""


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True, "priority": 0}


def kiosk_role(kiosk: str) -> str:
    return f"kiosk-{kiosk}"


def default_access_commands() -> list[Command]:
    """Deny by default, receiving included (dynsec's own default lets clients receive)."""
    return [
        {
            "command": "setDefaultACLAccess",
            "acls": [
                {"acltype": name, "allow": False}
                for name in ("publishClientSend", "publishClientReceive", "subscribe")
            ],
        }
    ]


def collector_role_commands() -> list[Command]:
    """The collectors' role: read every kiosk's up/, write every kiosk's down/ and fleet/."""
    up = f"{TOPIC_ROOT}/+/up/#"
    return [
        {
            "command": "createRole",
            "rolename": COLLECTOR_ROLE,
            "acls": [
                _acl("subscribePattern", up),
                _acl("subscribePattern", f"$share/+/{up}"),
                _acl("publishClientReceive", up),
                _acl("publishClientSend", f"{TOPIC_ROOT}/+/down/#"),
            ],
        }
    ]


def setup_commands() -> list[Command]:
    """Once per broker, after ``mosquitto_ctrl dynsec init``."""
    return default_access_commands() + collector_role_commands()


def collector_commands(name: str, password: str) -> list[Command]:
    """One collector (or other central tool that ingests), its client id bound to its name."""
    if not name.startswith("aps-"):
        raise BrokerIdentityError(
            f"collector name {name!r}: must start with 'aps-' (kiosk ids may not), "
            "e.g. 'aps-collector-2'"
        )
    return [
        {
            "command": "createClient",
            "username": name,
            "password": password,
            "clientid": name,
            "roles": [{"rolename": COLLECTOR_ROLE, "priority": 0}],
        }
    ]


def check_enrollable(kiosk: str) -> str:
    check_kiosk_id(kiosk)
    if kiosk.startswith(RESERVED_PREFIXES):
        raise BrokerIdentityError(
            f"kiosk id {kiosk!r}: ids starting with {' or '.join(RESERVED_PREFIXES)} are "
            "reserved for central's own identities; choose another id"
        )
    return kiosk


def kiosk_commands(kiosk: str) -> list[Command]:
    """One kiosk: a password-less client (certificate only) with a role of its own."""
    check_enrollable(kiosk)
    own = f"{TOPIC_ROOT}/{kiosk}"
    fleet = f"{TOPIC_ROOT}/fleet/down/#"
    return [
        {
            "command": "createRole",
            "rolename": kiosk_role(kiosk),
            "acls": [
                _acl("publishClientSend", f"{own}/up/#"),
                _acl("subscribePattern", f"{own}/down/#"),
                _acl("publishClientReceive", f"{own}/down/#"),
                _acl("subscribePattern", fleet),
                _acl("publishClientReceive", fleet),
            ],
        },
        {
            "command": "createClient",
            "username": kiosk,
            "clientid": kiosk,
            "roles": [{"rolename": kiosk_role(kiosk), "priority": 0}],
        },
    ]


def remove_kiosk_commands(kiosk: str) -> list[Command]:
    """Revoke a kiosk: deleting the client also disconnects it at once."""
    check_kiosk_id(kiosk)
    return [
        {"command": "deleteClient", "username": kiosk},
        {"command": "deleteRole", "rolename": kiosk_role(kiosk)},
    ]


def new_password() -> str:
    return secrets.token_urlsafe(24)


class DynsecAdmin:
    """Sends dynsec commands as the admin over the broker's local listener."""

    def __init__(self, settings: MqttSettings, *, timeout_s: float = 10.0) -> None:
        if not settings.username:
            raise BrokerIdentityError(
                "broker admin: no user name; give the admin made by 'mosquitto_ctrl dynsec init'"
            )
        self.settings = settings
        self.timeout_s = timeout_s

    def run(self, commands: Iterable[Command], *, ignore: Iterable[str] = ()) -> None:
        """Run the commands in one message; raise on any error not listed in ``ignore``."""
        batch = list(commands)
        if not batch:
            return
        done = threading.Event()
        subscribed = threading.Event()
        responses: list[dict[str, Any]] = []
        client = make_paho_client(str(self.settings.username), self.settings)

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            with contextlib.suppress(ValueError, AttributeError):
                responses.extend(json.loads(msg.payload).get("responses", []))
            done.set()

        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = on_message
        try:
            client.connect(self.settings.host, self.settings.port, 30)
        except OSError as exc:
            raise BrokerIdentityError(
                f"broker admin: cannot reach {self.settings.host}:{self.settings.port}: {exc}"
            ) from exc
        client.loop_start()
        try:
            client.subscribe(RESPONSE_TOPIC, qos=1)
            if not subscribed.wait(self.timeout_s):
                raise BrokerIdentityError(
                    f"broker admin: no answer from {self.settings.host}:{self.settings.port} "
                    f"within {self.timeout_s}s (wrong admin password, or the dynamic-security "
                    "plugin is not loaded: see docs/broker.md)"
                )
            client.publish(CONTROL_TOPIC, json.dumps({"commands": batch}), qos=1)
            if not done.wait(self.timeout_s):
                raise BrokerIdentityError(
                    f"broker admin: the dynamic-security plugin did not answer within "
                    f"{self.timeout_s}s (is it loaded? see docs/broker.md)"
                )
        finally:
            client.disconnect()
            client.loop_stop()
        skip = set(ignore)
        errors = [
            f"{r.get('command')}: {r['error']}"
            for r in responses
            if r.get("error") and r["error"] not in skip
        ]
        if errors:
            raise BrokerIdentityError("broker refused: " + "; ".join(errors))


# -- the technician's command line (docs/broker.md) ------------------------------------------


@click.group(help="Create and remove APS identities in mosquitto's dynamic-security plugin.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Broker host.")
@click.option("--port", default=1883, show_default=True, help="The broker's local listener.")
@click.option("--admin", default="aps-admin", show_default=True, help="dynsec admin user.")
@click.option(
    "--admin-password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the admin's password (else $APS_BROKER_ADMIN_PASSWORD, else asked).",
)
@click.pass_context
def main(
    ctx: click.Context, host: str, port: int, admin: str, admin_password_file: Path | None
) -> None:
    if admin_password_file is not None:
        password = admin_password_file.read_text(encoding="utf-8").strip()
    else:
        password = os.environ.get("APS_BROKER_ADMIN_PASSWORD") or click.prompt(
            f"password of {admin}", hide_input=True
        )
    ctx.obj = DynsecAdmin(MqttSettings(host=host, port=port, username=admin, password=password))


@main.command(help="Once per broker: deny by default, and the collectors' role.")
@click.pass_obj
def setup(admin: DynsecAdmin) -> None:
    admin.run(setup_commands(), ignore=("Role already exists",))
    click.echo("default access: deny; role aps-collector ready")


@main.command("add-collector", help="A collector identity with a new random password.")
@click.argument("name")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the new password (created 0600); put it in central.toml.",
)
@click.pass_obj
def add_collector(admin: DynsecAdmin, name: str, password_file: Path) -> None:
    password = new_password()
    admin.run(collector_commands(name, password))
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    click.echo(f"collector {name}: client id {name}; password written to {password_file}")


@main.command("add-kiosk", help="Enrol a kiosk: certificate-only login, its own topics.")
@click.argument("kiosk")
@click.pass_obj
def add_kiosk(admin: DynsecAdmin, kiosk: str) -> None:
    admin.run(kiosk_commands(kiosk))
    click.echo(f"kiosk {kiosk}: enrolled (role {kiosk_role(kiosk)}); issue it a certificate")


@main.command("remove-kiosk", help="Revoke a kiosk: it is disconnected at once.")
@click.argument("kiosk")
@click.pass_obj
def remove_kiosk(admin: DynsecAdmin, kiosk: str) -> None:
    admin.run(remove_kiosk_commands(kiosk))
    click.echo(f"kiosk {kiosk}: removed and disconnected")


if __name__ == "__main__":  # python -m central.broker_identities
    try:
        main()
    except BrokerIdentityError as exc:
        raise SystemExit(f"error: {exc}") from None
