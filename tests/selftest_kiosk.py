"""Test helpers for ``selftest`` and ``doctor``: a provisioned kiosk's files, a fake central clock.

- :func:`kiosk_files`: an agent.toml as an installed kiosk has it (data directory
  0700, config 0640, the broker identity copied in 0600, the ``[identity]`` keys
  made with :mod:`sync.identity_files`), for the current user as the "service user".
- :class:`DateServer`: a tiny HTTP server on loopback whose ``Date`` header is
  this machine's clock plus ``offset_s`` (central with a clock of its own).
- :func:`make_certificate`: a CA and a client certificate with chosen validity,
  made with ``cryptography``.
"""

from __future__ import annotations

import getpass
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from central.mosquitto import mqtt_toml
from edge_agent.host_checks import Policy
from sync.identity_files import create_private_key, write_public_keys
from sync.mqtt_link import MqttSettings

KIOSK = "k-selftest-01"
USER = getpass.getuser()


def policy(config: Path) -> Policy:
    """The install's ownership rules with this test's user standing in for root and aps."""
    return Policy(service_user=USER, config_owner=USER, config_path=config)


def policy_args() -> list[str]:
    return ["--service-user", USER, "--config-owner", USER]


@dataclass
class KioskFiles:
    root: Path
    config: Path
    data: Path
    signing_key: Path
    central_keys: Path
    mqtt: MqttSettings


def kiosk_files(
    root: Path,
    mqtt: MqttSettings,
    *,
    devices: dict[str, Any] | None = None,
    central_url: str = "",
    identity: bool = True,
    sync: dict[str, Any] | None = None,
) -> KioskFiles:
    """Write a kiosk's files under ``root``; ``mqtt``'s TLS files are copied in, 0600."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir(mode=0o700)
    tls = root / "tls"
    tls.mkdir(mode=0o700)
    copied: dict[str, Any] = {}
    for name in ("tls_ca", "tls_cert", "tls_key"):
        src = getattr(mqtt, name)
        if src is not None:
            dst = tls / Path(src).name
            shutil.copyfile(src, dst)
            dst.chmod(0o600 if name == "tls_key" else 0o644)
            copied[name] = dst
    settings = MqttSettings(
        host=mqtt.host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password,
        **copied,
    )
    signing_key = root / "keys" / "signing.key"
    central_keys = root / "keys" / "central-keys.json"
    if identity:
        create_private_key(signing_key)
        central, _ = create_private_key(root / "central-side" / "central.key")
        write_public_keys(central_keys, [central.public_key()])
    lines = [
        "[kiosk]",
        f'id = "{KIOSK}"',
        'agency = "000.00.14.H56"',
        "slot = 1",
        'office_name = "UBND Phường 1"',
        'hotline = "0277 3861 234"',
        "",
        "[agent]",
        f'database = "{data / "kiosk.db"}"',
        f'receipts_dir = "{data / "receipts"}"',
        "",
        mqtt_toml(settings),
        "[sync]",
        *(f"{k} = {v}" for k, v in (sync or {}).items()),
        "",
        "[payment]",
        'bank_bin = "970436"',
        'account = "0011002345678"',
        "",
        "[devices]",
        *(f'{k} = "{v}"' for k, v in (devices or {}).items()),
        "",
        "[identity]",
    ]
    if identity:
        lines += [
            'office = "000.00.14.H56"',
            f'signing_key = "{signing_key}"',
            f'central_keys = "{central_keys}"',
        ]
    if central_url:
        lines.append(f'central_url = "{central_url}"')
    config = root / "agent.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config.chmod(0o640)
    return KioskFiles(root, config, data, signing_key, central_keys, settings)


class DateServer:
    """HTTP on loopback answering every GET with 200 and ``Date`` = now + ``offset_s``."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def date_time_string(self, timestamp: float | None = None) -> str:
                return formatdate(time.time() + server_self.offset_s, usegmt=True)

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DateServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@contextmanager
def date_server(offset_s: float = 0.0) -> Iterator[DateServer]:
    with DateServer(offset_s) as server:
        yield server


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certificate(
    directory: Path, *, not_before: datetime, not_after: datetime, cn: str = KIOSK
) -> tuple[Path, Path, Path]:
    """(ca.crt, client.crt, client.key) with the client's validity as given."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Test fleet CA"))
        .issuer_name(_name("Test fleet CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1000))
        .not_valid_after(now + timedelta(days=1000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, crt_path, key_path = (directory / n for n in ("ca.crt", "client.crt", "client.key"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, crt_path, key_path
