"""Payment callbacks from the bank or the payment portal.

Theory of operation
-------------------
The payer's bank (or the national public-service portal's payment gateway)
POSTs a JSON notice to ``/api/v1/payments/callback`` when a citizen has paid
a dossier's fee. The sender is authenticated by ``X-APS-Signature:
sha256=<hex>``, the HMAC-SHA256 of the exact body bytes under the secret
shared with it (``[api] payment_secret``); there is no API token.

Each notice carries the sender's ``reference`` (its transaction id). The
first notice with a reference is applied (the dossier's payment recorded,
through the ``record`` function given: :func:`central.dossiers.record_payment`
in production, itself idempotent per reference) and then kept with the
SHA-256 of its body. A replay of the same body is answered with the first
result and changes nothing; another body under a used reference is refused
(``conflict``).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from central import audit
from central.backoffice_db import transaction
from central.notify import verify_signature
from sync.schemas import DOSSIER_CODE_RE, FEE_VND_MAX, parse_datetime

REFERENCE_RE = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
PORTAL_CODE_RE = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
MAX_CALLBACK_BYTES = 16 * 1024
ACTOR = "payment-callback"


class PaymentError(ValueError):
    """``code``: signature, field, conflict, unknown-dossier; ``field``: what to fix."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.code = code
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True)
class PaymentNotice:
    reference: str
    dossier_code: str
    amount_vnd: int
    paid_at: str
    portal_code: str | None


# record(conn, actor, notice) -> a JSON-able result; runs its own transaction, is
# idempotent per reference; raises LookupError for an unknown dossier.
Recorder = Callable[[sqlite3.Connection, str, PaymentNotice], dict[str, Any]]


def parse_notice(raw: bytes) -> PaymentNotice:
    if len(raw) > MAX_CALLBACK_BYTES:
        raise PaymentError("field", "body", f"at most {MAX_CALLBACK_BYTES} bytes, got {len(raw)}")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise PaymentError("field", "body", "not a JSON object") from None
    if not isinstance(obj, dict):
        raise PaymentError("field", "body", "not a JSON object")

    def text(name: str, pattern: re.Pattern[str], hint: str, *, required: bool = True) -> Any:
        value = obj.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not pattern.match(value):
            raise PaymentError("field", name, hint)
        return value

    reference = text("reference", REFERENCE_RE, "1-64 characters of A-Z, a-z, 0-9, . _ : -")
    code = text("dossier_code", DOSSIER_CODE_RE, "expected a dossier code <agency>-YYMMDD-NNNN")
    amount = obj.get("amount_vnd")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= FEE_VND_MAX:
        raise PaymentError("field", "amount_vnd", f"expected an integer 1..{FEE_VND_MAX} (VND)")
    paid_at = obj.get("paid_at")
    if not isinstance(paid_at, str) or len(paid_at) > 40 or parse_datetime(paid_at) is None:
        raise PaymentError(
            "field", "paid_at", "expected ISO 8601 with an offset, 2026-12-01T09:30:00+07:00"
        )
    portal = text("portal_code", PORTAL_CODE_RE, "1-64 letters, digits, . _ -", required=False)
    return PaymentNotice(
        reference=reference,
        dossier_code=code,
        amount_vnd=amount,
        paid_at=paid_at,
        portal_code=portal,
    )


def receive_callback(
    conn: sqlite3.Connection,
    raw: bytes,
    signature: str | None,
    secret: bytes,
    record: Recorder,
    *,
    now: float | None = None,
) -> tuple[dict[str, Any], bool]:
    """Verify, parse and apply one callback; returns ``(result, duplicate)``."""
    if not secret:
        raise PaymentError("signature", "payment_secret", "not configured at central")
    if not verify_signature(secret, raw, signature):
        raise PaymentError(
            "signature", "X-APS-Signature", "missing or wrong (HMAC-SHA256 of the body)"
        )
    notice = parse_notice(raw)
    sha = hashlib.sha256(raw).hexdigest()
    row = conn.execute(
        "SELECT body_sha256, result FROM payment_callbacks WHERE reference = ?",
        (notice.reference,),
    ).fetchone()
    if row is not None:
        if row[0] != sha:
            raise PaymentError(
                "conflict",
                "reference",
                f"{notice.reference} was already used for another payment notice",
            )
        return json.loads(row[1]), True
    # The recorder runs its own transaction and is idempotent per reference
    # (central.dossiers.record_payment): a crash before the row below is
    # written makes the sender's retry a harmless replay there.
    try:
        result = record(conn, ACTOR, notice)
    except LookupError as exc:
        raise PaymentError("unknown-dossier", "dossier_code", str(exc)) from None
    with transaction(conn):
        conn.execute(
            "INSERT INTO payment_callbacks (reference, body_sha256, dossier_code,"
            " amount_vnd, paid_at, received_at, result) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                notice.reference,
                sha,
                notice.dossier_code,
                notice.amount_vnd,
                notice.paid_at,
                time.time() if now is None else now,
                json.dumps(result, ensure_ascii=False, default=str),
            ),
        )
        audit.record(
            conn,
            ACTOR,
            "payment.callback",
            notice.dossier_code,
            {"reference": notice.reference, "amount_vnd": notice.amount_vnd, "body_sha256": sha},
            now=now,
        )
    return result, False
