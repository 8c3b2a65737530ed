"""``GET /metrics``: the fleet's Prometheus metrics (central/fleet/metrics.py).

Computed from the database at each scrape, on a dedicated registry. When ``[api]
metrics_token`` is set the scrape needs ``Authorization: Bearer <token>`` (compared in
constant time); otherwise it is open to whoever reaches the API, like a node exporter.
When central's collector runs in this process (``aps-central run``), its counters are added
(``app.state.collector_counters``). Kiosks are counted by the overall state that
central's ``[fleet]`` thresholds give, as in the console and ``aps-central fleet``.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from central.fleet.metrics import registry_for
from central.web.common import ApiError, Conn, settings_of

router = APIRouter()


def _check_token(request: Request) -> None:
    token = settings_of(request).metrics_token
    if token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
        raise ApiError(
            401,
            "unauthorized",
            "Authorization",
            "send `Authorization: Bearer <[api] metrics_token>` (Prometheus: bearer_token)",
        )


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, conn: Conn) -> Response:
    _check_token(request)
    counters = getattr(request.app.state, "collector_counters", None)
    thresholds = settings_of(request).thresholds  # [fleet]'s, as the console and CLI use
    body = generate_latest(registry_for(conn, counters=counters, thresholds=thresholds))
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
