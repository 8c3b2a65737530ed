"""Signed envelopes: a canonical encoding and Ed25519 signatures over it (sans-I/O).

Theory of operation
-------------------
A kiosk signs every record it sends, and central signs everything it sends down (acks,
statuses, answers, commands), each with an Ed25519 key of its own (issue 9). Both sides
sign and verify the *same bytes*, so the encoding must not depend on who made the JSON:

- :func:`canonical_bytes` is a JSON text with object keys sorted by code point, no
  insignificant whitespace, UTF-8 (not ``\\u`` escapes, so a Vietnamese name is its own
  bytes), integers only (a float has no single spelling across languages, and the
  protocol has none), and the signature member ``sig`` left out.
- What is signed is a *domain* (``aps-record-v1``, ``aps-downlink-v1``, ...) and a newline
  before those bytes: a signature made for a record can never pass as an ack.
- :func:`sign` returns the envelope with ``sig = {"alg": "ed25519", "kid": <key id>,
  "value": <base64url, no padding>}``. ``kid`` names the signer's key, so keys rotate:
  the verifier holds every key of a sender still accepted (the old one until its
  retirement, the new one from its enrolment) and :func:`verify` picks by ``kid``.
- :func:`verify` raises :class:`EnvelopeSignatureError` with a ``reason`` (``unsigned``,
  ``bad-sig``, ``unknown-key``, ``mismatch``, ``not-canonical``) for the dead-letter
  table, never returns a bool that a caller could forget to check.

Nothing here does I/O or holds state: keys come in as ``cryptography`` objects.
:func:`key_id` derives a key's id from its public bytes (the first 16 bytes of SHA-256,
base64url), so a key id can be checked against the key, not just trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sync import SyncError

__all__ = [
    "DOMAINS",
    "EnvelopeSignatureError",
    "canonical_bytes",
    "key_id",
    "sign",
    "signed_bytes",
    "verify",
]

Domain = Literal["aps-record-v1", "aps-downlink-v1", "aps-ack-v1", "aps-enrol-v1", "aps-release-v1"]
#: ``aps-enrol-v1``: a kiosk's certificate renewal request (central/fleet/enrolment.py);
#: ``aps-release-v1``: a software release's manifest (sync/release_manifest.py).
DOMAINS: tuple[Domain, ...] = (
    "aps-record-v1",
    "aps-downlink-v1",
    "aps-ack-v1",
    "aps-enrol-v1",
    "aps-release-v1",
)
SIG = "sig"
_B64URL_64 = re.compile(r"[A-Za-z0-9_-]{85}[AQgw]")
#: Deepest nesting accepted (the envelope schemas nest far less).
MAX_DEPTH = 16

Reason = Literal["unsigned", "bad-sig", "unknown-key", "mismatch", "not-canonical"]


class EnvelopeSignatureError(SyncError):
    """An envelope's signature cannot be accepted; ``reason`` is for the dead-letter table."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: Reason = reason


_SCALARS = frozenset({str, int, bool, type(None)})


def _acceptable(root: Any) -> bool:
    """True if ``root`` is canonical JSON material: the fast walk of every envelope.

    The same rules as :func:`_check`, without a stack of calls or paths; when it says no,
    :func:`_check` walks again to name the place.
    """
    stack: list[tuple[Any, int]] = [(root, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if depth > MAX_DEPTH:
            return False
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is dict or (kind is not float and isinstance(value, Mapping)):
            for k, v in value.items():
                if type(k) is not str and not isinstance(k, str):
                    return False
                push((v, depth + 1))
        elif kind is list or kind is tuple:
            for item in value:
                push((item, depth + 1))
        elif isinstance(value, bool | str | int) and not isinstance(value, float):
            continue
        else:
            return False
    return True


def _check(value: Any, depth: int, path: str) -> None:
    if depth > MAX_DEPTH:
        raise EnvelopeSignatureError("not-canonical", f"{path}: nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise EnvelopeSignatureError(
            "not-canonical", f"{path}: a float ({value!r}); the protocol carries integers only"
        )
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, depth + 1, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise EnvelopeSignatureError("not-canonical", f"{path}: a key that is not text")
            _check(v, depth + 1, f"{path}.{k}")
        return
    raise EnvelopeSignatureError(
        "not-canonical", f"{path}: {type(value).__name__} is not JSON (text, integer, list, object)"
    )


def canonical_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The envelope without ``sig``, as canonical JSON bytes (see the module docstring)."""
    body = {k: v for k, v in envelope.items() if k != SIG}
    if not _acceptable(body):
        _check(body, 0, "envelope")  # raises, naming the place
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError as exc:  # a string with a lone surrogate cannot be UTF-8
        raise EnvelopeSignatureError("not-canonical", str(exc)) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EnvelopeSignatureError("not-canonical", f"text that is not UTF-8: {exc}") from None


def signed_bytes(
    domain: Domain, envelope: Mapping[str, Any], *, canonical: bytes | None = None
) -> bytes:
    """What the signature covers: the domain, a newline, the canonical bytes.

    ``canonical``: :func:`canonical_bytes` of this same envelope, when the caller already
    has them (central computes them once per record for the signature and the digest).
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r}: use one of {', '.join(DOMAINS)}")
    body = canonical_bytes(envelope) if canonical is None else canonical
    return domain.encode("ascii") + b"\n" + body


def key_id(public_key: Ed25519PublicKey) -> str:
    """A key's id: base64url of the first 16 bytes of SHA-256 of its raw public bytes."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:16]).rstrip(b"=").decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # 64 bytes as base64url without padding; the decoder itself would skip stray characters
    if not isinstance(text, str) or not _B64URL_64.fullmatch(text):
        raise EnvelopeSignatureError("bad-sig", "sig.value: expected 86 base64url characters")
    try:
        return base64.urlsafe_b64decode(text + "==")
    except (binascii.Error, ValueError):
        raise EnvelopeSignatureError("bad-sig", "sig.value: not base64url") from None


def sign(
    domain: Domain, envelope: Mapping[str, Any], private_key: Ed25519PrivateKey
) -> dict[str, Any]:
    """A copy of ``envelope`` with ``sig`` set (any old ``sig`` replaced)."""
    kid = key_id(private_key.public_key())
    value = private_key.sign(signed_bytes(domain, envelope))
    out = {k: v for k, v in envelope.items() if k != SIG}
    out[SIG] = {"alg": "ed25519", "kid": kid, "value": _b64(value)}
    return out


def verify(
    domain: Domain,
    envelope: Mapping[str, Any],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    canonical: bytes | None = None,
) -> str:
    """Check ``envelope``'s signature against the sender's accepted ``keys`` (by key id).

    Returns the key id that signed it; raises :class:`EnvelopeSignatureError` otherwise.
    ``canonical``: this envelope's :func:`canonical_bytes`, if the caller has them already.
    """
    sig = envelope.get(SIG)
    if sig is None:
        raise EnvelopeSignatureError("unsigned", "the envelope has no sig")
    if not isinstance(sig, Mapping) or set(sig) != {"alg", "kid", "value"}:
        raise EnvelopeSignatureError("bad-sig", "sig: expected exactly alg, kid and value")
    if sig["alg"] != "ed25519":
        raise EnvelopeSignatureError("bad-sig", f"sig.alg: {str(sig['alg'])[:20]!r}, not ed25519")
    kid = sig["kid"]
    if not isinstance(kid, str) or kid not in keys:
        shown = str(kid)[:40]
        raise EnvelopeSignatureError(
            "unknown-key", f"sig.kid {shown!r} is not a key of this sender"
        )
    if key_id(keys[kid]) != kid:  # a registry that filed a key under another key's id
        raise EnvelopeSignatureError("unknown-key", f"sig.kid {kid!r} does not name the key held")
    value = _unb64(sig["value"])
    try:
        keys[kid].verify(value, signed_bytes(domain, envelope, canonical=canonical))
    except InvalidSignature:
        raise EnvelopeSignatureError(
            "mismatch", f"the signature by {kid} does not match the envelope ({domain})"
        ) from None
    return kid
