"""Routes a box uses to enrol and renew: ``/v1/enrol`` (docs/enrolment.md).

No bearer token: the enrolment token authenticates an enrolment, the kiosk's signing key a
renewal. Thin: the shapes are checked here (bounded; a larger body is refused with 413 by the
app's body limit before it is read), the work is :class:`central.fleet.enrolment.Enrolment`'s,
run in the thread pool (it writes SQLite and may talk to the broker). Errors are the API's
JSON errors: 400 bad field, 401 unknown token or bad signature, 403 revoked kiosk, 404 unknown
kiosk, 409 used token or held slot, 410 expired or revoked token, 503 broker unreachable.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from central.fleet.ca import MAX_CSR_BYTES
from central.fleet.enrolment import EnrolRefused
from central.fleet.lifecycle import IllegalTransition
from central.fleet.registry import RegistryError, SlotHeld
from central.web.common import ApiError

if TYPE_CHECKING:
    from central.fleet.enrolment import Enrolment

router = APIRouter(prefix="/v1/enrol")

RENEW_FIELDS = {"v", "kiosk", "csr", "signing_key", "at", "sig"}
MAX_RENEW_BYTES = 8192


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, Field(min_length=1, max_length=120)]
    csr: Annotated[str, Field(min_length=1, max_length=MAX_CSR_BYTES)]
    signing_key: Annotated[str, Field(min_length=43, max_length=43)]
    hostname: Annotated[str, Field(max_length=64)] = ""
    machine_id: Annotated[str, Field(max_length=32)] = ""


def _service(request: Request) -> Enrolment:
    service: Enrolment | None = getattr(request.app.state, "enrolment", None)
    if service is None:
        raise ApiError(
            404,
            "not-enabled",
            None,
            "enrolment is not enabled on this central ([enrolment] enabled = true)",
        )
    return service


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, EnrolRefused):
        return ApiError(exc.status, exc.code, exc.field, exc.message)
    if isinstance(exc, SlotHeld):
        return ApiError(409, "slot-held", "token", str(exc))
    if isinstance(exc, IllegalTransition):
        return ApiError(409, "illegal-transition", None, str(exc))
    return ApiError(400, "invalid", None, str(exc))


@router.get("/ca", response_class=PlainTextResponse)
def ca_certificate(request: Request) -> str:
    """The fleet CA (PEM). A box checks it against the pin its token carries."""
    return _service(request).ca.pem


@router.post("")
async def enrol(request: Request, body: EnrolIn) -> dict[str, Any]:
    """Redeem a one-time token: certificate, kiosk id, slot, agency, broker, central's keys."""
    service = _service(request)
    try:
        return await run_in_threadpool(service.enrol, body.model_dump())
    except (RegistryError, IllegalTransition) as exc:
        raise _as_api_error(exc) from None


@router.post("/renew")
async def renew(request: Request) -> dict[str, Any]:
    """A new certificate (and optionally a new signing key), signed with a current key."""
    service = _service(request)
    raw = await request.body()
    if len(raw) > MAX_RENEW_BYTES:
        raise ApiError(413, "too-large", "body", f"a renewal is at most {MAX_RENEW_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ApiError(400, "invalid", "body", "body: expected a JSON object") from None
    if not isinstance(doc, dict) or not set(doc) <= RENEW_FIELDS or "sig" not in doc:
        raise ApiError(
            400,
            "invalid",
            "body",
            f"body: expected a signed object with fields {', '.join(sorted(RENEW_FIELDS))}",
        )
    try:
        return await run_in_threadpool(service.renew, doc)
    except (RegistryError, IllegalTransition) as exc:
        raise _as_api_error(exc) from None
