"""The fleet CA's CRL on a real mosquitto: a revoked kiosk's certificate fails the handshake.

A minimal TLS listener (not the shipped configuration: the CRL is an option the broker
configuration may take, ``[enrolment] crl_file``) with ``crlfile``; mosquitto re-reads it on
SIGHUP. Kiosks A and B are enrolled; A is revoked: after the reload A's certificate is
refused at the TLS handshake while B still gets in.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from central.fleet.ca import CRL_VALIDITY, CertificateAuthority
from central.fleet.enrolment import BrokerAddress, Enrolment
from central.fleet.registry import Registry
from central.mosquitto import find_mosquitto, free_port
from sync.identity_files import public_key_text
from tests.enrol_stack import OFFICE
from tests.waiting import wait_until


def _enrol(service: Enrolment, slot: int, tmp: Path) -> tuple[str, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "box")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    token = service.create_token(office=OFFICE, slot=slot).token
    answer = service.enrol(
        {
            "token": token,
            "csr": csr,
            "signing_key": public_key_text(Ed25519PrivateKey.generate().public_key()),
        }
    )
    crt, key_path = tmp / f"k{slot}.crt", tmp / f"k{slot}.key"
    crt.write_text(answer["certificate"])
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(answer["kiosk"]), crt, key_path


def handshake(port: int, ca: Path, crt: Path, key: Path) -> bool:
    """True if a TLS handshake with this client certificate completes and the broker keeps
    the connection (TLS 1.3 reports a refused client certificate only on the first read)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(crt), str(key))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            # MQTT CONNECT (3.1.1, clean session, keep-alive 30, client id "x").
            tls.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 1]) + b"x")
            return tls.recv(4)[:1] == b"\x20"  # CONNACK
    except (ssl.SSLError, ConnectionError, TimeoutError, OSError):
        return False


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Enrolment, Path, int, subprocess.Popen[bytes]]]:
    ca_dir = tmp_path / "ca"
    authority = CertificateAuthority.open(ca_dir)
    authority.issue_server(["127.0.0.1"], ca_dir, "broker")
    crl = tmp_path / "crl.pem"
    service = Enrolment(
        registry=Registry(tmp_path / "central.db"),
        ca=authority,
        central_keys=[],
        broker=BrokerAddress("127.0.0.1"),
        central_url="https://central",
        offices=(OFFICE,),
        crl_file=crl,
    )
    service.write_crl()
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                f"user {pwd.getpwuid(os.getuid()).pw_name}",  # as root: do not switch user
                "per_listener_settings false",
                "allow_anonymous false",
                f"listener {port} 127.0.0.1",
                f"cafile {ca_dir / 'ca.crt'}",
                f"certfile {ca_dir / 'broker.crt'}",
                f"keyfile {ca_dir / 'broker.key'}",
                "require_certificate true",
                "use_identity_as_username true",
                f"crlfile {crl}",
                "",
            ]
        )
    )
    proc = subprocess.Popen(
        [find_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(lambda: listening() or proc.poll() is not None, 10, "mosquitto listening")
        assert proc.poll() is None, "mosquitto exited at start"
        yield service, ca_dir / "ca.crt", port, proc
    finally:
        proc.terminate()
        proc.wait(10)
        service.registry.close()


def test_a_revoked_kiosk_fails_the_handshake_after_the_crl_reload(
    setup: tuple[Enrolment, Path, int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    service, ca, port, proc = setup
    a, a_crt, a_key = _enrol(service, 1, tmp_path)
    _b, b_crt, b_key = _enrol(service, 2, tmp_path)
    assert handshake(port, ca, a_crt, a_key) and handshake(port, ca, b_crt, b_key)

    # A was renewed once: both its certificates go on the CRL at its revocation.
    first_serial = x509.load_pem_x509_certificate(a_crt.read_bytes()).serial_number
    entry = service.registry.get(a)
    assert entry is not None
    service.registry.record_certificate(
        a, serial="abcdef", not_after=datetime.now(UTC), tls_key_pin=entry.tls_key_pin
    )
    service.revoke(a, reason="stolen")
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    assert sorted(r.serial_number for r in crl) == sorted([first_serial, 0xABCDEF])
    assert crl.is_signature_valid(service.ca.certificate.public_key())  # type: ignore[arg-type]
    proc.send_signal(signal.SIGHUP)  # what `systemctl reload mosquitto` does
    wait_until(lambda: not handshake(port, ca, a_crt, a_key), 10, "A refused after the reload")
    assert handshake(port, ca, b_crt, b_key)


def test_the_crl_is_fresh_and_lists_only_revoked_kiosks(tmp_path: Path) -> None:
    authority = CertificateAuthority.open(tmp_path / "ca")
    now = datetime.now(UTC)
    crl = x509.load_pem_x509_crl(authority.crl([("abc123", now)], now=now))
    assert [r.serial_number for r in crl] == [0xABC123]
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - now >= CRL_VALIDITY - CRL_VALIDITY / 90
    assert crl.issuer == authority.certificate.subject
