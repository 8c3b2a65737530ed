"""Generate the production mosquitto configuration for an APS fleet.

Theory of operation
-------------------
``aps-central broker-config --out DIR`` writes three files, all derived from
one :class:`BrokerOptions` and nothing else:

- ``aps.conf``: the drop-in for Debian's ``/etc/mosquitto/conf.d/``
  (:func:`render_conf`). The kiosks' listener speaks TLS only and requires a
  client certificate from the APS CA, whose CN becomes the user name and the
  client id; the collectors' and admin tools' listener is on 127.0.0.1 with
  passwords; identities, roles and ACLs live in the dynamic-security plugin
  found for this machine's architecture; queue and size limits as measured
  (docs/broker.md). With ``--crl`` a ``crlfile`` line is added, for a second
  lock besides deleting the kiosk's dynsec client.
- ``dynsec-bootstrap.json``: the plugin commands run once after
  ``mosquitto_ctrl dynsec init`` (default deny for publishing, subscribing
  and receiving; the collectors' role), exactly
  :func:`central.broker_identities.setup_commands`.
- ``NEXT-STEPS.txt``: what the technician does next, also printed.

``config/mosquitto.conf`` in the repository is :func:`render_conf` of the
defaults (a test holds them equal), and :class:`central.mosquitto.MosquittoProcess`
runs mosquitto with the output of :func:`render_conf` for its own ports and
paths, so the tests exercise the generated file and nothing else.

Writing is idempotent (:func:`write_broker_config`): a file whose content is
already what would be written is left alone; a file that differs is replaced
only with ``force``, otherwise the run stops before writing anything and
names the files that differ.

Revocation is the kiosk's dynsec client being deleted
(``python -m central.broker_identities remove-kiosk``): the plugin kicks the
connection at once and the certificate then gets nothing (default deny).
"""

from __future__ import annotations

import functools
import glob
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click

from central import CentralError
from central.broker_identities import setup_commands

CONF_NAME = "aps.conf"
BOOTSTRAP_NAME = "dynsec-bootstrap.json"
NEXT_STEPS_NAME = "NEXT-STEPS.txt"
DYNSEC_FILE = "dynamic-security.json"
PLUGIN_NAME = "mosquitto_dynamic_security.so"
#: Where Debian puts the plugin on amd64 (the value in the shipped config/mosquitto.conf).
AMD64_PLUGIN = f"/usr/lib/x86_64-linux-gnu/{PLUGIN_NAME}"
ADMIN_USER = "aps-admin"


class BrokerConfigError(CentralError):
    """The broker configuration cannot be generated or written as asked."""


@dataclass(frozen=True, kw_only=True)
class BrokerOptions:
    """Everything the generated configuration depends on (ports and paths only)."""

    kiosk_port: int = 8883
    #: None: the kiosks' listener binds every interface (production); tests give 127.0.0.1.
    kiosk_address: str | None = None
    local_port: int = 1883
    tls_dir: Path = Path("/etc/aps/tls")
    data_dir: Path = Path("/var/lib/mosquitto")
    plugin: str = AMD64_PLUGIN
    hostname: str = "central.example"
    crl: bool = False

    def __post_init__(self) -> None:
        for name in ("kiosk_port", "local_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise BrokerConfigError(
                    f"--{name.replace('_', '-')} {port}: a TCP port is 1-65535; "
                    f"give e.g. {8883 if name == 'kiosk_port' else 1883}"
                )
        if self.kiosk_port == self.local_port:
            raise BrokerConfigError(
                f"--kiosk-port and --local-port are both {self.kiosk_port}: "
                "the two listeners need different ports"
            )
        for name in ("tls_dir", "data_dir"):
            if not Path(getattr(self, name)).is_absolute():
                raise BrokerConfigError(
                    f"--{name.replace('_', '-')} {getattr(self, name)}: must be an absolute "
                    "path (mosquitto runs from another directory)"
                )
        if any(c.isspace() for c in f"{self.tls_dir}{self.data_dir}{self.plugin}"):
            raise BrokerConfigError(
                "paths with spaces cannot be written in mosquitto.conf: choose paths without"
            )


@functools.cache
def find_plugin(choice: str = "auto") -> str:
    """The dynamic-security plugin's path: ``choice`` itself, or found on this machine."""
    if choice != "auto":
        return choice
    try:
        arch = subprocess.run(
            ["dpkg-architecture", "-qDEB_HOST_MULTIARCH"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        arch = ""
    candidates = [f"/usr/lib/{arch}/{PLUGIN_NAME}"] if arch else []
    candidates += [*sorted(glob.glob(f"/usr/lib/*/{PLUGIN_NAME}")), f"/usr/lib/{PLUGIN_NAME}"]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise BrokerConfigError(
        f"{PLUGIN_NAME} not found under /usr/lib: install Debian's 'mosquitto' package "
        "(2.0 or later ships it), or give its path with --plugin"
    )


def render_conf(o: BrokerOptions) -> str:
    """The conf.d file for these options (the text of config/mosquitto.conf for the defaults)."""
    kiosk_listener = f"listener {o.kiosk_port}" + (f" {o.kiosk_address}" if o.kiosk_address else "")
    crl = (
        "# Defence in depth: certificates listed here are refused at the TLS handshake\n"
        "# (mosquitto rereads the file on SIGHUP: systemctl reload mosquitto).\n"
        f"crlfile {o.tls_dir}/crl.pem\n"
        if o.crl
        else ""
    )
    return f"""\
# APS central broker: install as /etc/mosquitto/conf.d/aps.conf (docs/broker.md, step by step).
# Generated by 'aps-central broker-config'; change the options, not this file.
# Debian's own /etc/mosquitto/mosquitto.conf already sets pid_file, persistence true,
# persistence_location /var/lib/mosquitto/ and log_dest, and includes conf.d/: setting any of
# them again here would stop mosquitto ("Duplicate ... value in configuration").
per_listener_settings false

# Nobody is anonymous. Identities, roles and ACLs live in the dynamic-security plugin
# (bootstrap: dynsec-bootstrap.json; kiosks and collectors: python -m
# central.broker_identities; docs/broker.md). mosquitto writes the plugin's file itself.
allow_anonymous false
plugin {o.plugin}
plugin_opt_config_file {o.data_dir}/{DYNSEC_FILE}

# Kiosks: mutual TLS only (plain text is refused); the certificate's CN is the kiosk id,
# the user name and the client id (a kiosk cannot choose another client id).
{kiosk_listener}
cafile {o.tls_dir}/ca.crt
certfile {o.tls_dir}/broker.crt
keyfile {o.tls_dir}/broker.key
{crl}require_certificate true
use_identity_as_username true
use_username_as_clientid true

# Collectors and admin tools, on the central host only: user name and password, and the
# client id is forced to the user name, so no identity can take another's session.
listener {o.local_port} 127.0.0.1
use_username_as_clientid true

# mosquitto drops QoS 1 messages silently beyond max_queued_messages (default 1000);
# raise the count and cap by bytes. The kiosks' outbox is the storage, not the broker.
max_queued_messages 100000
max_queued_bytes 268435456
max_inflight_messages 100
# Big messages reach the collector and are dead-lettered with a reason ("oversize").
message_size_limit 67108864
# Small acks must not wait for Nagle + delayed ACK (~40 ms each).
set_tcp_nodelay true

# Persistence itself is switched on by Debian's mosquitto.conf; save every minute, not
# every 30 minutes (mosquitto's default), so a crash loses less of the collectors' queues.
autosave_interval 60
"""


def render_bootstrap() -> str:
    """The plugin commands to run once after ``mosquitto_ctrl dynsec init``."""
    return json.dumps({"commands": setup_commands()}, indent=2) + "\n"


def render_next_steps(o: BrokerOptions, out: Path) -> str:
    """What the technician does after generating (also written as NEXT-STEPS.txt)."""
    tls, data = o.tls_dir, o.data_dir
    crl = (
        f"   and the CRL: openssl ca -gencrl ... -out {tls}/crl.pem (must exist before start)\n"
        if o.crl
        else ""
    )
    return f"""\
APS broker configuration written to {out}.
Next steps, as root on the central host (docs/broker.md explains each):
 1. apt-get install -y mosquitto mosquitto-clients
 2. TLS files in {tls}: ca.crt, broker.crt (CN and subjectAltName DNS:{o.hostname}),
    broker.key (0640, group mosquitto); keep ca.key off the broker.
{crl} 3. install -m 0644 {out / CONF_NAME} /etc/mosquitto/conf.d/{CONF_NAME}
 4. mosquitto_ctrl dynsec init {data}/{DYNSEC_FILE} {ADMIN_USER}
    chown mosquitto:mosquitto {data}/{DYNSEC_FILE}; chmod 0600 {data}/{DYNSEC_FILE}
    systemctl restart mosquitto
 5. Put the admin's password in /etc/aps/broker-admin.pw (0600), then apply the bootstrap
    ({BOOTSTRAP_NAME}: deny by default, the collectors' role):
    python -m central.broker_identities --port {o.local_port} \\
        --admin-password-file /etc/aps/broker-admin.pw setup
 6. One identity per collector: ... add-collector aps-collector-1 --password-file FILE
 7. Kiosks connect to {o.hostname}:{o.kiosk_port} (TLS, certificate CN = kiosk id);
    enrol each with add-kiosk, revoke with remove-kiosk (disconnected at once).
"""


def generated_files(o: BrokerOptions, out: Path) -> dict[str, str]:
    return {
        CONF_NAME: render_conf(o),
        BOOTSTRAP_NAME: render_bootstrap(),
        NEXT_STEPS_NAME: render_next_steps(o, out),
    }


def write_broker_config(o: BrokerOptions, out: Path, *, force: bool = False) -> dict[str, str]:
    """Write the files into ``out``; returns ``{name: "written" | "unchanged" | "replaced"}``.

    Nothing is written when a file differs from what would be written and
    ``force`` is not given: the error names every such file.
    """
    files = generated_files(o, out)
    changed = [
        name
        for name, text in files.items()
        if (out / name).exists() and (out / name).read_text(encoding="utf-8") != text
    ]
    if changed and not force:
        raise BrokerConfigError(
            f"{', '.join(str(out / n) for n in changed)}: differs from what would be generated "
            "(edited by hand, or other options); pass --force to replace it"
        )
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    for name, text in files.items():
        path = out / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            result[name] = "unchanged"
            continue
        result[name] = "replaced" if name in changed else "written"
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, path)
    return result


# -- aps-central broker-config (registered in central/cli.py) ---------------------------------


@click.command("broker-config")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write aps.conf, dynsec-bootstrap.json and NEXT-STEPS.txt into.",
)
@click.option("--kiosk-port", default=8883, show_default=True, help="The kiosks' TLS listener.")
@click.option(
    "--kiosk-address",
    default=None,
    help="Address the kiosks' listener binds (default: every interface).",
)
@click.option(
    "--local-port",
    default=1883,
    show_default=True,
    help="The collectors' and admin tools' listener (on 127.0.0.1).",
)
@click.option(
    "--tls-dir",
    default="/etc/aps/tls",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Holds ca.crt, broker.crt and broker.key (and crl.pem with --crl).",
)
@click.option(
    "--data-dir",
    default="/var/lib/mosquitto",
    show_default=True,
    type=click.Path(path_type=Path),
    help="mosquitto's persistence directory (the plugin's file lives there).",
)
@click.option(
    "--plugin",
    default="auto",
    show_default=True,
    help="Path of mosquitto_dynamic_security.so; 'auto' finds it for this architecture.",
)
@click.option(
    "--hostname",
    default="central.example",
    show_default=True,
    help="The name kiosks connect to (the broker certificate's subjectAltName).",
)
@click.option("--crl", is_flag=True, help="Also refuse certificates listed in TLS_DIR/crl.pem.")
@click.option("--force", is_flag=True, help="Replace files that differ from what is generated.")
def broker_config_command(
    out: Path,
    kiosk_port: int,
    kiosk_address: str | None,
    local_port: int,
    tls_dir: Path,
    data_dir: Path,
    plugin: str,
    hostname: str,
    crl: bool,
    force: bool,
) -> None:
    """Generate the production mosquitto configuration for this fleet (idempotent)."""
    try:
        options = BrokerOptions(
            kiosk_port=kiosk_port,
            kiosk_address=kiosk_address,
            local_port=local_port,
            tls_dir=tls_dir,
            data_dir=data_dir,
            plugin=find_plugin(plugin),
            hostname=hostname,
            crl=crl,
        )
        result = write_broker_config(options, out, force=force)
    except BrokerConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for name, what in result.items():
        click.echo(f"{what:9} {out / name}")
    click.echo((out / NEXT_STEPS_NAME).read_text(encoding="utf-8"), nl=False)
