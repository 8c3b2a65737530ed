"""The kiosk screen's local HTTP API (issue 8): an ASGI app over :class:`KioskApp`.

Theory of operation
-------------------
:func:`create_app` builds a FastAPI application whose routes call the kiosk
application's services (``edge_agent/services/``) and return their
``to_json_dict()``; the OpenAPI document is at ``/api/v1/openapi.json``.
:class:`ApiServer` serves it with uvicorn on a thread of the agent, on a
loopback address only (``[ui] listen``; the config refuses anything else).

- Bad input never reaches a service unchecked: request bodies are pydantic
  models with limits, answered with 422 naming the field; a
  :class:`edge_agent.CitizenError` from a service becomes 422 (404 for an
  unknown code) with its ``message_vi``. No input gives a 5xx (the test suite
  runs schemathesis against the OpenAPI document).
- Bodies are bounded (``[ui] max_body_kb``, 413), and so are the screen's
  event streams (``[ui] max_event_clients``, 429 beyond).
- Filing keeps the prepared filing on the kiosk: ``POST /filings/prepare``
  returns it with ``document_sha256``; ``POST /filings`` names that hash with
  the signature (strokes, or a remote signing transaction that was signed).
  What is signed is what is filed: the screen never sends the form twice.
- ``GET /api/v1/events`` is a server-sent-event stream: the app's notices
  (:meth:`KioskApp.next_notice`: identity, session ended, downlink arrivals,
  ...), sync online/offline and printer state changes, fanned out by one
  :class:`EventHub` thread to every client.
- The citizen's session ending (idle, "Kết thúc", another card) makes the API
  forget what it kept for them: prepared filings, signing transactions,
  payment codes, read-aloud WAVs (and the app drops the captured pages).
- Read aloud (``speech.py``) is espeak-ng in a subprocess, streamed from a
  private temporary file; the payment QR (``payment_qr.py``) is the slip's
  VietQR payload drawn as SVG.
"""

from edge_agent.api.app import create_app
from edge_agent.api.events import EventHub
from edge_agent.api.server import ApiServer

__all__ = ["ApiServer", "EventHub", "create_app"]
