"""The kiosk's remote-signing port: sign a dossier hash with the citizen's SmartCA/MySign.

Theory of operation
-------------------
The kiosk never holds a provider secret. It asks central over RPC
(``call(method, params, timeout_s) -> dict``, the sync client's request/reply
over MQTT) and central asks the provider (``central/signing.py``):

1. :meth:`RemoteSigner.start` sends ``sign.start`` {hash_sha256, document_name,
   signer: {id_number, phone?}} and gets a :class:`Transaction` (central's id,
   never the provider's). The citizen now gets a notification in the
   provider's app.
2. The screen calls :meth:`RemoteSigner.poll` every few seconds (``sign.poll``):
   :class:`Pending` (keep waiting), :class:`Signed` (value and certificate),
   :class:`Rejected` (the citizen said no in the app) or :class:`Expired` (no
   answer in time). Each carries the Vietnamese text to show.
3. A :class:`Signed` result is checked here, on the kiosk, before anything
   uses it: the value must verify over *this* transaction's hash with the
   certificate's key (``sync.signature_check``). A value that does not is
   refused with :class:`RemoteSigningError` ``bad-signature``: a dossier never
   carries a signature over something else.

Everything that is not one of those four answers is a
:class:`RemoteSigningError` whose ``code`` says what happened (``unavailable``:
central or the provider did not answer, try again; ``no-account``: the id
number has no remote-signing account; ``not-found``, ``too-many``,
``disabled``, ``bad-signature``, ``protocol``) and whose ``citizen_message`` is
the Vietnamese sentence for the screen. The kiosk also gives up by itself
(:class:`Expired`) once the transaction's lifetime, measured on its own
monotonic clock from the moment central answered, is over by a margin, so a
citizen is never left waiting on a central that went silent.

Putting the result into the dossier's ``signature`` is the filing flow's job
(:meth:`Signed.signature_fields` gives the fields the schema names).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.schemas import parse_datetime
from sync.signature_check import SignatureRefused, verify_hash_signature

log = logging.getLogger("edge_agent.remote_signing")

Call = Callable[[str, dict[str, Any], float], dict[str, Any]]

RPC_TIMEOUT_S = 20.0  # sign.poll: one provider request at central (15 s by default)
START_TIMEOUT_S = 45.0  # sign.start: two (SmartCA) to four (CSC) provider requests
EXPIRY_MARGIN_S = 30.0
_TX_RE = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")
_MAX_B64 = 16 * 1024

MSG_PENDING = "Vui lòng mở ứng dụng ký số trên điện thoại và xác nhận giao dịch ký hồ sơ này."
MSG_EXPIRED = (
    "Chưa nhận được xác nhận ký số trên ứng dụng trong thời gian cho phép. "
    "Vui lòng thực hiện ký lại hoặc ký tay trên màn hình."
)
MSG_REJECTED = (
    "Giao dịch ký số đã bị từ chối trên ứng dụng. Bạn có thể ký lại hoặc ký tay trên màn hình."
)
MESSAGES: dict[str, str] = {
    "unavailable": "Dịch vụ ký số tạm thời không phản hồi. "
    "Vui lòng thử lại sau ít phút hoặc ký tay trên màn hình.",
    "no-account": "Số định danh này chưa đăng ký dịch vụ ký số từ xa. "
    "Vui lòng đăng ký với nhà cung cấp hoặc ký tay trên màn hình.",
    "too-many": "Máy đang có giao dịch ký số chưa hoàn tất. Vui lòng chờ giây lát rồi thử lại.",
    "disabled": "Ký số từ xa chưa được bật tại điểm này. Vui lòng ký tay trên màn hình.",
    "not-found": "Không tìm thấy giao dịch ký số. Vui lòng thực hiện ký lại.",
    "bad-signature": "Chữ ký số nhận được không hợp lệ nên không được dùng. "
    "Vui lòng thực hiện ký lại hoặc ký tay trên màn hình.",
    "protocol": "Dịch vụ ký số gặp lỗi. Vui lòng thực hiện ký lại hoặc ký tay trên màn hình.",
    "invalid": "Không gửi được yêu cầu ký số. Vui lòng báo cán bộ hỗ trợ tại điểm.",
}
# central's error codes (central/signing.py) -> ours
_CENTRAL_ERRORS = {
    "provider-unavailable": "unavailable",
    "busy": "unavailable",
    "no-account": "no-account",
    "too-many": "too-many",
    "disabled": "disabled",
    "not-found": "not-found",
    "provider-error": "protocol",
    "invalid-params": "invalid",
}


class RemoteSigningError(Exception):
    """Signing cannot go on; ``citizen_message`` says so in Vietnamese."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.citizen_message = MESSAGES.get(code, MESSAGES["protocol"])


@dataclass(frozen=True, kw_only=True)
class Transaction:
    id: str
    digest: bytes
    expires_at: datetime | None
    deadline: float  # time.monotonic() after which the kiosk gives up on its own


@dataclass(frozen=True, kw_only=True)
class Pending:
    message: str = MSG_PENDING


@dataclass(frozen=True, kw_only=True)
class Signed:
    value: bytes
    certificate: bytes
    transaction: str
    digest: bytes
    provider: str | None = None
    signed_at: datetime
    subject: str = ""  # the certificate's subject, for the screen and the log

    def signature_fields(self) -> dict[str, Any]:
        """The dossier ``signature`` body (sync/schemas.py SignatureSchema) for this result."""
        return {
            "method": "remote",
            "document_sha256": self.digest.hex(),
            "signed_at": self.signed_at.isoformat(timespec="seconds"),
            "provider": self.provider,
            "transaction": self.transaction,
            "value": base64.b64encode(self.value).decode(),
            "certificate": base64.b64encode(self.certificate).decode(),
        }


@dataclass(frozen=True, kw_only=True)
class Rejected:
    reason: str | None = None
    message: str = MSG_REJECTED


@dataclass(frozen=True, kw_only=True)
class Expired:
    message: str = MSG_EXPIRED


PollResult = Pending | Signed | Rejected | Expired


class RemoteSigner:
    """``start(hash) -> Transaction``; ``poll(tx) -> Pending | Signed | Rejected | Expired``."""

    def __init__(
        self,
        call: Call,
        *,
        timeout_s: float = RPC_TIMEOUT_S,
        start_timeout_s: float = START_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._call = call
        self._timeout_s = timeout_s
        self._start_timeout_s = start_timeout_s
        self._clock = clock

    def start(
        self,
        digest: bytes,
        *,
        document_name: str,
        id_number: str,
        phone: str | None = None,
    ) -> Transaction:
        """Ask for the citizen's signature over ``digest`` (the 32-byte SHA-256)."""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError(f"digest is {len(digest)} bytes; give the 32-byte SHA-256 hash")
        signer: dict[str, Any] = {"id_number": id_number}
        if phone:
            signer["phone"] = phone
        params = {"hash_sha256": digest.hex(), "document_name": document_name, "signer": signer}
        reply = self._rpc("sign.start", params, self._start_timeout_s)
        tx = reply.get("transaction")
        if not isinstance(tx, str) or not _TX_RE.match(tx):
            raise RemoteSigningError("protocol", "sign.start reply has no valid transaction")
        expires_at = None
        raw_expiry = reply.get("expires_at")
        if isinstance(raw_expiry, str):
            expires_at = parse_datetime(raw_expiry)
        lifetime = reply.get("expires_in_s")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = 300.0
        lifetime = min(float(lifetime), 3600.0)
        deadline = self._clock() + lifetime + EXPIRY_MARGIN_S
        return Transaction(id=tx, digest=digest, expires_at=expires_at, deadline=deadline)

    def poll(self, tx: Transaction) -> PollResult:
        """Where the citizen's approval stands; a Signed value has been verified here."""
        try:
            reply = self._rpc("sign.poll", {"transaction": tx.id}, self._timeout_s)
        except RemoteSigningError as exc:
            if exc.code == "unavailable" and self._clock() >= tx.deadline:
                return Expired()
            raise
        state = reply.get("state")
        if state == "pending":
            return Expired() if self._clock() >= tx.deadline else Pending()
        if state == "expired":
            return Expired()
        if state == "rejected":
            reason = reply.get("reason")
            return Rejected(reason=reason[:200] if isinstance(reason, str) else None)
        if state == "signed":
            return self._signed(tx, reply)
        raise RemoteSigningError("protocol", f"sign.poll reply has unknown state {state!r:.40}")

    def _signed(self, tx: Transaction, reply: dict[str, Any]) -> Signed:
        value = _b64(reply.get("value_b64"), "value_b64")
        certificate = _b64(reply.get("certificate_b64"), "certificate_b64")
        try:
            cert = verify_hash_signature(tx.digest, value, certificate)
        except SignatureRefused as exc:
            log.error("remote signature for transaction %s refused: %s", tx.id, exc)
            raise RemoteSigningError("bad-signature", str(exc)) from None
        provider = reply.get("provider")
        return Signed(
            value=value,
            certificate=certificate,
            transaction=tx.id,
            digest=tx.digest,
            provider=provider if isinstance(provider, str) and len(provider) <= 40 else None,
            signed_at=datetime.now(UTC).astimezone(),
            subject=cert.subject.rfc4514_string()[:200],
        )

    def _rpc(self, method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        try:
            reply = self._call(method, params, timeout_s)
        except Exception as exc:  # the transport's own errors: timeout, link down, ...
            log.warning("%s did not reach central: %s: %s", method, type(exc).__name__, exc)
            raise RemoteSigningError("unavailable", f"{method}: {type(exc).__name__}") from exc
        if not isinstance(reply, dict):
            raise RemoteSigningError("protocol", f"{method} reply is not an object")
        error = reply.get("error")
        if error is not None:
            code = _CENTRAL_ERRORS.get(str(error), "protocol")
            detail = str(reply.get("detail", ""))[:300]
            log.warning("%s refused by central: %s: %s", method, error, detail)
            raise RemoteSigningError(code, f"{error}: {detail}")
        return reply


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value or len(value) > _MAX_B64:
        raise RemoteSigningError("protocol", f"sign.poll reply: {name} missing or too long")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteSigningError("protocol", f"sign.poll reply: {name} is not base64") from None
