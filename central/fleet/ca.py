"""Central's certificate authority: kiosk client certificates, central's and the broker's.

Theory of operation
-------------------
One CA per fleet (ECDSA P-256, ``cryptography``'s x509), in a directory of its own
(``[enrolment] ca_dir``): ``ca.key`` (PKCS#8 PEM, created 0600 with ``O_EXCL``, never
overwritten) and ``ca.crt``. :meth:`CertificateAuthority.open` makes it on first use
(``aps-central ca init`` does so explicitly). The same ``ca.crt`` is

- the broker's ``cafile``: mosquitto accepts exactly the kiosk certificates this CA signed
  (and makes their CN the MQTT user name and client id);
- the trust anchor of a provisioned kiosk for the broker and for central's HTTPS.

:meth:`~CertificateAuthority.sign_kiosk` takes a kiosk's CSR (PEM), checks its signature
(proof that the box holds the key) and that the key is EC P-256, and issues a client
certificate whose subject is set by central alone (``CN = <kiosk id>``: the CSR's subject is
never looked at, so a box cannot ask for another kiosk's name), with a random 128-bit
serial recorded in the registry and :data:`KIOSK_VALIDITY` (397 days).
:meth:`~CertificateAuthority.issue_server` makes a server certificate (key made here, kept
next to it) for central's HTTPS service or the broker's TLS listener.

The **pin** (:func:`ca_pin`) is ``sha256:`` and the hex SHA-256 of the CA certificate's
SubjectPublicKeyInfo, as kubeadm prints it: an enrolment token carries it, so a fresh box
fetches the CA over unauthenticated TLS, checks it against the pin, and from then on trusts
only that CA (:mod:`edge_agent.provision`).

A **CRL** (:meth:`~CertificateAuthority.crl`) lists the certificates of revoked kiosks, for
a broker listener's ``crlfile`` (``[enrolment] crl_file``; mosquitto re-reads it on SIGHUP):
then a revoked kiosk's certificate fails the TLS handshake itself, on top of its broker
identity being deleted. Its nextUpdate is :data:`CRL_VALIDITY` ahead, and central rewrites it
at every start and revocation: a CRL left to expire would lock every kiosk out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from central import CentralError
from sync.ca_pin import ca_pin, key_pin

__all__ = [
    "KIOSK_VALIDITY",
    "CaError",
    "CertificateAuthority",
    "IssuedCertificate",
    "ca_pin",
    "load_csr",
]

KIOSK_VALIDITY = dt.timedelta(days=397)
#: A CRL's nextUpdate: OpenSSL refuses every certificate once a CRL it checks is past it, so
#: central rewrites the CRL at every start and every revocation, long before this.
CRL_VALIDITY = dt.timedelta(days=90)
SERVER_VALIDITY = dt.timedelta(days=397)
CA_VALIDITY = dt.timedelta(days=3650)
#: Clock skew a freshly issued certificate tolerates (a Raspberry Pi has no real-time clock).
BACKDATE = dt.timedelta(minutes=10)
MAX_CSR_BYTES = 4096


class CaError(CentralError):
    """The CA cannot be used, or a request to it was refused; the message says why."""


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    serial: str  # hex, as the registry records it
    not_after: dt.datetime

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def key_pin(self) -> str:
        """``sha256:<hex>`` of the certified key (the registry keeps it)."""
        return key_pin(self.certificate.public_key())


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    """A CSR from PEM text, signature checked, key EC P-256; else :class:`CaError`."""
    if not isinstance(pem, str) or len(pem) > MAX_CSR_BYTES:
        raise CaError(f"csr: expected a PEM certificate request of at most {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise CaError(
            "csr: not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)"
        ) from None
    if not csr.is_signature_valid:
        raise CaError("csr: its signature does not match its key; make the request again")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CaError("csr: the key must be EC P-256 (prime256v1), as aps-agent provision makes")
    return csr


def _serial() -> int:
    return secrets.randbits(127) | (1 << 126)  # positive, 127 bits, never 0


def _write_private_pem(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class CertificateAuthority:
    """The fleet CA in ``directory`` (``ca.key`` 0600, ``ca.crt``)."""

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate):
        self.directory = Path(directory)
        self._key = key
        self.certificate = cert

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def pin(self) -> str:
        return ca_pin(self.certificate)

    @classmethod
    def open(
        cls, directory: Path, *, create: bool = True, name: str = "APS fleet CA"
    ) -> CertificateAuthority:
        """The CA in ``directory``; made there first if missing and ``create``."""
        directory = Path(directory)
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        if not key_path.exists():
            if not create:
                raise CaError(f"no CA in {directory}; make it with `aps-central ca init`")
            if cert_path.exists():
                raise CaError(
                    f"{cert_path} exists without its key {key_path}; restore the key from "
                    "backup (a new CA would orphan every kiosk certificate)"
                )
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = ec.generate_private_key(ec.SECP256R1())
            _write_private_pem(key_path, key)
            now = dt.datetime.now(dt.UTC)
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
            cert = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(_serial())
                .not_valid_before(now - BACKDATE)
                .not_valid_after(now + CA_VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=False,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=True,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .sign(key, hashes.SHA256())
            )
            _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
            return cls(directory, key, cert)
        mode = key_path.stat().st_mode & 0o777
        if mode & 0o077:
            raise CaError(
                f"{key_path} is readable by group or others (mode {oct(mode)}); "
                f"run: chmod 600 {key_path}"
            )
        try:
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except FileNotFoundError:
            raise CaError(
                f"{cert_path} is missing next to {key_path}; restore it from backup"
            ) from None
        except ValueError as exc:
            raise CaError(f"the CA in {directory} cannot be read: {exc}") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise CaError(f"{key_path}: not an EC private key")
        if loaded.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise CaError(f"{key_path} and {cert_path} do not belong together")
        return cls(directory, loaded, cert)

    def _builder(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        validity: dt.timedelta,
        now: dt.datetime | None,
    ) -> tuple[x509.CertificateBuilder, int, dt.datetime]:
        now = now or dt.datetime.now(dt.UTC)
        not_after = min(now + validity, self.certificate.not_valid_after_utc)
        serial = _serial()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        return builder, serial, not_after.replace(microsecond=0)

    def sign_kiosk(
        self, csr_pem: str, kiosk: str, *, now: dt.datetime | None = None
    ) -> IssuedCertificate:
        """A client certificate for ``kiosk`` on the CSR's key; the CSR's subject is ignored."""
        csr = load_csr(csr_pem)
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):  # load_csr checked it; for mypy
            raise CaError("csr: the key must be EC P-256")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kiosk)])
        builder, serial, not_after = self._builder(subject, key, KIOSK_VALIDITY, now)
        cert = (
            builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            .add_extension(_leaf_key_usage(), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        return IssuedCertificate(cert, format(serial, "x"), not_after)

    def crl(
        self, revoked: Iterable[tuple[str, dt.datetime]], *, now: dt.datetime | None = None
    ) -> bytes:
        """A CRL (PEM) of these ``(serial hex, revoked at)``, valid :data:`CRL_VALIDITY`."""
        now = now or dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - BACKDATE)
            .next_update(now + CRL_VALIDITY)
        )
        for serial, at in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(serial, 16))
                .revocation_date(min(at, now))
                .build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM)

    def write_crl(self, path: Path, revoked: Iterable[tuple[str, dt.datetime]]) -> None:
        """Write :meth:`crl` atomically (0644) for the broker's ``crlfile``."""
        _write_public(path, self.crl(revoked))

    def issue_server(self, names: list[str], directory: Path, stem: str) -> tuple[Path, Path]:
        """``<stem>.crt`` and ``<stem>.key`` in ``directory`` for these DNS names / IPs.

        Made once and kept; made again when missing, expiring within 30 days, or not
        covering ``names``.
        """
        if not names:
            raise CaError("server certificate: give at least one host name or IP address")
        crt, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        if crt.exists() and key_path.exists() and self._server_fits(crt, names):
            return crt, key_path
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        with contextlib.suppress(FileNotFoundError):
            key_path.unlink()
        _write_private_pem(key_path, key)
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        builder, _, _ = self._builder(subject, key.public_key(), SERVER_VALIDITY, None)
        cert = (
            builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(_leaf_key_usage(), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        _write_public(crt, cert.public_bytes(serialization.Encoding.PEM))
        return crt, key_path

    def _server_fits(self, crt: Path, names: list[str]) -> bool:
        try:
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
            alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, x509.ExtensionNotFound):
            return False
        have = {str(v) for v in alt.get_values_for_type(x509.IPAddress)}
        have |= set(alt.get_values_for_type(x509.DNSName))
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        return (
            cert.issuer == self.certificate.subject
            and set(names) <= have
            and cert.not_valid_after_utc > soon
        )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
