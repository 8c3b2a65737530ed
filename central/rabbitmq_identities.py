"""Per-kiosk users and permissions on RabbitMQ (3.10), as strict as mosquitto's ACL.

Theory of operation
-------------------
RabbitMQ authorises an MQTT client twice. Its *vhost permissions* (three regular
expressions: configure, write, read) are matched against the names of the queues and
exchanges the MQTT plugin uses on the client's behalf: the session queue
``mqtt-subscription-<client id>qos0|1`` (declared and deleted: configure; bound: write;
consumed: read) and ``amq.topic`` (published to: write; bound from: read). Its *topic
permissions* on ``amq.topic`` (write, read) are matched against the routing key of each
PUBLISH and of each SUBSCRIBE's binding (the MQTT topic with ``/`` as ``.``). A user with
no topic permission on an exchange may use any routing key there, so every kiosk must
get one.

Each kiosk gets a user named by its kiosk id, and:

* configure, write, read on its own session queues only (the kiosk's client id is its
  kiosk id: ``sync.client``), plus write and read on ``amq.topic``; nothing on the
  collectors' uplink queue or another kiosk's session;
* topic write only on ``aps.v1.<kiosk>.up.<name>``; topic read only on its own
  ``aps.v1.<kiosk>.down.…`` and the fleet-wide ``aps.v1.fleet.down.…`` (central's presence
  and keys).

RabbitMQ 3.10 expands ``{username}``, ``{vhost}`` and ``{client_id}`` in topic permissions,
not in vhost permissions, so these are written out with the kiosk's id (which has no
regex metacharacters: :data:`sync.envelope.KIOSK_ID_RE`). What 3.10 does *not* do is bind
a client id to a user at CONNECT: its client-id registry registers (and disconnects the
holder of) any client id a user presents once its password is right, before any
permission is checked. What that gives an attacker, and what it does not, is shown in
tests/test_rabbit_permissions.py and docs/scale.md.

``ctl`` runs one ``rabbitmqctl`` command (a list of arguments, and ``stdin=``: what
rabbitmqctl reads, the password) on a node of the cluster: :func:`rabbitmqctl` in
production, the test cluster's ``ctl`` in the tests. A password never goes in the
arguments: a command line is readable by every local user (``ps``).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from sync.envelope import check_kiosk_id

Ctl = Callable[..., str]

EXCHANGE = "amq.topic"


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str


def _literal(name: str) -> str:
    """``name`` as a regular expression matching only itself (PCRE and Python alike)."""
    return re.sub(r"([^A-Za-z0-9_])", r"\\\1", name)


def session_queues(client_id: str) -> tuple[str, str]:
    """The MQTT plugin's session queues for ``client_id`` (QoS 0 and QoS 1)."""
    base = f"mqtt-subscription-{client_id}qos"
    return f"{base}0", f"{base}1"


def kiosk_permissions(kiosk: str) -> Permissions:
    k = _literal(check_kiosk_id(kiosk))
    own = rf"mqtt\-subscription\-{k}qos[01]"
    return Permissions(
        configure=rf"^{own}$",
        write=rf"^({own}|amq\.topic)$",
        read=rf"^({own}|amq\.topic)$",
        topic_write=rf"^aps\.v1\.{k}\.up\.[a-z_-]+$",
        topic_read=rf"^aps\.v1\.({k}\.down\.([a-z_-]+|#)|fleet\.down\.([a-z_-]+|\*|#)(\.[^.]+)*)$",
    )


def collector_permissions(queue: str) -> Permissions:
    """A collector: its uplink queue, publishing acks and downlink to any kiosk."""
    q = _literal(queue)
    return Permissions(
        configure=rf"^{q}$",
        write=rf"^({q}|amq\.topic)$",
        read=rf"^({q}|amq\.topic)$",
        topic_write=r"^aps\.v1\.([a-z0-9-]+\.down\.[a-z_-]+|fleet\.down\.[a-z_-]+(\.[^.*#]+)*)$",
        topic_read=r"^aps\.v1\.(\*|[a-z0-9-]+)\.up\.[a-z_-]+$",
    )


def _apply(ctl: Ctl, user: str, password: str, perms: Permissions, vhost: str) -> None:
    if not password or any(c in password for c in "\r\n"):
        raise ValueError(f"{user}: a RabbitMQ password must be one non-empty line")
    # The password on standard input, never in the arguments (any local user can read a
    # process's command line in ps); rabbitmqctl reads it there when it is left out.
    try:
        ctl("add_user", user, stdin=password + "\n")
    except RuntimeError as exc:
        if "already exists" not in str(exc) and "user_already_exists" not in str(exc):
            raise
        ctl("change_password", user, stdin=password + "\n")
    ctl("set_permissions", "-p", vhost, user, perms.configure, perms.write, perms.read)
    ctl(
        "set_topic_permissions",
        "-p",
        vhost,
        user,
        EXCHANGE,
        perms.topic_write,
        perms.topic_read,
    )


def provision_kiosk(ctl: Ctl, kiosk: str, password: str, vhost: str = "/") -> Permissions:
    """Create (or re-key) the kiosk's user with its permissions; the same call again is
    harmless."""
    perms = kiosk_permissions(kiosk)
    _apply(ctl, kiosk, password, perms, vhost)
    return perms


def provision_collector(
    ctl: Ctl, user: str, password: str, queue: str = "aps.uplink", vhost: str = "/"
) -> Permissions:
    perms = collector_permissions(queue)
    _apply(ctl, user, password, perms, vhost)
    return perms


def revoke_kiosk(ctl: Ctl, kiosk: str) -> None:
    """Delete the kiosk's user: its connections are closed and it cannot log in again."""
    ctl("delete_user", check_kiosk_id(kiosk))


def rabbitmqctl(node: str | None = None, timeout_s: float = 60) -> Ctl:
    """A :data:`Ctl` running the system's ``rabbitmqctl`` (as a user allowed to)."""

    def run(*args: str, stdin: str | None = None) -> str:
        cmd = ["rabbitmqctl", *(["-n", node] if node else []), *args]
        done = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {args[0]}: {done.stderr.strip()[-500:]}")
        return done.stdout

    return run
