"""The routes of the kiosk's local API (see the package docstring)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge_agent import CitizenError
from edge_agent.api.events import EventHub, TooManyClients
from edge_agent.api.payment_qr import payment_svg
from edge_agent.api.speech import MAX_TEXT_CHARS, UNAVAILABLE_VI, Speech, SpeechUnavailable
from edge_agent.api.static import mount_ui
from edge_agent.app import KioskApp
from edge_agent.dossiers import Applicant
from edge_agent.receipts import SCREEN_NOT_PRINTED, SCREEN_PRINTED
from edge_agent.search import procedure_index
from edge_agent.services.capture import CaptureRefused, Preview, UnknownPage
from edge_agent.services.filing import PreparedFiling
from edge_agent.services.remote_signing import (
    Expired,
    Pending,
    Rejected,
    RemoteSigningError,
    Signed,
    Transaction,
)
from edge_agent.signature import HandwrittenSignature, RemoteSignatureResult, SignatureError

log = logging.getLogger("aps.api")

PREFIX = "/api/v1"
#: Prepared filings and signing transactions kept for the screen (oldest dropped first).
MAX_PREPARED = 32
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_S = 15.0
#: Seconds between checks that an idle event stream's client is still there.
DISCONNECT_CHECK_S = 1.0

Text = Annotated[str, Field(max_length=2000)]
ShortText = Annotated[str, Field(max_length=200)]
Code = Annotated[str, Field(min_length=1, max_length=64)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Lookup = Annotated[str, Field(min_length=1, max_length=40)]
PageId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[0-9A-Za-z]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TypedApplicant(Strict):
    full_name: ShortText
    id_number: Annotated[str, Field(max_length=20)]
    date_of_birth: Annotated[str | None, Field(max_length=10)] = None
    phone: Annotated[str | None, Field(max_length=20)] = None
    address: Annotated[str | None, Field(max_length=300)] = None


class PrepareIn(Strict):
    procedure: Code
    form: Annotated[dict[str, Any], Field(max_length=100)] = Field(default_factory=dict)
    phone: Annotated[str | None, Field(max_length=20)] = None
    address: Annotated[str | None, Field(max_length=300)] = None
    applicant: TypedApplicant | None = None


class HandwrittenIn(Strict):
    type: Literal["handwritten"]
    width: Annotated[int, Field(ge=16, le=4096)]
    height: Annotated[int, Field(ge=16, le=4096)]
    strokes: Annotated[
        list[Annotated[list[Annotated[list[int], Field(max_length=3)]], Field(max_length=2000)]],
        Field(min_length=1, max_length=200),
    ]


class RemoteIn(Strict):
    type: Literal["remote"]
    transaction: Annotated[str, Field(min_length=1, max_length=128)]


class FileIn(Strict):
    document_sha256: Sha256
    signature: Annotated[HandwrittenIn | RemoteIn, Field(discriminator="type")]


class SpeechIn(Strict):
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class SignStartIn(Strict):
    document_sha256: Sha256


class RatingIn(Strict):
    level: ShortText
    dossier_code: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    reason: Annotated[str | None, Field(max_length=500)] = None


class HelpIn(Strict):
    message: Annotated[str | None, Field(max_length=500)] = None
    topic: Annotated[str | None, Field(max_length=100)] = None
    phone: Annotated[str | None, Field(max_length=20)] = None


class HomeVisitIn(Strict):
    full_name: ShortText
    phone: Annotated[str, Field(max_length=20)]
    address: Annotated[str, Field(max_length=300)]
    reason: Annotated[str, Field(max_length=500)]
    message: Annotated[str | None, Field(max_length=500)] = None


class FeedbackIn(Strict):
    category: ShortText
    message: Text
    contact: Annotated[str | None, Field(max_length=200)] = None
    procedure: Annotated[str | None, Field(max_length=64)] = None


def _error(status: int, field: str, message: str, message_vi: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"field": field, "message": message, "message_vi": message_vi}},
        status_code=status,
    )


def _field_of(message: str) -> str:
    """``"form.phone: too long"`` -> ``form.phone``; services name the field first."""
    head = message.split(":", 1)[0].strip()
    return head if head and " " not in head and len(head) <= 80 else ""


class NotFound(CitizenError):
    pass


class _Signing:
    """A remote signing transaction the screen started, and its outcome once final."""

    def __init__(self, tx: Transaction, document_sha256: str) -> None:
        self.tx = tx
        self.document_sha256 = document_sha256
        self.signed: Signed | None = None


V = TypeVar("V")


class _Bounded(OrderedDict[str, V]):
    def put(self, key: str, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > MAX_PREPARED:
            self.popitem(last=False)


def create_app(
    kiosk: KioskApp,
    *,
    hub: EventHub | None = None,
    max_body_kb: int = 256,
    speech: Speech | None = None,
) -> FastAPI:
    """The ASGI app over ``kiosk``; ``hub`` feeds ``/events`` (without one it answers 404).

    ``speech`` reads text aloud (default: espeak-ng as ``[ui]`` names it).
    """
    api = FastAPI(
        title="APS kiosk local API",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    lock = threading.Lock()
    prepared: _Bounded[PreparedFiling] = _Bounded()
    signings: _Bounded[_Signing] = _Bounded()
    payments: _Bounded[str] = _Bounded()  # dossier code -> its VietQR payload
    max_body = max_body_kb * 1024
    ui = kiosk.cfg.ui
    voice = speech or Speech(binary=ui.speech_binary, voice=ui.speech_voice)

    def forget_citizen(reason: str = "ended") -> None:
        """The session ended: nothing the citizen prepared stays in the API's memory."""
        with lock:
            prepared.clear()
            signings.clear()
            payments.clear()
        voice.forget()  # a screen read aloud may have said the citizen's name

    # Idle expiry, "Kết thúc" and another card all end up here (and in the app's own
    # hook, which drops the captured pages and sends the screen a ``session`` event).
    kiosk.session.on_clear.append(forget_citizen)

    # -- errors ---------------------------------------------------------------------------
    @api.exception_handler(CitizenError)
    async def _citizen(request: Request, exc: CitizenError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound | UnknownPage) else 422
        if isinstance(exc, CaptureRefused):  # no camera, a camera fault, a page limit
            return _error(409, "capture", str(exc), exc.message_vi)
        field = _field_of(str(exc))  # services name the field first: "form.so_trang: ..."
        known = getattr(exc, "field", None)  # DossierRefused knows its dotted path
        if not field and isinstance(known, str):
            field = known
        return _error(status, field, str(exc), exc.message_vi)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{field}: {first.get('msg', 'invalid')}"
        return JSONResponse(
            {
                "error": {
                    "field": field,
                    "message": message,
                    "message_vi": "Thông tin chưa hợp lệ. Xin mời Ông/Bà kiểm tra lại.",
                },
                "detail": jsonable_encoder(
                    [{"loc": e.get("loc"), "msg": e.get("msg")} for e in errors[:20]]
                ),
            },
            status_code=422,
        )

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (a body that is not JSON, no such path or method)
        what = {400: "body", 404: "path", 405: "method"}.get(exc.status_code, "")
        return JSONResponse(
            {
                "error": {
                    "field": what,
                    "message": f"{what or 'request'}: {exc.detail}",
                    "message_vi": "Yêu cầu không hợp lệ.",
                }
            },
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @api.exception_handler(SpeechUnavailable)
    async def _no_speech(request: Request, exc: SpeechUnavailable) -> JSONResponse:
        log.warning("%s", exc)
        return _error(503, "speech", str(exc), UNAVAILABLE_VI)

    @api.exception_handler(RemoteSigningError)
    async def _signing(request: Request, exc: RemoteSigningError) -> JSONResponse:
        # Central or the provider could not answer: not the input's fault.
        return _error(503, "", str(exc), exc.citizen_message)

    # -- body limit -----------------------------------------------------------------------
    @api.middleware("http")
    async def _limit_body(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        length = request.headers.get("content-length")
        too_big = _error(
            413,
            "body",
            f"body: larger than {max_body_kb} KiB; send less (signature strokes: fewer points)",
            "Dữ liệu gửi lên quá lớn. Xin mời Ông/Bà thử lại.",
        )
        if length is not None:
            if not length.isdigit() or int(length) > max_body:
                return too_big
        elif request.method in ("POST", "PUT", "PATCH"):
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    return too_big
            request._body = bytes(body)  # read once, bounded; the route reads this
        return await call_next(request)

    @api.middleware("http")
    async def _expire_idle(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        # Before any answer: an idle citizen's data is gone before anything could show it
        # (the app's housekeeping tick does the same when no request comes).
        if request.url.path.startswith(PREFIX):
            kiosk.session.expire_if_idle()
        return await call_next(request)

    # -- session ------------------------------------------------------------------------
    @api.get(f"{PREFIX}/session", tags=["session"])
    def get_session() -> dict[str, Any]:
        """The citizen at the kiosk now (ID masked), or no identity; ``idle_timeout_s``."""
        return kiosk.session.snapshot().to_json_dict()

    @api.post(f"{PREFIX}/session/activity", tags=["session"])
    def session_activity() -> dict[str, Any]:
        """The citizen touched the screen: the agent's idle clock starts again."""
        kiosk.session.touch()
        return kiosk.session.snapshot().to_json_dict()

    @api.delete(f"{PREFIX}/session", tags=["session"])
    def clear_session() -> dict[str, Any]:
        """ "Kết thúc": forget the citizen (and what they prepared and photographed)."""
        kiosk.session.clear()
        forget_citizen()
        kiosk.capture.clear()
        return kiosk.session.snapshot().to_json_dict()

    # -- the screen's settings, read aloud ------------------------------------------------
    @api.get(f"{PREFIX}/kiosk", tags=["kiosk"])
    def kiosk_settings() -> dict[str, Any]:
        """What the screen needs to know about this kiosk (no secrets, no credentials)."""
        return {
            "office_name": kiosk.cfg.kiosk.office_name,
            "hotline": kiosk.cfg.kiosk.hotline,
            "typing": {"method": ui.typing_method, "style": ui.tone_style},
            "idle_timeout_s": kiosk.session.idle_timeout_s,
            "idle_warning_s": ui.idle_warning_s,
            "speech": voice.available,
            "capture": kiosk.capture.available,
        }

    @api.get(f"{PREFIX}/speech", tags=["speech"])
    def speech_available() -> dict[str, Any]:
        """Whether the read-aloud button can speak (espeak-ng installed)."""
        return {"available": voice.available}

    @api.post(
        f"{PREFIX}/speech",
        tags=["speech"],
        response_class=StreamingResponse,
        responses={200: {"content": {"audio/wav": {}}}, 503: {}},
    )
    def speak(body: SpeechIn) -> StreamingResponse:
        """The text read aloud in Vietnamese (espeak-ng on this box), as ``audio/wav``."""
        handle, size = voice.open(body.text)

        def chunks() -> Iterator[bytes]:
            with handle:  # streamed from the file: a long text never sits in memory
                while chunk := handle.read(64 * 1024):
                    yield chunk

        return StreamingResponse(
            chunks(),
            media_type="audio/wav",
            headers={"Cache-Control": "no-store", "Content-Length": str(size)},
        )

    # -- catalogue ----------------------------------------------------------------------
    @api.get(f"{PREFIX}/catalogue", tags=["catalogue"])
    def list_procedures(
        q: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        """Every procedure, or those matching ``q`` (best first)."""
        catalogue = kiosk.catalogue()
        listing = catalogue.listing()
        if q is not None and q.strip():
            by_code = {p["code"]: p for p in listing}
            hits = procedure_index(catalogue).search(q, limit=20)
            listing = [by_code[h.id] for h in hits if h.id in by_code]
        return {"version": catalogue.version, "procedures": listing}

    @api.get(f"{PREFIX}/catalogue/{{code}}", tags=["catalogue"])
    def one_procedure(code: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        """One procedure: its papers, its form, what the card gave and what is left to type."""
        catalogue = kiosk.catalogue()
        if code not in catalogue.procedures:
            raise NotFound(
                f"code: unknown procedure {code[:64]!r}",
                "Không tìm thấy thủ tục này. Vui lòng hỏi cán bộ tại quầy.",
            )
        out: dict[str, Any] = jsonable_encoder(kiosk.filing.prefill(code))
        return out

    # -- filing ---------------------------------------------------------------------------
    @api.post(f"{PREFIX}/filings/prepare", tags=["filing"])
    def prepare(body: PrepareIn) -> dict[str, Any]:
        """Check the form, compute the fee and the hash to sign; nothing is written."""
        if body.procedure not in kiosk.catalogue().procedures:
            raise CitizenError(
                f"procedure: unknown procedure {body.procedure!r}; list them at {PREFIX}/catalogue",
                "Không tìm thấy thủ tục này. Vui lòng hỏi cán bộ tại quầy.",
            )
        applicant = None
        if body.applicant is not None:
            applicant = Applicant(**body.applicant.model_dump())
        p = kiosk.filing.prepare(
            body.procedure, body.form, phone=body.phone, address=body.address, applicant=applicant
        )
        with lock:
            prepared.put(p.document_sha256, p)
        kiosk.session.hold()  # a typed-in citizen's filing is wiped by the idle clock too
        return p.to_json_dict()

    def _gone(sha: str) -> NotFound:
        return NotFound(
            f"document_sha256: no prepared filing {sha[:16]}...; prepare it again",
            "Phiên làm việc đã hết hạn. Xin mời Ông/Bà khai lại.",
        )

    def _prepared(sha: str) -> PreparedFiling:
        with lock:
            p = prepared.get(sha)
        if p is None:
            raise _gone(sha)
        return p

    @api.post(f"{PREFIX}/filings", tags=["filing"])
    def file(body: FileIn) -> dict[str, Any]:
        """File the prepared filing with its signature; commits, then prints the slip."""
        p = _prepared(body.document_sha256)
        sig: HandwrittenSignature | RemoteSignatureResult
        if isinstance(body.signature, HandwrittenIn):
            try:
                sig = HandwrittenSignature.from_strokes(
                    body.signature.strokes,
                    width=body.signature.width,
                    height=body.signature.height,
                )
            except SignatureError as exc:  # "strokes: ..." -> "signature.strokes: ..."
                raise CitizenError(f"signature.{exc}", exc.message_vi) from None
        else:
            with lock:
                s = signings.get(body.signature.transaction)
            if s is None or s.signed is None or s.document_sha256 != p.document_sha256:
                raise CitizenError(
                    "signature.transaction: not a signed transaction for this document",
                    "Chưa có chữ ký số cho hồ sơ này. Xin mời Ông/Bà ký lại.",
                )
            sig = RemoteSignatureResult.from_signed(s.signed)
        with lock:  # taken out first: a double tap files once, the second tap gets 404
            if prepared.pop(p.document_sha256, None) is None:
                raise _gone(p.document_sha256)
        try:
            result = kiosk.filing.file(p, signature=sig, attachments=kiosk.capture.attachments())
        except CitizenError:
            with lock:  # refused, nothing committed: the citizen may try again
                prepared.put(p.document_sha256, p)
            raise
        kiosk.capture.clear()  # the pages are in the dossier's transaction now
        out: dict[str, Any] = jsonable_encoder(result.to_json_dict())
        if result.payment_qr is not None:
            with lock:
                payments.put(result.code, result.payment_qr)
            out["payment"]["qr_svg"] = f"{PREFIX}/filings/{result.code}/payment-qr.svg"
        return out

    @api.get(
        f"{PREFIX}/filings/{{code}}/payment-qr.svg",
        tags=["filing"],
        response_class=Response,
        responses={200: {"content": {"image/svg+xml": {}}}, 404: {}},
    )
    def payment_qr(code: Annotated[str, Path(max_length=64)]) -> Response:
        """The fee's VietQR code (the slip's payload) as SVG, for a filing of this session."""
        with lock:
            payload = payments.get(code)
        if payload is None:
            raise NotFound(
                f"code: no fee to pay by QR for {code[:64]!r} at this kiosk now",
                "Không có mã thanh toán cho hồ sơ này. Xin mời Ông/Bà nộp lệ phí tại quầy.",
            )
        return Response(
            payment_svg(payload), media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
        )

    @api.post(f"{PREFIX}/filings/{{code}}/shown", tags=["filing"])
    def confirm_shown(code: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        """The screen has shown the dossier code to its citizen."""
        if not kiosk.filing.confirm_shown(code):
            raise NotFound(
                f"code: no unconfirmed filing {code[:64]!r} at this kiosk",
                "Không tìm thấy hồ sơ này tại ki-ốt.",
            )
        return {"code": code, "shown": True}

    @api.post(f"{PREFIX}/filings/{{code}}/reprint", tags=["filing"])
    def reprint(code: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        """Print the slip of a dossier filed here again (staff fixed the printer)."""
        if not kiosk.filing.filed_here(code):
            raise NotFound(
                f"code: no dossier {code[:64]!r} filed at this kiosk",
                "Không tìm thấy hồ sơ này tại ki-ốt.",
            )
        printed = kiosk.filing.reprint(code)
        if printed:
            kiosk.printer_help.printer_seen("ok")
        text = SCREEN_PRINTED if printed else SCREEN_NOT_PRINTED
        return {"printed": printed, "screen_text": text.format(code=code)}

    @api.get(f"{PREFIX}/filings/last-unconfirmed", tags=["filing"])
    def last_unconfirmed() -> dict[str, Any]:
        """The newest filing never shown (show it after a restart), or null."""
        u = kiosk.filing.last_unconfirmed()
        return {"filing": None if u is None else u.to_json_dict()}

    # -- document capture -----------------------------------------------------------------
    def _preview(p: Preview, *, accepted: bool) -> dict[str, Any]:
        return {**p.to_json_dict(), "url": f"{PREFIX}/capture/{p.id}.jpg", "accepted": accepted}

    @api.get(f"{PREFIX}/capture", tags=["capture"])
    def capture_state() -> dict[str, Any]:
        """Whether a document camera is there, the accepted pages, the preview waiting."""
        pending = kiosk.capture.pending()
        return {
            "available": kiosk.capture.available,
            "pages": [_preview(p, accepted=True) for p in kiosk.capture.pages()],
            "pending": None if pending is None else _preview(pending, accepted=False),
        }

    @api.post(f"{PREFIX}/capture", tags=["capture"], responses={409: {}})
    def capture_page() -> dict[str, Any]:
        """Photograph the page under the camera: a preview to accept or retake."""
        preview = kiosk.capture.capture()
        kiosk.session.hold()  # the idle clock covers the pages of a citizen without a card
        return _preview(preview, accepted=False)

    @api.get(
        f"{PREFIX}/capture/{{preview_id}}.jpg",
        tags=["capture"],
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {}},
    )
    def capture_image(preview_id: PageId) -> Response:
        """The photographed page (a preview or an accepted page) as JPEG."""
        page = kiosk.capture.preview(preview_id)
        return Response(page.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @api.post(f"{PREFIX}/capture/{{preview_id}}/accept", tags=["capture"])
    def capture_accept(preview_id: PageId) -> dict[str, Any]:
        """Keep the preview as the next page of the dossier."""
        return {"pages": kiosk.capture.accept(preview_id)}

    @api.post(f"{PREFIX}/capture/{{preview_id}}/retake", tags=["capture"], responses={409: {}})
    def capture_retake(preview_id: PageId) -> dict[str, Any]:
        """Drop the preview and photograph the page again."""
        preview = kiosk.capture.retake(preview_id)
        kiosk.session.hold()
        return _preview(preview, accepted=False)

    @api.delete(f"{PREFIX}/capture/{{preview_id}}", tags=["capture"])
    def capture_remove(preview_id: PageId) -> dict[str, Any]:
        """Drop an accepted page (or the preview)."""
        return {"pages": kiosk.capture.remove(preview_id)}

    # -- remote signing -----------------------------------------------------------------
    @api.post(f"{PREFIX}/signing", tags=["signing"])
    def sign_start(body: SignStartIn) -> dict[str, Any]:
        """Ask the citizen's remote-signing provider for a signature over the prepared hash."""
        p = _prepared(body.document_sha256)
        tx = kiosk.signing.start(
            bytes.fromhex(p.document_sha256),
            document_name=p.procedure_name,
            id_number=p.applicant.id_number,
            phone=p.applicant.phone,
        )
        with lock:
            signings.put(tx.id, _Signing(tx, p.document_sha256))
        return {
            "transaction": tx.id,
            "expires_at": None if tx.expires_at is None else tx.expires_at.isoformat(),
            "state": "pending",
        }

    @api.get(f"{PREFIX}/signing/{{transaction}}", tags=["signing"])
    def sign_poll(transaction: Annotated[str, Path(max_length=128)]) -> dict[str, Any]:
        """Where the citizen's approval stands: pending, signed, rejected or expired."""
        with lock:
            s = signings.get(transaction)
        if s is None:
            raise NotFound(
                f"transaction: no signing transaction {transaction[:64]!r} here",
                "Không tìm thấy giao dịch ký số. Xin mời Ông/Bà ký lại.",
            )
        if s.signed is not None:
            return {"transaction": transaction, "state": "signed", "subject": s.signed.subject}
        result = kiosk.signing.poll(s.tx)
        if isinstance(result, Signed):
            s.signed = result
            return {"transaction": transaction, "state": "signed", "subject": result.subject}
        if isinstance(result, Pending):
            return {"transaction": transaction, "state": "pending", "message_vi": result.message}
        if isinstance(result, Rejected):
            return {
                "transaction": transaction,
                "state": "rejected",
                "reason": result.reason,
                "message_vi": result.message,
            }
        assert isinstance(result, Expired)
        return {"transaction": transaction, "state": "expired", "message_vi": result.message}

    # -- rating, tracking, support, feedback, info ----------------------------------------
    @api.post(f"{PREFIX}/ratings", tags=["rating"])
    def rate(body: RatingIn) -> dict[str, Any]:
        """The citizen's rating (of a dossier filed here, or of the service)."""
        return kiosk.ratings.rate(
            body.level, dossier_code=body.dossier_code, reason=body.reason
        ).to_json_dict()

    @api.get(f"{PREFIX}/tracking", tags=["tracking"])
    def track(code: Annotated[str, Query(min_length=1, max_length=300)]) -> dict[str, Any]:
        """A dossier's status by its code (or the slip's QR text)."""
        return kiosk.tracking.lookup(code).to_json_dict()

    @api.post(f"{PREFIX}/support/help", tags=["support"])
    def help_request(body: HelpIn) -> dict[str, Any]:
        """Call for help from the screen."""
        return kiosk.support.request_help(
            source="screen", message=body.message, topic=body.topic, phone=body.phone
        ).to_json_dict()

    @api.post(f"{PREFIX}/support/home-visit", tags=["support"])
    def home_visit(body: HomeVisitIn) -> dict[str, Any]:
        """Ask for staff to come to the citizen's home."""
        return kiosk.support.request_home_visit(**body.model_dump()).to_json_dict()

    @api.get(f"{PREFIX}/support/{{lookup_code}}", tags=["support"])
    def support_status(lookup_code: Annotated[str, Path(max_length=40)]) -> dict[str, Any]:
        """The staff's reply to a help or home-visit request, or "waiting"."""
        return kiosk.support.status(lookup_code).to_json_dict()

    @api.post(f"{PREFIX}/feedback", tags=["feedback"])
    def feedback(body: FeedbackIn) -> dict[str, Any]:
        """A question, complaint or proposal (câu hỏi, phản ánh, kiến nghị)."""
        return kiosk.feedback.submit(
            body.category,  # type: ignore[arg-type]  # the service refuses others in Vietnamese
            body.message,
            contact=body.contact,
            procedure=body.procedure,
        ).to_json_dict()

    @api.get(f"{PREFIX}/feedback/{{lookup_code}}", tags=["feedback"])
    def feedback_answer(lookup_code: Annotated[str, Path(max_length=40)]) -> dict[str, Any]:
        """The staff's answer to a feedback lookup code, or "not yet"."""
        return kiosk.feedback.answer_for(lookup_code).to_json_dict()

    @api.get(f"{PREFIX}/faq", tags=["info"])
    def faq(
        q: Annotated[str | None, Query(max_length=200)] = None,
        procedure: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        """Frequently asked questions central sent, best match first."""
        return {"items": kiosk.info.faqs(q, procedure=procedure)}

    @api.get(f"{PREFIX}/news", tags=["info"])
    def news(q: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
        """News central sent, newest or best match first."""
        return {"items": kiosk.info.news(q)}

    @api.get(f"{PREFIX}/health", tags=["health"])
    def health() -> dict[str, Any]:
        """Online, queued records, devices (the printer's state) for the status bar."""
        h = kiosk.health()
        h["printer"] = h["devices"].get("printer", {"state": "absent"})
        out: dict[str, Any] = jsonable_encoder(h)
        return out

    # -- events -------------------------------------------------------------------------
    @api.get(
        f"{PREFIX}/events",
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, 429: {}},
    )
    async def events(request: Request) -> Any:
        """Server-sent events: notices (identity, tracking, support, ...), sync, printer."""
        if hub is None:
            raise NotFound("events: not served here", "Không có luồng sự kiện.")
        try:
            client = hub.subscribe(asyncio.get_running_loop())
        except TooManyClients as exc:
            return _error(
                429,
                "events",
                f"events: {exc}, the limit is {hub.max_clients}; close another screen",
                "Ki-ốt đang bận. Xin mời thử lại sau.",
            )

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                idle = 0.0
                while True:
                    try:
                        event = await asyncio.wait_for(client.queue.get(), DISCONNECT_CHECK_S)
                    except TimeoutError:
                        # a screen that went away frees its place within a second
                        if await request.is_disconnected():
                            return
                        idle += DISCONNECT_CHECK_S
                        if idle >= KEEPALIVE_S:
                            idle = 0.0
                            yield b": keep-alive\n\n"
                        continue
                    if event is None:
                        return
                    data = json.dumps(jsonable_encoder(event.data), ensure_ascii=False)
                    yield f"event: {event.kind}\ndata: {data}\n\n".encode()
            finally:
                hub.unsubscribe(client)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    mount_ui(api, PREFIX)
    return api


__all__ = ["PREFIX", "create_app"]
