"""Central's HTTP API for staff and the back office (docs/api.md).

:func:`central.web.app.create_app` builds the FastAPI application over the
library modules (roster, support, dossiers, answers, content, reports);
:mod:`central.web.server` serves it with uvicorn, alone (``aps-central api``)
or as a thread of ``aps-central run``.
"""


class ApiListenError(OSError):
    """The API could not start listening (address in use, no permission)."""
