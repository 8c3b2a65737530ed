"""Remote signing through central: provider adapters and the kiosks' signing service.

Theory of operation
-------------------
A citizen at a kiosk signs the dossier's hash with a remote-signing account
(VNPT SmartCA, Viettel MySign, ...). The provider's credentials never leave
central: the kiosk asks central over RPC (``sign.start``, ``sign.poll``),
central asks the provider over HTTPS, the citizen approves in the provider's
phone app, and the kiosk polls until the signature (or a refusal) is there.

Two provider shapes sit behind one :class:`SigningProvider` protocol
(``start(...) -> ProviderTicket``, ``poll(ticket) -> ProviderResult``):

- :class:`SmartCaProvider`, VNPT SmartCA's: ``credentials/get_certificate``
  for the citizen's certificate and serial, ``signatures/sign`` with the hash
  (hex, ``sign_type: hash``) -> the provider's transaction id, then
  ``signatures/sign/{id}/status`` until the ``message`` says signed, refused or
  expired. The service-provider id and password travel in every JSON body.
- :class:`CscProvider`, the Cloud Signature Consortium API v2's (Viettel
  MySign follows it): ``auth/login`` (HTTP Basic) -> bearer token,
  ``credentials/list`` {userID} -> the citizen's credential,
  ``credentials/info`` -> certificate and key algorithms,
  ``credentials/authorize`` with the hash -> 202 + ``handle`` (the citizen
  approves in the app), ``credentials/authorizeCheck`` until 200 + ``SAD``,
  then ``signatures/signHash`` -> the value.

Every reply is parsed by a pure function (``parse_*``: status code and raw
bytes in, a typed result or :class:`ProviderProtocolError` out), so the parsers
are tested with hypothesis without a network. HTTP goes through httpx with a
connect and a read timeout; a provider that is down or slow is
:class:`ProviderUnavailable` (retry later), one that answers nonsense is
:class:`ProviderProtocolError`, one that refuses the request (no account, bad
credentials) is :class:`ProviderRefused`.

:class:`SigningService` keeps the kiosks' transactions (in memory: a
transaction lives minutes, and a central restart only makes the citizen start
signing again). Its ids are random and central's own, not the provider's; a
kiosk sees only its own (another kiosk's id is ``not-found``). It bounds what
one kiosk may have outstanding and what central holds at all, expires
transactions after ``transaction_ttl_s`` even if the provider never says so,
lets only one poll at a time reach the provider per transaction, keeps a
finished transaction's answer for repeated polls, and checks every signature
against its certificate and the hash before it hands it to a kiosk.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import httpx

from central import CentralError
from sync.schemas import ID_NUMBER_RE, PHONE_RE, text_problem
from sync.signature_check import SignatureRefused, verify_hash_signature

log = logging.getLogger("central.signing")

OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_SHA256_RSA = "1.2.840.113549.1.1.11"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"

MAX_REPLY_BYTES = 256 * 1024  # a reply holds at most a certificate chain and a signature
DOCUMENT_NAME_CHARS = 200
_HASH_RE = re.compile(r"\A[0-9a-f]{64}\Z")
_TX_RE = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")

ProviderKind = Literal["none", "smartca", "csc"]
ProviderState = Literal["pending", "signed", "rejected", "expired"]


# -- errors ---------------------------------------------------------------------------


class SigningError(CentralError):
    """Base of remote-signing errors at central."""


class ProviderUnavailable(SigningError):
    """The provider could not be reached or did not answer in time: try again later."""


class ProviderProtocolError(SigningError):
    """The provider answered something this adapter does not understand."""


class ProviderRefused(SigningError):
    """The provider refused the request (``code``: no-account, credentials, request)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


# -- what providers return ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Signer:
    id_number: str
    phone: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProviderTicket:
    """A transaction at the provider: its id and what the adapter needs to poll it."""

    ref: str
    digest: bytes
    certificate: bytes = b""
    data: Mapping[str, str] = field(default_factory=dict)
    expires_at: float | None = None  # unix seconds, when the provider says


@dataclass(frozen=True, kw_only=True)
class ProviderResult:
    state: ProviderState
    value: bytes = b""
    certificate: bytes = b""
    reason: str | None = None
    ticket: ProviderTicket | None = None  # an updated ticket (e.g. a CSC SAD), if any


class SigningProvider(Protocol):
    name: str

    def start(self, digest: bytes, document_name: str, signer: Signer) -> ProviderTicket: ...

    def poll(self, ticket: ProviderTicket) -> ProviderResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class SigningSettings:
    provider: ProviderKind = "none"
    base_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 15.0
    transaction_ttl_s: float = 300.0
    max_outstanding_per_kiosk: int = 2
    max_transactions: int = 5000
    keep_finished_s: float = 600.0


# -- reply parsing (pure) -------------------------------------------------------------------


def _json_object(status: int, raw: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProviderProtocolError(
            f"{what}: HTTP {status} reply is not JSON ({raw[:60]!r})"
        ) from None
    if not isinstance(obj, dict):
        raise ProviderProtocolError(f"{what}: HTTP {status} reply is not a JSON object")
    return obj


def _b64(value: Any, what: str, *, limit: int = 16 * 1024) -> bytes:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProviderProtocolError(f"{what}: expected base64 text of 1-{limit} characters")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderProtocolError(f"{what}: not valid base64") from None


def _text(value: Any, what: str, *, limit: int = 256) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProviderProtocolError(f"{what}: expected text of 1-{limit} characters")
    return value


def _server_error(status: int, what: str) -> None:
    if status >= 500 or status == 429:
        raise ProviderUnavailable(f"{what}: provider answered HTTP {status}")


def parse_smartca_certificate(status: int, raw: bytes) -> tuple[str, bytes]:
    """(serial_number, DER certificate) of the citizen's first valid certificate."""
    what = "SmartCA get_certificate"
    _server_error(status, what)
    obj = _json_object(status, raw, what)
    _smartca_refusal(status, obj, what)
    data = obj.get("data")
    certs = data.get("user_certificates") if isinstance(data, dict) else None
    if not isinstance(certs, list):
        raise ProviderProtocolError(f"{what}: data.user_certificates is not a list")
    for cert in certs:
        if isinstance(cert, dict) and cert.get("cert_status_code", "VALID") == "VALID":
            serial = _text(cert.get("serial_number"), f"{what}: serial_number", limit=128)
            return serial, _b64(cert.get("cert_data"), f"{what}: cert_data")
    raise ProviderRefused("no-account", f"{what}: the citizen has no valid certificate")


def parse_smartca_sign(status: int, raw: bytes) -> str:
    """The provider's transaction id for a signing request."""
    what = "SmartCA signatures/sign"
    _server_error(status, what)
    obj = _json_object(status, raw, what)
    _smartca_refusal(status, obj, what)
    data = obj.get("data")
    if not isinstance(data, dict):
        raise ProviderProtocolError(f"{what}: no data object")
    return _text(data.get("transaction_id"), f"{what}: data.transaction_id", limit=128)


def parse_smartca_status(status: int, raw: bytes) -> ProviderResult:
    """A signing transaction's state from ``signatures/sign/{id}/status``."""
    what = "SmartCA sign status"
    _server_error(status, what)
    obj = _json_object(status, raw, what)
    if status == 404:
        return ProviderResult(state="expired", reason="the provider no longer knows it")
    _smartca_refusal(status, obj, what)
    message = obj.get("message")
    if not isinstance(message, str):
        raise ProviderProtocolError(f"{what}: message is not text")
    data = obj.get("data")
    signatures = data.get("signatures") if isinstance(data, dict) else None
    if isinstance(signatures, list) and signatures:
        first = signatures[0]
        if not isinstance(first, dict):
            raise ProviderProtocolError(f"{what}: signatures[0] is not an object")
        return ProviderResult(
            state="signed", value=_b64(first.get("signature_value"), f"{what}: signature_value")
        )
    word = message.upper()
    if "WAIT" in word or "PENDING" in word or "PROCESSING" in word:
        return ProviderResult(state="pending")
    if "REJECT" in word or "DENIED" in word or "DENY" in word or "CANCEL" in word:
        return ProviderResult(state="rejected", reason=message[:200])
    if "EXPIRE" in word or "TIMEOUT" in word:
        return ProviderResult(state="expired", reason=message[:200])
    raise ProviderProtocolError(f"{what}: unknown message {message[:80]!r} without a signature")


def _smartca_refusal(status: int, obj: dict[str, Any], what: str) -> None:
    code = obj.get("status_code", status)
    if status == 200 and code == 200:
        return
    message = str(obj.get("message", ""))[:200]
    if status == 401 or code == 401:
        raise ProviderRefused("credentials", f"{what}: provider refused sp_id/sp_password")
    if "USER" in message.upper() or "CERTIFICATE" in message.upper():
        raise ProviderRefused("no-account", f"{what}: {message or 'no such user'}")
    if isinstance(code, int) and code >= 500:
        raise ProviderUnavailable(f"{what}: provider reports status_code {code}")
    raise ProviderRefused("request", f"{what}: HTTP {status}, status_code {code!r}: {message}")


def _csc_refusal(status: int, obj: dict[str, Any], what: str) -> ProviderRefused:
    error = str(obj.get("error", ""))[:64]
    detail = str(obj.get("error_description", ""))[:200]
    if status == 401 or error in ("invalid_client", "unauthorized_client"):
        return ProviderRefused("credentials", f"{what}: provider refused the client: {detail}")
    return ProviderRefused("request", f"{what}: HTTP {status} {error}: {detail}")


def parse_csc_login(status: int, raw: bytes) -> tuple[str, float]:
    """(access token, lifetime in seconds) from ``auth/login``."""
    what = "CSC auth/login"
    _server_error(status, what)
    obj = _json_object(status, raw, what)
    if status != 200:
        raise _csc_refusal(status, obj, what)
    token = _text(obj.get("access_token"), f"{what}: access_token", limit=4096)
    expires = obj.get("expires_in", 3600)
    if not isinstance(expires, int) or isinstance(expires, bool) or expires <= 0:
        raise ProviderProtocolError(f"{what}: expires_in is not a positive integer")
    return token, float(expires)


def parse_csc_list(status: int, raw: bytes) -> str:
    """The citizen's first credential id from ``credentials/list``."""
    what = "CSC credentials/list"
    _server_error(status, what)
    obj = _json_object(status, raw, what)
    if status != 200:
        raise _csc_refusal(status, obj, what)
    ids = obj.get("credentialIDs")
    if not isinstance(ids, list):
        raise ProviderProtocolError(f"{what}: credentialIDs is not a list")
    if not ids:
        raise ProviderRefused("no-account", f"{what}: the citizen has no signing credential")
    return _text(ids[0], f"{what}: credentialIDs[0]")


def parse_csc_info(status: int, raw: bytes) -> tuple[bytes, str]:
    """(DER certificate, signAlgo OID to use) from ``credentials/info``."""
    what = "CSC credentials/info"
    _server_error(status, what)
    obj = _json_object(status, raw, what)
    if status != 200:
        raise _csc_refusal(status, obj, what)
    key, cert = obj.get("key"), obj.get("cert")
    if not isinstance(key, dict) or not isinstance(cert, dict):
        raise ProviderProtocolError(f"{what}: key or cert is not an object")
    if key.get("status", "enabled") != "enabled" or cert.get("status", "valid") != "valid":
        raise ProviderRefused(
            "no-account", f"{what}: the citizen's key or certificate is not usable"
        )
    algos = key.get("algo")
    if not isinstance(algos, list):
        raise ProviderProtocolError(f"{what}: key.algo is not a list")
    for preferred in (OID_SHA256_RSA, OID_RSA, OID_ECDSA_SHA256):
        if preferred in algos:
            algo = preferred
            break
    else:
        raise ProviderRefused("request", f"{what}: no supported signature algorithm in key.algo")
    certs = cert.get("certificates")
    if not isinstance(certs, list) or not certs:
        raise ProviderProtocolError(f"{what}: cert.certificates is empty or not a list")
    return _b64(certs[0], f"{what}: cert.certificates[0]"), algo


@dataclass(frozen=True)
class CscAuthorization:
    """``credentials/authorize`` or ``authorizeCheck``: a handle while pending, else a SAD."""

    handle: str | None = None
    sad: str | None = None
    state: Literal["pending", "authorized", "rejected", "expired"] = "pending"
    reason: str | None = None


def parse_csc_authorize(status: int, raw: bytes) -> CscAuthorization:
    """What ``credentials/authorize`` or ``credentials/authorizeCheck`` said."""
    what = "CSC credentials/authorize"
    _server_error(status, what)
    obj = _json_object(status, raw, what)
    if status == 202:
        return CscAuthorization(handle=_text(obj.get("handle"), f"{what}: handle", limit=512))
    if status == 200:
        return CscAuthorization(
            sad=_text(obj.get("SAD"), f"{what}: SAD", limit=4096), state="authorized"
        )
    error = obj.get("error")
    detail = str(obj.get("error_description", ""))[:200] or None
    if error == "access_denied":
        return CscAuthorization(state="rejected", reason=detail)
    if error == "expired_token":
        return CscAuthorization(state="expired", reason=detail)
    raise _csc_refusal(status, obj, what)


def parse_csc_sign_hash(status: int, raw: bytes) -> bytes:
    """The one signature value from ``signatures/signHash``."""
    what = "CSC signatures/signHash"
    _server_error(status, what)
    obj = _json_object(status, raw, what)
    if status != 200:
        raise _csc_refusal(status, obj, what)
    sigs = obj.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise ProviderProtocolError(f"{what}: expected signatures with exactly one value")
    return _b64(sigs[0], f"{what}: signatures[0]")


# -- HTTP ----------------------------------------------------------------------------------


class _Http:
    """POST JSON with timeouts; replies bounded to MAX_REPLY_BYTES."""

    def __init__(self, settings: SigningSettings) -> None:
        self._client = httpx.Client(
            base_url=settings.base_url.rstrip("/"),
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "aps-central"},
        )
        self._timeout = settings.request_timeout_s

    def post(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        try:
            with self._client.stream("POST", path, json=dict(body), headers=headers) as reply:
                chunks: list[bytes] = []
                size = 0
                for chunk in reply.iter_bytes():
                    size += len(chunk)
                    if size > MAX_REPLY_BYTES:
                        raise ProviderProtocolError(
                            f"POST {path}: reply is over {MAX_REPLY_BYTES} bytes"
                        )
                    chunks.append(chunk)
                return reply.status_code, b"".join(chunks)
        except httpx.TimeoutException:
            raise ProviderUnavailable(
                f"POST {path}: no answer within the timeout ({self._timeout:g} s)"
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"POST {path}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self._client.close()


# -- adapters --------------------------------------------------------------------------------


class SmartCaProvider:
    """VNPT SmartCA-shaped provider: send the hash, the citizen approves, poll."""

    name = "smartca"

    def __init__(self, settings: SigningSettings) -> None:
        self._settings = settings
        self._http = _Http(settings)

    def _credentials(self) -> dict[str, str]:
        return {"sp_id": self._settings.client_id, "sp_password": self._settings.client_secret}

    def start(self, digest: bytes, document_name: str, signer: Signer) -> ProviderTicket:
        client_tx = uuid.uuid4().hex
        status, raw = self._http.post(
            "/v1/credentials/get_certificate",
            {**self._credentials(), "user_id": signer.id_number, "transaction_id": client_tx},
        )
        serial, certificate = parse_smartca_certificate(status, raw)
        body = {
            **self._credentials(),
            "user_id": signer.id_number,
            "transaction_id": client_tx,
            "transaction_desc": document_name,
            "serial_number": serial,
            "time_stamp": datetime.now(UTC).strftime("%Y%m%d%H%M%SZ"),
            "sign_files": [
                {
                    "data_to_be_signed": digest.hex(),
                    "doc_id": client_tx,
                    "file_type": "json",
                    "sign_type": "hash",
                }
            ],
        }
        status, raw = self._http.post("/v1/signatures/sign", body)
        ref = parse_smartca_sign(status, raw)
        return ProviderTicket(ref=ref, digest=digest, certificate=certificate)

    def poll(self, ticket: ProviderTicket) -> ProviderResult:
        path = f"/v1/signatures/sign/{_path_segment(ticket.ref)}/status"
        status, raw = self._http.post(path, self._credentials())
        result = parse_smartca_status(status, raw)
        if result.state == "signed":
            return replace(result, certificate=ticket.certificate)
        return result

    def close(self) -> None:
        self._http.close()


class CscProvider:
    """Cloud Signature Consortium API v2-shaped provider (Viettel MySign and others)."""

    name = "csc"

    def __init__(self, settings: SigningSettings) -> None:
        self._settings = settings
        self._http = _Http(settings)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_until = 0.0

    def _bearer(self, *, renew: bool = False) -> dict[str, str]:
        with self._lock:
            if renew or self._token is None or time.monotonic() >= self._token_until:
                basic = base64.b64encode(
                    f"{self._settings.client_id}:{self._settings.client_secret}".encode()
                ).decode()
                status, raw = self._http.post(
                    "/csc/v2/auth/login", {}, {"Authorization": f"Basic {basic}"}
                )
                token, lifetime = parse_csc_login(status, raw)
                self._token = token
                self._token_until = time.monotonic() + max(lifetime - 30.0, lifetime / 2)
            return {"Authorization": f"Bearer {self._token}"}

    def _call(self, method: str, body: Mapping[str, Any]) -> tuple[int, bytes]:
        status, raw = self._http.post(f"/csc/v2/{method}", body, self._bearer())
        if status == 401:  # token revoked or expired early: log in again, once
            status, raw = self._http.post(f"/csc/v2/{method}", body, self._bearer(renew=True))
        return status, raw

    def start(self, digest: bytes, document_name: str, signer: Signer) -> ProviderTicket:
        credential = parse_csc_list(
            *self._call("credentials/list", {"userID": signer.id_number, "maxResults": 10})
        )
        certificate, algo = parse_csc_info(
            *self._call(
                "credentials/info",
                {"credentialID": credential, "certificates": "single", "authInfo": True},
            )
        )
        auth = parse_csc_authorize(
            *self._call(
                "credentials/authorize",
                {
                    "credentialID": credential,
                    "numSignatures": 1,
                    "hashes": [base64.b64encode(digest).decode()],
                    "hashAlgorithmOID": OID_SHA256,
                    "description": document_name,
                },
            )
        )
        if auth.state in ("rejected", "expired"):
            raise ProviderRefused("request", f"CSC credentials/authorize: {auth.state}")
        data = {"credential": credential, "algo": algo}
        if auth.sad is not None:
            data["sad"] = auth.sad
        ref = auth.handle or f"sad-{uuid.uuid4().hex}"
        return ProviderTicket(ref=ref, digest=digest, certificate=certificate, data=data)

    def poll(self, ticket: ProviderTicket) -> ProviderResult:
        sad = ticket.data.get("sad")
        if sad is None:
            auth = parse_csc_authorize(
                *self._call("credentials/authorizeCheck", {"handle": ticket.ref})
            )
            if auth.state == "pending":
                return ProviderResult(state="pending")
            if auth.state in ("rejected", "expired") or auth.sad is None:
                state: ProviderState = "rejected" if auth.state == "rejected" else "expired"
                return ProviderResult(state=state, reason=auth.reason)
            sad = auth.sad
            ticket = replace(ticket, data={**ticket.data, "sad": sad})
        algo = ticket.data["algo"]
        body: dict[str, Any] = {
            "credentialID": ticket.data["credential"],
            "SAD": sad,
            "hashes": [base64.b64encode(ticket.digest).decode()],
            "signAlgo": algo,
        }
        if algo == OID_RSA:
            body["hashAlgorithmOID"] = OID_SHA256
        value = parse_csc_sign_hash(*self._call("signatures/signHash", body))
        return ProviderResult(
            state="signed", value=value, certificate=ticket.certificate, ticket=ticket
        )

    def close(self) -> None:
        self._http.close()


def _path_segment(ref: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._~-]{1,128}", ref):
        raise ProviderProtocolError(f"provider transaction id {ref[:40]!r} is not URL-safe")
    return ref


def signing_service(settings: SigningSettings) -> SigningService:
    """Central's signing service for ``[signing]``; register its ``rpc_handlers()``."""
    return SigningService(build_provider(settings), settings)


def build_provider(settings: SigningSettings) -> SigningProvider | None:
    """The adapter ``settings.provider`` names, or None when signing is off."""
    if settings.provider == "smartca":
        return SmartCaProvider(settings)
    if settings.provider == "csc":
        return CscProvider(settings)
    return None


# -- the service the kiosks talk to -------------------------------------------------------


class BadParams(SigningError):
    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(f"{field_name}: {detail}")
        self.field = field_name
        self.detail = detail


@dataclass
class _Entry:
    tx: str
    kiosk: str
    digest: bytes
    created: float
    expires_at: float
    ticket: ProviderTicket | None = None  # None while the provider is being asked
    result: dict[str, Any] | None = None  # final answer, kept for repeated polls
    finished_at: float | None = None
    busy: bool = False  # a poll is at the provider now


def _error(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail, **extra}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class SigningService:
    """Central's side of ``sign.start`` / ``sign.poll`` for every kiosk."""

    def __init__(
        self,
        provider: SigningProvider | None,
        settings: SigningSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._provider = provider
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def rpc_handlers(self) -> dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]]:
        """RPC methods for the MQTT RPC transport: ``fn(kiosk_id, params) -> reply``."""
        return {"sign.start": self.start, "sign.poll": self.poll}

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()

    # -- sign.start --------------------------------------------------------------------

    def start(self, kiosk_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """{hash_sha256, document_name, signer: {id_number, phone?}} -> {transaction, ...}."""
        if self._provider is None:
            return _error("disabled", "remote signing is not configured at central ([signing])")
        try:
            digest, document_name, signer = _start_params(params)
        except BadParams as exc:
            return _error("invalid-params", exc.detail, field=exc.field)
        now = self._clock()
        with self._lock:
            self._purge(now)
            mine = [
                e for e in self._entries.values() if e.kiosk == kiosk_id and e.finished_at is None
            ]
            if len(mine) >= self._settings.max_outstanding_per_kiosk:
                return _error(
                    "too-many",
                    f"kiosk has {len(mine)} signing transactions open, the limit is "
                    f"{self._settings.max_outstanding_per_kiosk}; wait for them or let them expire",
                )
            if len(self._entries) >= self._settings.max_transactions:
                return _error("busy", "central holds too many signing transactions; retry later")
            tx = secrets.token_urlsafe(18)
            entry = _Entry(
                tx=tx,
                kiosk=kiosk_id,
                digest=digest,
                created=now,
                expires_at=now + self._settings.transaction_ttl_s,
            )
            self._entries[tx] = entry
        try:
            ticket = self._provider.start(digest, document_name, signer)
        except SigningError as exc:
            with self._lock:
                self._entries.pop(tx, None)
            log.warning("sign.start for kiosk %s failed: %s", kiosk_id, exc)
            return _provider_error(exc)
        except BaseException:  # an adapter bug: free the slot, let the transport report it
            with self._lock:
                self._entries.pop(tx, None)
            raise
        with self._lock:
            entry.ticket = ticket
            if ticket.expires_at is not None:
                entry.expires_at = min(entry.expires_at, ticket.expires_at)
        log.info("sign.start kiosk %s transaction %s via %s", kiosk_id, tx, self._provider.name)
        return {
            "transaction": tx,
            "expires_at": _iso(entry.expires_at),
            "expires_in_s": max(0, round(entry.expires_at - self._clock())),
        }

    # -- sign.poll ------------------------------------------------------------------------

    def poll(self, kiosk_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """{transaction} -> {state, value_b64?, certificate_b64?, reason?}."""
        if self._provider is None:
            return _error("disabled", "remote signing is not configured at central ([signing])")
        tx = params.get("transaction") if isinstance(params, dict) else None
        if not isinstance(tx, str) or not _TX_RE.match(tx):
            return _error(
                "invalid-params",
                "expected the transaction id sign.start returned",
                field="transaction",
            )
        now = self._clock()
        with self._lock:
            self._purge(now)
            entry = self._entries.get(tx)
            if entry is None or entry.kiosk != kiosk_id:
                return _error("not-found", "no such signing transaction for this kiosk")
            if entry.result is not None:
                return dict(entry.result)
            if entry.busy or entry.ticket is None:
                return {"state": "pending", "expires_at": _iso(entry.expires_at)}
            if now >= entry.expires_at:
                return self._finish(entry, {"state": "expired"}, now)
            entry.busy = True
            ticket = entry.ticket
        try:
            outcome = self._provider.poll(ticket)
        except SigningError as exc:
            with self._lock:
                entry.busy = False
                if isinstance(exc, ProviderUnavailable):
                    return _provider_error(exc)
                # Nonsense or a refusal mid-transaction: this one cannot finish.
                return self._finish(entry, _provider_error(exc), self._clock())
        except BaseException:  # an adapter bug: the next poll may try again
            with self._lock:
                entry.busy = False
            raise
        now = self._clock()
        with self._lock:
            entry.busy = False
            if outcome.ticket is not None:
                entry.ticket = outcome.ticket
            if outcome.state == "pending":
                if now >= entry.expires_at:
                    return self._finish(entry, {"state": "expired"}, now)
                return {"state": "pending", "expires_at": _iso(entry.expires_at)}
            if outcome.state == "signed":
                try:
                    verify_hash_signature(entry.digest, outcome.value, outcome.certificate)
                except SignatureRefused as exc:
                    log.error("provider signature for transaction %s refused: %s", tx, exc)
                    return self._finish(
                        entry,
                        _error("provider-error", f"the provider's signature is not valid: {exc}"),
                        now,
                    )
                reply = {
                    "state": "signed",
                    "value_b64": base64.b64encode(outcome.value).decode(),
                    "certificate_b64": base64.b64encode(outcome.certificate).decode(),
                    "provider": self._provider.name,
                }
                return self._finish(entry, reply, now)
            final: dict[str, Any] = {"state": outcome.state}
            if outcome.reason:
                final["reason"] = outcome.reason[:200]
            return self._finish(entry, final, now)

    # -- bookkeeping (lock held) ------------------------------------------------------------

    def _finish(self, entry: _Entry, reply: dict[str, Any], now: float) -> dict[str, Any]:
        entry.result = reply
        entry.finished_at = now
        log.info(
            "sign transaction %s of kiosk %s finished: %s",
            entry.tx,
            entry.kiosk,
            reply.get("state") or reply.get("error"),
        )
        return dict(reply)  # a copy: the transport may add to what it sends

    def _purge(self, now: float) -> None:
        keep = self._settings.keep_finished_s
        for tx, entry in list(self._entries.items()):
            open_due = entry.finished_at is None and now >= entry.expires_at
            if open_due and not entry.busy and entry.ticket is not None:
                self._finish(entry, {"state": "expired"}, now)
            if entry.finished_at is not None and now - entry.finished_at >= keep:
                del self._entries[tx]

    def outstanding(self, kiosk_id: str | None = None) -> int:
        """Transactions not finished yet (of one kiosk, or of all)."""
        with self._lock:
            return sum(
                1
                for e in self._entries.values()
                if e.finished_at is None and (kiosk_id is None or e.kiosk == kiosk_id)
            )


def _provider_error(exc: SigningError) -> dict[str, Any]:
    if isinstance(exc, ProviderUnavailable):
        return _error("provider-unavailable", str(exc)[:300])
    if isinstance(exc, ProviderRefused):
        code = "no-account" if exc.code == "no-account" else "provider-error"
        return _error(code, str(exc)[:300])
    return _error("provider-error", str(exc)[:300])


def _start_params(params: Any) -> tuple[bytes, str, Signer]:
    if not isinstance(params, dict):
        raise BadParams("params", "expected an object")
    digest = params.get("hash_sha256")
    if not isinstance(digest, str) or not _HASH_RE.match(digest):
        raise BadParams("hash_sha256", "expected 64 lower-case hex digits (the SHA-256 hash)")
    name = params.get("document_name")
    if not isinstance(name, str) or not 1 <= len(name) <= DOCUMENT_NAME_CHARS:
        raise BadParams("document_name", f"expected text of 1-{DOCUMENT_NAME_CHARS} characters")
    problem = text_problem(name)
    if problem is not None:
        raise BadParams("document_name", problem[1])
    signer = params.get("signer")
    if not isinstance(signer, dict):
        raise BadParams("signer", "expected an object with id_number")
    id_number = signer.get("id_number")
    if not isinstance(id_number, str) or not ID_NUMBER_RE.match(id_number):
        raise BadParams("signer.id_number", "expected 12 digits (CCCD) or 9 digits (old CMND)")
    phone = signer.get("phone")
    if phone is not None and (not isinstance(phone, str) or not PHONE_RE.match(phone)):
        raise BadParams("signer.phone", "expected a phone number: digits, optional +")
    return bytes.fromhex(digest), name, Signer(id_number=id_number, phone=phone)
