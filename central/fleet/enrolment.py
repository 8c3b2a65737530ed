"""Enrolment, renewal and revocation of kiosks: what ``POST /v1/enrol`` and friends do.

Theory of operation
-------------------
This module holds the logic; the HTTP routes (:mod:`central.web.routes_enrol`) and the CLI
only parse and print. Nothing here trusts the box beyond what it can prove:

- **Enrol** (:meth:`Enrolment.enrol`): the token names the office and slot (the request
  cannot); central derives the kiosk id (:func:`kiosk_id_for`), signs the CSR's key with the
  kiosk id as the only subject (:meth:`central.fleet.ca.CertificateAuthority.sign_kiosk`),
  and in **one** registry transaction redeems the token (issued -> used), adds the kiosk
  (pending, its signing key, the certificate serial), records the kiosk's office, and
  creates the kiosk's broker identity (when a broker admin is configured). Any failure rolls
  all of it back, so the token can be used again; a refused token (used, expired, revoked)
  changes nothing but an expiry found on the way. A used token presented again by the
  *same box* (a CSR for the TLS key it enrolled, which only that box can sign, and the same
  signing key) gets a fresh certificate for its kiosk: a box that lost central's answer to a
  power cut can simply re-run ``aps-agent provision``.
- **Renew** (:meth:`Enrolment.renew`): a request signed (domain ``aps-enrol-v1``) with one of
  the kiosk's currently accepted signing keys and dated within :data:`RENEW_SKEW_S` of
  central's clock; a new CSR gets a new certificate, an optional new signing key is added
  (the old one stays accepted until retired: key rotation). Revoked kiosks are refused.
- **Revoke** (:meth:`Enrolment.revoke`): registry state revoked, the CRL rewritten (when
  ``[enrolment] crl_file`` is set), then the broker identity is deleted, which disconnects
  the kiosk at once (mosquitto's dynamic-security plugin); its records are refused by the
  collector from then on (:attr:`SenderKeys.may_send`).

Kiosk ids are ``<office>-k<slot>`` (the office lower-cased, dots as dashes), with ``-2``,
``-3``... when that id was used before (ids are never reused: a revoked kiosk's stolen
certificate must never match a new identity).
"""

from __future__ import annotations

import binascii
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central import backoffice_db
from central.fleet import tokens
from central.fleet.ca import CaError, CertificateAuthority, load_csr
from central.fleet.lifecycle import KioskState
from central.fleet.registry import KioskEntry, NotRegistered, Registry, RegistryError
from sync.ca_pin import key_pin
from sync.envelope import EnvelopeError, check_kiosk_id
from sync.envelope_signing import EnvelopeSignatureError, key_id, verify
from sync.identity_files import KeyFileError, public_key_from_text, public_key_text

if TYPE_CHECKING:
    from central.config import CentralConfig

__all__ = [
    "RENEW_SKEW_S",
    "BrokerAddress",
    "BrokerIdentities",
    "EnrolRefused",
    "Enrolment",
    "from_config",
    "kiosk_id_for",
    "known_offices",
]

log = logging.getLogger("aps.central.enrolment")

RENEW_SKEW_S = 600
AGENCY_RE = re.compile(r"\A[0-9A-Z][0-9A-Z.]{2,30}\Z")
HOSTNAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9.-]{0,63}\Z")
MACHINE_ID_RE = re.compile(r"\A[0-9a-f]{32}\Z")


class EnrolRefused(RegistryError):
    """A request was refused: ``status`` (HTTP), ``code`` and ``field`` say why and where."""

    def __init__(self, status: int, code: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.field, self.message = status, code, field, message


class BrokerIdentities(Protocol):
    """What enrolment needs of the broker (:class:`central.broker_identities.DynsecAdmin`)."""

    def run(self, commands: Iterable[dict[str, Any]], *, ignore: Iterable[str] = ()) -> None: ...


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int = 8883


def kiosk_id_for(office: str, slot: int, taken: Callable[[str], bool]) -> str:
    """``<office>-k<slot>``, or with ``-2``, ``-3``... if ``taken`` says it was used."""
    base = re.sub(r"[^a-z0-9]+", "-", office.lower()).strip("-")
    base = f"{base}-k{slot}"
    candidate, n = base, 1
    while taken(candidate):
        n += 1
        candidate = f"{base}-{n}"
    check_kiosk_id(candidate)
    if candidate.startswith(("aps-", "fleet")):
        raise RegistryError(
            f"office {office!r} would make kiosk id {candidate!r}, which is reserved for "
            "central's identities (aps-*, fleet*)"
        )
    return candidate


def known_offices(conn: sqlite3.Connection, configured: Iterable[str]) -> set[str]:
    """Offices central serves: ``[enrolment] offices``, the support roster's, kiosks' own."""
    out = set(configured)
    for table in ("shifts", "kiosk_offices", "fleet_kiosks"):
        # Asked first, not tried: on PostgreSQL a failed statement aborts the caller's
        # transaction (PRAGMA table_info answers on both engines).
        if conn.execute(f"PRAGMA table_info({table})").fetchone() is None:
            continue  # that part of central was never set up
        out.update(r[0] for r in conn.execute(f"SELECT DISTINCT office FROM {table}"))
    return out


def _b64_key(field: str, text: Any) -> Ed25519PublicKey:
    try:
        return public_key_from_text(text)
    except (KeyFileError, binascii.Error, ValueError):
        raise EnrolRefused(
            400, "invalid", field, f"{field}: expected an Ed25519 public key, 43 base64url chars"
        ) from None


def _check(field: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    """``value`` if it is empty (the box did not know) or matches ``pattern``."""
    if not isinstance(value, str) or (value and not pattern.match(value)):
        raise EnrolRefused(400, "invalid", field, f"{field}: expected {what}")
    return value


@dataclass
class Enrolment:
    """Central's side of enrolment over the registry, the CA and (optionally) the broker."""

    registry: Registry
    ca: CertificateAuthority
    central_keys: list[Ed25519PublicKey]
    broker: BrokerAddress
    central_url: str
    offices: tuple[str, ...] = ()
    broker_admin: BrokerIdentities | None = None
    clock: Callable[[], float] = time.time
    crl_file: Path | None = None

    def write_crl(self) -> None:
        """The CRL of every certificate of every revoked kiosk, if ``crl_file`` is set."""
        if self.crl_file is not None:
            self.ca.write_crl(self.crl_file, self.registry.revoked_certificates())

    # -- tokens ----------------------------------------------------------------------------

    def check_office(self, office: str) -> str:
        if not isinstance(office, str) or not AGENCY_RE.match(office):
            raise RegistryError(
                f"office: {office!r} is not an agency id (the code that starts the office's "
                "dossier codes, e.g. 000.00.14.H56)"
            )
        with self.registry.transaction() as conn:
            known = known_offices(conn, self.offices)
        if office not in known:
            listed = ", ".join(sorted(known)) or "none yet"
            raise RegistryError(
                f"office: {office} is not an office central serves (known: {listed}); add it "
                "to [enrolment] offices in central.toml, or check the spelling"
            )
        return office

    def create_token(
        self,
        *,
        office: str,
        slot: int,
        lifetime: timedelta = tokens.DEFAULT_LIFETIME,
        location: str = "",
    ) -> tokens.IssuedToken:
        self.check_office(office)
        kiosk_id_for(office, 0, lambda _k: False)  # an office whose ids would be reserved
        return tokens.create(
            self.registry,
            office=office,
            slot=slot,
            agency=office,
            pin=self.ca.pin,
            lifetime=lifetime,
            location=location,
            now=self._now(),
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- the answer a box gets -------------------------------------------------------------

    def _answer(self, entry: KioskEntry, certificate_pem: str) -> dict[str, Any]:
        return {
            "kiosk": entry.kiosk,
            "office": entry.office,
            "slot": entry.slot,
            "agency": entry.agency,
            "location": entry.location,
            "broker": {"host": self.broker.host, "port": self.broker.port},
            "certificate": certificate_pem,
            "certificate_not_after": None
            if entry.cert_not_after is None
            else entry.cert_not_after.isoformat(),
            "ca": self.ca.pem,
            "central_keys": {
                "v": 1,
                "keys": [
                    {"kid": key_id(k), "public": public_key_text(k)} for k in self.central_keys
                ],
            },
            "central_url": self.central_url,
            "signing_keys": sorted(entry.accepted_keys),
        }

    def _broker_run(self, commands: list[dict[str, Any]], ignore: tuple[str, ...] = ()) -> None:
        if self.broker_admin is None:
            return
        from central.broker_identities import BrokerIdentityError

        try:
            self.broker_admin.run(commands, ignore=ignore)
        except BrokerIdentityError as exc:
            raise EnrolRefused(
                503, "broker-unavailable", None, f"the broker identity could not be made: {exc}"
            ) from None

    # -- enrol -----------------------------------------------------------------------------

    def enrol(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/enrol``: redeem the token, certify the box, register the kiosk."""
        from central.broker_identities import kiosk_commands

        token = request.get("token")
        if not isinstance(token, str):
            raise EnrolRefused(400, "invalid", "token", "token: missing")
        csr = request.get("csr")
        signing_key = _b64_key("signing_key", request.get("signing_key"))
        hostname = _check("hostname", request.get("hostname", ""), HOSTNAME_RE, "a host name")
        machine_id = _check(
            "machine_id", request.get("machine_id", ""), MACHINE_ID_RE, "32 hex digits"
        )
        try:
            tokens.parse_token(token)
        except tokens.TokenRefused as exc:
            raise EnrolRefused(400, "invalid", "token", str(exc)) from None
        now = self._now()
        refused: tokens.TokenRefused | None = None
        with self.registry.transaction() as conn:
            try:
                used = tokens.redeem(conn, token, now=now)
            except tokens.TokenRefused as exc:
                refused = exc  # an expiry it found is committed with this transaction
            else:
                kiosk = kiosk_id_for(
                    used.office, used.slot, lambda k: self.registry.get(k) is not None
                )
                try:
                    issued = self.ca.sign_kiosk(csr if isinstance(csr, str) else "", kiosk, now=now)
                except CaError as exc:
                    raise EnrolRefused(400, "invalid", "csr", str(exc)) from None
                self.registry.add_kiosk(
                    kiosk,
                    office=used.office,
                    slot=used.slot,
                    agency=used.agency,
                    signing_key=signing_key,
                    location=used.location,
                    cert_serial=issued.serial,
                    cert_not_after=issued.not_after,
                    hostname=hostname,
                    machine_id=machine_id,
                    tls_key_pin=issued.key_pin,
                    now=now,
                )
                tokens.bind_kiosk(conn, used.token_id, kiosk)
                _assign_office(conn, kiosk, used.office)
                # A leftover of an attempt whose commit failed is this kiosk's own identity.
                self._broker_run(
                    kiosk_commands(kiosk), ignore=("Role already exists", "Client already exists")
                )
        if refused is not None and refused.reason == "used":
            again = self._retried(token, csr, signing_key)
            if again is not None:
                return again
        if refused is not None:
            status = {"unknown": 401, "used": 409}.get(refused.reason, 410)
            raise EnrolRefused(status, f"token-{refused.reason}", "token", str(refused))
        entry = self.registry.get(kiosk)
        if entry is None:  # just committed
            raise RegistryError(f"kiosk {kiosk} vanished after its enrolment")
        log.info("kiosk %s enrolled on %s slot %d", kiosk, entry.office, entry.slot)
        return self._answer(entry, issued.pem)

    def _retried(
        self, token: str, csr: Any, signing_key: Ed25519PublicKey
    ) -> dict[str, Any] | None:
        """The same box retrying a redemption whose answer it never got, else None.

        Only the box that holds the enrolled TLS key can make a CSR for it (the CSR is signed
        with it), and it must send the same signing key: then it gets a fresh certificate for
        its kiosk. Anyone else with the token gets "used".
        """
        used = tokens.get(self.registry, tokens.parse_token(token)[0])
        entry = None if used is None or used.kiosk is None else self.registry.get(used.kiosk)
        if entry is None or entry.state is KioskState.REVOKED or not isinstance(csr, str):
            return None
        try:
            csr_pin = key_pin(load_csr(csr).public_key())
        except CaError:
            return None
        if csr_pin != entry.tls_key_pin or key_id(signing_key) not in entry.accepted_keys:
            return None
        issued = self.ca.sign_kiosk(csr, entry.kiosk)
        self.registry.record_certificate(
            entry.kiosk, serial=issued.serial, not_after=issued.not_after, tls_key_pin=csr_pin
        )
        log.info("kiosk %s: enrolment retried by the same box, certificate re-issued", entry.kiosk)
        fresh = self.registry.get(entry.kiosk)
        return None if fresh is None else self._answer(fresh, issued.pem)

    # -- renew -----------------------------------------------------------------------------

    def renew(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/enrol/renew``: a new certificate (and maybe signing key) for a kiosk."""
        kiosk = request.get("kiosk")
        try:
            check_kiosk_id(kiosk)  # type: ignore[arg-type]
        except EnvelopeError:
            raise EnrolRefused(400, "invalid", "kiosk", "kiosk: expected a kiosk id") from None
        entry = self.registry.get(str(kiosk))
        if entry is None:
            raise EnrolRefused(404, "unknown-kiosk", "kiosk", f"kiosk {kiosk} is not enrolled")
        if entry.state is KioskState.REVOKED:
            raise EnrolRefused(
                403, "revoked", "kiosk", f"kiosk {kiosk} is revoked; it must be enrolled anew"
            )
        try:
            kid = verify("aps-enrol-v1", request, entry.accepted_keys)
        except EnvelopeSignatureError as exc:
            raise EnrolRefused(
                401, f"signature-{exc.reason}", "sig", f"the renewal's signature: {exc}"
            ) from None
        at = request.get("at")
        now = self.clock()
        if isinstance(at, bool) or not isinstance(at, int) or abs(now - at) > RENEW_SKEW_S:
            raise EnrolRefused(
                400,
                "stale",
                "at",
                f"at: the request's time is more than {RENEW_SKEW_S} s from central's clock "
                f"({int(now)}); set the kiosk's clock (NTP) and renew again",
            )
        new_key = request.get("signing_key")
        new_pub = None if new_key in (None, "") else _b64_key("signing_key", new_key)
        csr = request.get("csr")
        try:
            issued = self.ca.sign_kiosk(csr if isinstance(csr, str) else "", entry.kiosk)
        except CaError as exc:
            raise EnrolRefused(400, "invalid", "csr", str(exc)) from None
        with self.registry.transaction():
            self.registry.record_certificate(
                entry.kiosk,
                serial=issued.serial,
                not_after=issued.not_after,
                tls_key_pin=issued.key_pin,
                renewal=True,
            )
            if new_pub is not None:
                self.registry.add_signing_key(entry.kiosk, new_pub)
        log.info("kiosk %s renewed (signed by %s)", entry.kiosk, kid)
        fresh = self.registry.get(entry.kiosk)
        if fresh is None:
            raise NotRegistered(f"kiosk {entry.kiosk} vanished during its renewal")
        return self._answer(fresh, issued.pem)

    # -- revoke ----------------------------------------------------------------------------

    def revoke(self, kiosk: str, *, reason: str) -> KioskEntry:
        """Revoke in the registry, then cut the broker identity (disconnects it at once).

        Re-running for a kiosk already revoked only retries the broker part.
        """
        from central.broker_identities import remove_kiosk_commands

        entry = self.registry.get(kiosk)
        if entry is None:
            raise NotRegistered(
                f"kiosk {kiosk!r} is not in the registry; `aps-central kiosk list` shows them"
            )
        if entry.state is not KioskState.REVOKED:
            self.registry.revoke(kiosk, reason=reason)
        self.write_crl()
        self._broker_run(
            remove_kiosk_commands(kiosk), ignore=("Client not found", "Role not found")
        )
        out = self.registry.get(kiosk)
        if out is None:
            raise NotRegistered(f"kiosk {kiosk} vanished during its revocation")
        return out


def _assign_office(conn: sqlite3.Connection, kiosk: str, office: str) -> None:
    """Record the kiosk's office for the downlink (``kiosk_offices``), if that table exists."""
    from central import downlink_log

    if conn.execute("PRAGMA table_info(kiosk_offices)").fetchone() is None:
        # the back office was never set up on this database (asked first: see known_offices)
        log.debug("kiosk_offices missing: kiosk %s's office is in the registry only", kiosk)
        return
    downlink_log.assign_office(conn, kiosk, office, source="enrolment")


def from_config(cfg: CentralConfig) -> tuple[Enrolment, tuple[Path, Path]]:
    """The enrolment service and central's HTTPS (certificate, key) from central.toml.

    Makes the CA, central's signing key and its HTTPS certificate on first use.
    """
    from central.broker_identities import DynsecAdmin
    from sync.identity_files import create_private_key
    from sync.mqtt_link import MqttSettings

    section = cfg.enrolment
    ca = CertificateAuthority.open(section.ca_dir)
    tls = ca.issue_server(section.names() or ["127.0.0.1"], section.ca_dir, "server")
    central_key, _created = create_private_key(cfg.security.signing_key)
    admin: BrokerIdentities | None = None
    if section.broker_admin_password_file is not None:
        password = section.broker_admin_password_file.read_text(encoding="utf-8").strip()
        admin = DynsecAdmin(
            MqttSettings(
                host=cfg.mqtt.host,
                port=cfg.mqtt.port,
                username=section.broker_admin,
                password=password,
                tls_ca=cfg.mqtt.tls_ca,
            )
        )
    host, port = section.broker_address()
    service = Enrolment(
        registry=Registry(backoffice_db.target_of(cfg.central)),  # its file or PostgreSQL
        ca=ca,
        central_keys=[central_key.public_key()],
        broker=BrokerAddress(host, port),
        central_url=section.central_url,
        offices=tuple(section.offices),
        broker_admin=admin,
        crl_file=section.crl_file,
    )
    service.write_crl()  # fresh at every start: an expired CRL would lock every kiosk out
    return service, tls
