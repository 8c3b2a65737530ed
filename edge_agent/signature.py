"""The citizen's signature on a dossier: handwritten strokes, or a remote signing result.

Theory of operation
-------------------
What is signed is the dossier's *content* as the citizen saw it before filing,
not the record: :func:`document_sha256` is the SHA-256 of the canonical JSON
(keys sorted, no whitespace, UTF-8, NFC text as normalised by filing) of::

    {"doc": "aps-dossier-v1", "agency": ..., "procedure": ..., "procedure_version": ...,
     "applicant": {...}, "form": {...}, "fee": {...}}

The dossier code, times and attachments are not part of it: the code is given
inside the filing's transaction, after the citizen signed, and a remote
signature has to be asked for before that. Central (or anyone) recomputes the
hash from the dossier body's fields of the same names.

**Handwritten** (:class:`HandwrittenSignature`): the touch screen's strokes, a
list of strokes, each a list of ``(x, y, t_ms)`` points on a canvas of
``width`` x ``height`` pixels. They are bounded (:data:`MAX_STROKES`,
:data:`MAX_POINTS`, canvas size, time) and checked on construction; the
message names the limit. :meth:`HandwrittenSignature.strokes_json` is the
canonical stroke data and :meth:`HandwrittenSignature.render_png` draws them
with Pillow (black on white, round joins). Filing stores both as attachments
of the dossier and names them in ``signature.strokes_att`` / ``image_att``.

**Remote** (:class:`RemoteSignatureResult`): what the remote-signing port
(``edge_agent/services/remote_signing.py``) returns once the citizen approved
in their app: provider, transaction, the signature value and the certificate
(base64), and when. Filing copies it into ``signature`` with the same
``document_sha256`` it sent to be signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_agent import CitizenError
from sync.schemas import SIGNATURE_VALUE_CHARS, SLUG_RE, TRANSACTION_CHARS

#: Strokes of one signature, at most.
MAX_STROKES = 64
#: Points of all strokes together, at most (a long signature is some 1,500).
MAX_POINTS = 8000
#: Largest canvas side, pixels.
MAX_CANVAS = 2000
#: Latest point time, milliseconds after the first touch (10 minutes).
MAX_T_MS = 600_000
#: Line width of the rendered image, pixels.
LINE_WIDTH = 3

DOCUMENT_TAG = "aps-dossier-v1"

_RETRY_VI = "Chữ ký chưa hợp lệ. Xin mời Ông/Bà ký lại trong khung."


class SignatureError(CitizenError):
    """A signature that cannot be taken as given; the message names the field and limit."""

    def __init__(self, message: str, message_vi: str = _RETRY_VI) -> None:
        super().__init__(f"signature: {message}", message_vi)


def canonical_json(obj: Any) -> bytes:
    """Keys sorted, no whitespace, UTF-8 (not ASCII-escaped): one byte string per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def document_sha256(
    *,
    agency: str,
    procedure: str,
    procedure_version: str | None,
    applicant: dict[str, Any],
    form: dict[str, Any],
    fee: dict[str, Any] | None,
) -> str:
    """The hash the citizen signs (see the module docstring for exactly what it covers)."""
    doc = {
        "doc": DOCUMENT_TAG,
        "agency": agency,
        "procedure": procedure,
        "procedure_version": procedure_version,
        "applicant": {k: v for k, v in applicant.items() if v is not None},
        "form": form,
        "fee": fee,
    }
    return hashlib.sha256(canonical_json(doc)).hexdigest()


Point = tuple[int, int, int]


def _number(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignatureError(f"{where}: expected a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SignatureError(f"{where}: not a finite number")
    number = round(value)
    if not low <= number <= high:
        raise SignatureError(f"{where}: {number} is outside {low}..{high}")
    return int(number)


@dataclass(frozen=True, kw_only=True)
class HandwrittenSignature:
    """Strokes drawn on the touch screen; checked and rounded to whole pixels/ms on creation."""

    width: int
    height: int
    strokes: tuple[tuple[Point, ...], ...]

    @classmethod
    def from_strokes(
        cls, strokes: Sequence[Sequence[Sequence[object]]], *, width: int, height: int
    ) -> HandwrittenSignature:
        """From plain lists (as JSON gives them): ``[[[x, y, t_ms], ...], ...]``."""
        w = _number(width, "width", 16, MAX_CANVAS)
        h = _number(height, "height", 16, MAX_CANVAS)
        if not isinstance(strokes, Sequence) or isinstance(strokes, str | bytes):
            raise SignatureError("strokes: expected a list of strokes")
        if len(strokes) > MAX_STROKES:
            raise SignatureError(f"strokes: {len(strokes)} strokes, the limit is {MAX_STROKES}")
        out: list[tuple[Point, ...]] = []
        total = 0
        for i, stroke in enumerate(strokes):
            if not isinstance(stroke, Sequence) or isinstance(stroke, str | bytes) or not stroke:
                raise SignatureError(f"strokes[{i}]: expected a non-empty list of points")
            total += len(stroke)
            if total > MAX_POINTS:
                raise SignatureError(f"strokes: more than {MAX_POINTS} points in all")
            points: list[Point] = []
            for j, point in enumerate(stroke):
                where = f"strokes[{i}][{j}]"
                if not isinstance(point, Sequence) or isinstance(point, str) or len(point) != 3:
                    raise SignatureError(f"{where}: expected [x, y, t_ms]")
                points.append(
                    (
                        _number(point[0], f"{where}.x", 0, w),
                        _number(point[1], f"{where}.y", 0, h),
                        _number(point[2], f"{where}.t_ms", 0, MAX_T_MS),
                    )
                )
            out.append(tuple(points))
        if total < 2:
            raise SignatureError(
                "strokes: a signature needs at least 2 points",
                "Ông/Bà chưa ký. Xin mời ký vào khung trên màn hình.",
            )
        return cls(width=w, height=h, strokes=tuple(out))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "width": self.width,
            "height": self.height,
            "strokes": [[list(p) for p in s] for s in self.strokes],
        }

    def strokes_json(self) -> bytes:
        """The canonical stroke data stored as the dossier's ``signature.json`` attachment."""
        return canonical_json(self.to_json_dict())

    def render_png(self) -> bytes:
        """The strokes drawn black on white, at canvas size (a greyscale PNG)."""
        from PIL import Image, ImageDraw

        image = Image.new("L", (self.width, self.height), 255)
        draw = ImageDraw.Draw(image)
        r = LINE_WIDTH / 2
        for stroke in self.strokes:
            xy = [(x, y) for x, y, _ in stroke]
            if len(xy) > 1:
                draw.line(xy, fill=0, width=LINE_WIDTH, joint="curve")
            for x, y in (xy[0], xy[-1]):  # round caps, and a dot for a single tap
                draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=True)
        return buf.getvalue()


def _b64(value: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SignatureError(f"{where}: expected base64 text")
    if len(value) > SIGNATURE_VALUE_CHARS:
        raise SignatureError(
            f"{where}: {len(value)} characters, the limit is {SIGNATURE_VALUE_CHARS}"
        )
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{where}: not valid base64") from None
    return value


@dataclass(frozen=True, kw_only=True)
class RemoteSignatureResult:
    """A remote signature the citizen approved (VNPT SmartCA, Viettel MySign via CSC...)."""

    provider: str
    transaction: str
    value_b64: str
    certificate_b64: str
    signed_at: datetime
    #: The hash the provider signed (hex), when known: it must be the filing's own.
    document_sha256: str | None = None

    @classmethod
    def from_signed(cls, signed: Any) -> RemoteSignatureResult:
        """From the remote-signing port's ``Signed`` (edge_agent.services.remote_signing)."""
        return cls(
            provider=signed.provider or "remote",
            transaction=signed.transaction,
            value_b64=base64.b64encode(signed.value).decode(),
            certificate_b64=base64.b64encode(signed.certificate).decode(),
            signed_at=signed.signed_at,
            document_sha256=signed.digest.hex(),
        )

    def signature_body(self, document_sha: str) -> dict[str, Any]:
        """The dossier's ``signature`` for this result over ``document_sha``."""
        if self.document_sha256 is not None and self.document_sha256 != document_sha:
            raise SignatureError(
                "document_sha256: the provider signed another document than this filing",
                "Chữ ký số không khớp với hồ sơ này. Xin mời Ông/Bà ký lại.",
            )
        if not SLUG_RE.match(self.provider):
            raise SignatureError(f"provider: {self.provider!r} is not a short name of a-z, 0-9, -")
        if not self.transaction or len(self.transaction) > TRANSACTION_CHARS:
            raise SignatureError(f"transaction: must be 1-{TRANSACTION_CHARS} characters")
        if self.signed_at.tzinfo is None:
            raise SignatureError("signed_at: needs a time zone")
        return {
            "method": "remote",
            "document_sha256": document_sha,
            "signed_at": self.signed_at.isoformat(timespec="seconds"),
            "provider": self.provider,
            "transaction": self.transaction,
            "value": _b64(self.value_b64, "value_b64"),
            "certificate": _b64(self.certificate_b64, "certificate_b64"),
        }


Signature = HandwrittenSignature | RemoteSignatureResult
