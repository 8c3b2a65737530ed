"""A remote-signing provider on 127.0.0.1 speaking both shapes central supports.

What stands at the far end of ``central/signing.py`` in tests and the demo: a
small HTTP server (stdlib ``http.server``, one thread per request) that keeps
signing transactions in memory and signs with real keys, so a signature it
returns verifies against the certificate it returns.

Shapes (paths relative to :attr:`MockSigningProvider.base_url`):

VNPT SmartCA-like (service-provider credentials ``sp_id``/``sp_password`` in
every JSON body; replies ``{"status_code", "message", "data"}``):

- ``POST /v1/credentials/get_certificate`` {sp_id, sp_password, user_id}
  -> data.user_certificates[{serial_number, cert_status_code, cert_data}]
- ``POST /v1/signatures/sign`` {..., user_id, transaction_id, serial_number,
  sign_files: [{data_to_be_signed: hex hash, doc_id, sign_type: "hash"}]}
  -> data.transaction_id (the provider's id; the citizen now approves in the app)
- ``POST /v1/signatures/sign/{id}/status`` {sp_id, sp_password} -> message
  ``WAITING_FOR_SIGNER_CONFIRM`` | ``SIGNER_REJECTED`` | ``TRANSACTION_EXPIRED``
  | ``SUCCESS`` with data.signatures[{doc_id, signature_value}].

Cloud Signature Consortium API v2-like (what Viettel MySign follows):

- ``POST /csc/v2/auth/login`` (HTTP Basic client id/secret) -> {access_token, expires_in}
- ``POST /csc/v2/credentials/list`` {userID} -> {credentialIDs}
- ``POST /csc/v2/credentials/info`` {credentialID} -> {key: {status, algo, len},
  cert: {status, certificates: [base64 DER]}, auth: {mode: "implicit"}, SCAL, multisign}
- ``POST /csc/v2/credentials/authorize`` {credentialID, numSignatures, hashes,
  hashAlgorithmOID} -> 202 {handle} (the citizen approves in the app)
- ``POST /csc/v2/credentials/authorizeCheck`` {handle} -> 202 {handle} while
  pending, 200 {SAD, expiresIn} once approved, 400 {error: "access_denied"} if
  refused, 400 {error: "expired_token"} once expired (the codes of OAuth's
  device flow, RFC 8628, which polls for an out-of-band approval the same way)
- ``POST /csc/v2/signatures/signHash`` {credentialID, SAD, hashes,
  hashAlgorithmOID, signAlgo} -> {signatures: [base64]}; a SAD signs only the
  hash it was authorized for, once.

Control API for tests (Python, same process): :meth:`pending`, :meth:`approve`,
:meth:`reject`, :meth:`expire` (each takes the provider's transaction id or
handle, or none for the only pending one), :attr:`auto_decision` (decide every
new transaction at once), :attr:`delay_s` (answer every request this late:
a slow provider), :attr:`misbehave` (``not-json``, ``wrong-shape``,
``http-500``, ``bad-signature``), :attr:`known_users` (None: every id number
has an account; else only these), :attr:`requests` (what was asked, in order).
Keys: RSA 2048 (SmartCA's) or EC P-256, one per citizen, made on first use,
with a self-signed certificate naming the id number.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_SHA256_RSA = "1.2.840.113549.1.1.11"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"

KeyType = Literal["rsa", "ec"]
Decision = Literal["approve", "reject"]
Misbehaviour = Literal["not-json", "wrong-shape", "http-500", "bad-signature"]
TxState = Literal["pending", "approved", "rejected", "expired", "used"]


@dataclass
class _Citizen:
    id_number: str
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate_der: bytes
    serial: str


@dataclass
class _Tx:
    ref: str
    shape: Literal["smartca", "csc"]
    citizen: _Citizen
    digest: bytes
    expires_at: float
    state: TxState = "pending"
    sad: str | None = None
    doc_id: str = ""
    client_transaction_id: str = ""
    polls: int = 0


@dataclass
class _Request:
    method: str
    path: str
    body: dict[str, Any] | None
    authorization: str | None


@dataclass
class MockSigningProvider:
    """Both provider shapes on one loopback port; use as a context manager."""

    client_id: str = "aps-central"
    client_secret: str = "mock-secret"
    key_type: KeyType = "rsa"
    ttl_s: float = 300.0
    auto_decision: Decision | None = None
    delay_s: float = 0.0
    misbehave: Misbehaviour | None = None
    known_users: set[str] | None = None
    requests: list[_Request] = field(default_factory=list)
    _txs: dict[str, _Tx] = field(default_factory=dict)
    _citizens: dict[str, _Citizen] = field(default_factory=dict)
    _tokens: set[str] = field(default_factory=set)
    _connections: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self, port: int = 0) -> MockSigningProvider:
        provider = self

        class Handler(_Handler):
            mock = provider

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mock-signing-provider",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: the port is closed (a provider that is down)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:  # kept-alive connections too: a provider that is down answers nothing
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._connections.clear()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> MockSigningProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the mock provider is not running; call start()")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control API ---------------------------------------------------------------

    def pending(self) -> list[str]:
        """Provider-side ids (SmartCA transaction id, CSC handle) awaiting the citizen."""
        with self._lock:
            self._expire_due()
            return [t.ref for t in self._txs.values() if t.state == "pending"]

    def approve(self, ref: str | None = None) -> None:
        """The citizen approves in the app."""
        self._decide(ref, "approved")

    def reject(self, ref: str | None = None) -> None:
        """The citizen refuses in the app."""
        self._decide(ref, "rejected")

    def expire(self, ref: str | None = None) -> None:
        """The citizen never answers and the provider's window closes."""
        self._decide(ref, "expired")

    def certificate_of(self, id_number: str) -> bytes:
        """The DER certificate of the citizen's signing key (made if new)."""
        with self._lock:
            return self._citizen(id_number).certificate_der

    def _decide(self, ref: str | None, state: TxState) -> None:
        with self._lock:
            self._expire_due()
            if ref is None:
                waiting = [t for t in self._txs.values() if t.state == "pending"]
                if len(waiting) != 1:
                    raise LookupError(f"{len(waiting)} transactions are pending; name one")
                tx = waiting[0]
            else:
                tx = self._txs[ref]
            if tx.state != "pending":
                raise LookupError(f"transaction {tx.ref} is {tx.state}, not pending")
            tx.state = state

    # -- state (call with the lock held) --------------------------------------------

    def _expire_due(self) -> None:
        now = time.time()
        for tx in self._txs.values():
            if tx.state == "pending" and now >= tx.expires_at:
                tx.state = "expired"

    def _citizen(self, id_number: str) -> _Citizen:
        found = self._citizens.get(id_number)
        if found is None:
            found = _make_citizen(id_number, self.key_type)
            self._citizens[id_number] = found
        return found

    def _has_account(self, id_number: str) -> bool:
        return self.known_users is None or id_number in self.known_users

    def _new_tx(self, shape: Literal["smartca", "csc"], citizen: _Citizen, digest: bytes) -> _Tx:
        tx = _Tx(
            ref=secrets.token_hex(12),
            shape=shape,
            citizen=citizen,
            digest=digest,
            expires_at=time.time() + self.ttl_s,
        )
        if self.auto_decision == "approve":
            tx.state = "approved"
        elif self.auto_decision == "reject":
            tx.state = "rejected"
        self._txs[tx.ref] = tx
        return tx

    def _signature(self, tx: _Tx) -> bytes:
        digest = tx.digest
        if self.misbehave == "bad-signature":
            digest = hashlib.sha256(b"not the document" + digest).digest()
        key = tx.citizen.key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))

    # -- SmartCA shape ------------------------------------------------------------------

    def smartca(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("sp_id") != self.client_id or body.get("sp_password") != self.client_secret:
            return 401, _sca(401, "INVALID_SP_CREDENTIALS")
        with self._lock:
            self._expire_due()
            if path == "/v1/credentials/get_certificate":
                user = body.get("user_id")
                if not isinstance(user, str) or not self._has_account(user):
                    return 400, _sca(400, "USER_NOT_FOUND")
                citizen = self._citizen(user)
                cert = {
                    "serial_number": citizen.serial,
                    "cert_status_code": "VALID",
                    "cert_status": "Đang hoạt động",
                    "cert_data": base64.b64encode(citizen.certificate_der).decode(),
                }
                return 200, _sca(200, "success", {"user_certificates": [cert]})
            if path == "/v1/signatures/sign":
                return self._smartca_sign(body)
            prefix, suffix = "/v1/signatures/sign/", "/status"
            if path.startswith(prefix) and path.endswith(suffix):
                return self._smartca_status(path[len(prefix) : -len(suffix)])
        return 404, _sca(404, "NOT_FOUND")

    def _smartca_sign(self, body: dict[str, Any]) -> tuple[int, Any]:
        user = body.get("user_id")
        files = body.get("sign_files")
        if not isinstance(user, str) or not self._has_account(user):
            return 400, _sca(400, "USER_NOT_FOUND")
        citizen = self._citizen(user)
        if body.get("serial_number") != citizen.serial:
            return 400, _sca(400, "CERTIFICATE_NOT_FOUND")
        if not isinstance(files, list) or len(files) != 1 or not isinstance(files[0], dict):
            return 400, _sca(400, "INVALID_SIGN_FILES")
        one = files[0]
        try:
            digest = bytes.fromhex(str(one.get("data_to_be_signed")))
        except ValueError:
            return 400, _sca(400, "INVALID_DATA_TO_BE_SIGNED")
        if len(digest) != 32 or one.get("sign_type") != "hash":
            return 400, _sca(400, "INVALID_DATA_TO_BE_SIGNED")
        tx = self._new_tx("smartca", citizen, digest)
        tx.doc_id = str(one.get("doc_id", ""))
        tx.client_transaction_id = str(body.get("transaction_id", ""))
        return 200, _sca(200, "success", {"transaction_id": tx.ref, "tran_code": tx.ref[:8]})

    def _smartca_status(self, ref: str) -> tuple[int, Any]:
        tx = self._txs.get(ref)
        if tx is None or tx.shape != "smartca":
            return 404, _sca(404, "TRANSACTION_NOT_FOUND")
        tx.polls += 1
        data: dict[str, Any] = {"transaction_id": tx.ref, "signatures": None}
        if tx.state == "pending":
            return 200, _sca(200, "WAITING_FOR_SIGNER_CONFIRM", data)
        if tx.state == "rejected":
            return 200, _sca(200, "SIGNER_REJECTED", data)
        if tx.state == "expired":
            return 200, _sca(200, "TRANSACTION_EXPIRED", data)
        value = base64.b64encode(self._signature(tx)).decode()
        data["signatures"] = [{"doc_id": tx.doc_id, "signature_value": value}]
        return 200, _sca(200, "SUCCESS", data)

    # -- CSC shape -------------------------------------------------------------------------

    def csc(self, path: str, body: dict[str, Any], authorization: str | None) -> tuple[int, Any]:
        method = path.removeprefix("/csc/v2/")
        if method == "info":
            return 200, {
                "specs": "2.0.0.2",
                "name": "APS mock RSSP",
                "authType": ["basic"],
                "methods": [
                    "auth/login",
                    "credentials/list",
                    "credentials/info",
                    "credentials/authorize",
                    "credentials/authorizeCheck",
                    "signatures/signHash",
                ],
            }
        if method == "auth/login":
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            if authorization != f"Basic {expected}":
                return 401, _csc_error("invalid_client", "Invalid client credentials")
            token = secrets.token_urlsafe(24)
            with self._lock:
                self._tokens.add(token)
            return 200, {"access_token": token, "expires_in": 3600}
        token = (authorization or "").removeprefix("Bearer ")
        with self._lock:
            if token not in self._tokens:
                return 401, _csc_error("invalid_token", "Missing or invalid access token")
            self._expire_due()
            handler = {
                "credentials/list": self._csc_list,
                "credentials/info": self._csc_info,
                "credentials/authorize": self._csc_authorize,
                "credentials/authorizeCheck": self._csc_authorize_check,
                "signatures/signHash": self._csc_sign_hash,
            }.get(method)
            if handler is None:
                return 404, _csc_error("invalid_request", f"Unknown method {method}")
            return handler(body)

    def _csc_credential(self, body: dict[str, Any]) -> _Citizen | None:
        cred = body.get("credentialID")
        if not isinstance(cred, str) or not cred.startswith("cred-"):
            return None
        user = cred.removeprefix("cred-")
        return self._citizens.get(user) if self._has_account(user) else None

    def _csc_list(self, body: dict[str, Any]) -> tuple[int, Any]:
        user = body.get("userID")
        if not isinstance(user, str):
            return 400, _csc_error("invalid_request", "Missing string parameter userID")
        if not self._has_account(user):
            return 200, {"credentialIDs": []}
        self._citizen(user)
        return 200, {"credentialIDs": [f"cred-{user}"]}

    def _csc_info(self, body: dict[str, Any]) -> tuple[int, Any]:
        citizen = self._csc_credential(body)
        if citizen is None:
            return 400, _csc_error("invalid_request", "Invalid parameter credentialID")
        if isinstance(citizen.key, rsa.RSAPrivateKey):
            algo, length = [OID_RSA, OID_SHA256_RSA], citizen.key.key_size
        else:
            algo, length = [OID_ECDSA_SHA256], citizen.key.curve.key_size
        return 200, {
            "key": {"status": "enabled", "algo": algo, "len": length},
            "cert": {
                "status": "valid",
                "certificates": [base64.b64encode(citizen.certificate_der).decode()],
                "serialNumber": citizen.serial,
            },
            "auth": {"mode": "implicit"},
            "SCAL": "2",
            "multisign": 1,
        }

    def _csc_authorize(self, body: dict[str, Any]) -> tuple[int, Any]:
        citizen = self._csc_credential(body)
        if citizen is None:
            return 400, _csc_error("invalid_request", "Invalid parameter credentialID")
        if body.get("numSignatures") != 1:
            return 400, _csc_error("invalid_request", "Numbers of signatures is too high")
        if body.get("hashAlgorithmOID") != OID_SHA256:
            return 400, _csc_error("invalid_request", "Invalid parameter hashAlgorithmOID")
        digest = _one_hash(body.get("hashes"))
        if digest is None:
            return 400, _csc_error("invalid_request", "Invalid parameter hashes")
        tx = self._new_tx("csc", citizen, digest)
        return 202, {"handle": tx.ref}

    def _csc_authorize_check(self, body: dict[str, Any]) -> tuple[int, Any]:
        tx = self._txs.get(str(body.get("handle")))
        if tx is None or tx.shape != "csc":
            return 400, _csc_error("invalid_request", "Invalid parameter handle")
        tx.polls += 1
        if tx.state == "pending":
            return 202, {"handle": tx.ref}
        if tx.state == "rejected":
            return 400, _csc_error("access_denied", "The user refused the signature")
        if tx.state == "expired":
            return 400, _csc_error("expired_token", "The authorization request expired")
        if tx.state == "used":
            return 400, _csc_error("invalid_request", "Invalid parameter handle")
        if tx.sad is None:
            tx.sad = secrets.token_urlsafe(24)
        return 200, {"SAD": tx.sad, "expiresIn": 300}

    def _csc_sign_hash(self, body: dict[str, Any]) -> tuple[int, Any]:
        citizen = self._csc_credential(body)
        if citizen is None:
            return 400, _csc_error("invalid_request", "Invalid parameter credentialID")
        sad = body.get("SAD")
        tx = next(
            (t for t in self._txs.values() if t.sad is not None and t.sad == sad),
            None,
        )
        if tx is None or tx.citizen is not citizen or tx.state != "approved":
            return 400, _csc_error("invalid_request", "Invalid parameter SAD")
        if _one_hash(body.get("hashes")) != tx.digest:
            return 400, _csc_error("invalid_request", "Hash is not authorized by the SAD")
        algo = body.get("signAlgo")
        rsa_key = isinstance(citizen.key, rsa.RSAPrivateKey)
        allowed = (OID_RSA, OID_SHA256_RSA) if rsa_key else (OID_ECDSA_SHA256,)
        if algo not in allowed:
            return 400, _csc_error("invalid_request", "Invalid parameter signAlgo")
        tx.state = "used"
        return 200, {"signatures": [base64.b64encode(self._signature(tx)).decode()]}


def _one_hash(value: Any) -> bytes | None:
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], str):
        return None
    try:
        digest = base64.b64decode(value[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == 32 else None


def _sca(code: int, message: str, data: Any = None) -> dict[str, Any]:
    return {"status_code": code, "message": message, "data": data}


def _csc_error(error: str, description: str) -> dict[str, Any]:
    return {"error": error, "error_description": description}


_KEYS: dict[tuple[KeyType, str], rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey] = {}
_KEYS_LOCK = threading.Lock()


def _key_for(id_number: str, key_type: KeyType) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """One key per citizen and type for the whole process (RSA 2048 takes a while to make)."""
    with _KEYS_LOCK:
        key = _KEYS.get((key_type, id_number))
        if key is None:
            if key_type == "rsa":
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            else:
                key = ec.generate_private_key(ec.SECP256R1())
            _KEYS[(key_type, id_number)] = key
        return key


def _make_citizen(id_number: str, key_type: KeyType) -> _Citizen:
    key = _key_for(id_number, key_type)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Công dân {id_number}"),
            x509.NameAttribute(NameOID.USER_ID, f"CCCD:{id_number}"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return _Citizen(
        id_number=id_number,
        key=key,
        certificate_der=cert.public_bytes(serialization.Encoding.DER),
        serial=format(serial, "x"),
    )


class _Handler(BaseHTTPRequestHandler):
    mock: MockSigningProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        return

    def setup(self) -> None:
        super().setup()
        with self.mock._lock:
            self.mock._connections.add(self.connection)

    def finish(self) -> None:
        with self.mock._lock:
            self.mock._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_POST(self) -> None:
        mock = self.mock
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 1 << 20))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        authorization = self.headers.get("Authorization")
        path = self.path.split("?", 1)[0]
        with mock._lock:
            mock.requests.append(
                _Request("POST", path, body if isinstance(body, dict) else None, authorization)
            )
        if mock.delay_s > 0 and mock._stopping.wait(mock.delay_s):
            return  # stopping: drop the request unanswered
        if not isinstance(body, dict):
            self._reply(400, {"error": "invalid_request", "error_description": "not JSON"})
            return
        if path.startswith("/csc/v2/"):
            status, reply = mock.csc(path, body, authorization)
        else:
            status, reply = mock.smartca(path, body)
        self._reply(status, reply)

    def _reply(self, status: int, reply: Any) -> None:
        mode = self.mock.misbehave
        if mode == "http-500":
            status, data, ctype = 500, b"<html>Internal Server Error</html>", "text/html"
        elif mode == "not-json":
            data, ctype = b"<html>maintenance</html>", "text/html"
        elif mode == "wrong-shape":
            data, ctype = json.dumps(["unexpected", 42]).encode(), "application/json"
        else:
            data, ctype = json.dumps(reply, ensure_ascii=False).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> int:
    """Run the mock on a loopback port until interrupted (trying central by hand)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--key", choices=["rsa", "ec"], default="rsa")
    parser.add_argument("--client-id", default="aps-central")
    parser.add_argument("--client-secret", default="mock-secret")
    parser.add_argument(
        "--auto", choices=["approve", "reject"], default=None, help="decide every request at once"
    )
    args = parser.parse_args(argv)
    mock = MockSigningProvider(
        client_id=args.client_id,
        client_secret=args.client_secret,
        key_type=args.key,
        auto_decision=args.auto,
    )
    mock.start(port=args.port)
    print(json.dumps({"base_url": mock.base_url, "client_id": mock.client_id}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        mock.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
