"""The fee of a filing, from the procedure's fee rule and the form (pages, copies).

One function, :func:`compute_fee`, returns the dossier's ``fee``
(:class:`sync.schemas.FeeDetail`): ``{"rule", "amount_vnd", "pages", "copies"}``.
It is the application's only way to a fee. The rule is the procedure's own, in
the catalogue central publishes (``sync.catalogue.compute_fee``: free, flat,
per page with a cap per copy as certification of copies, per copy, per case);
the form's page and copy counts are read by ``Procedure.quote``.
"""

from __future__ import annotations

from typing import Any

from edge_agent.catalogue import Procedure


def compute_fee(proc: Procedure, form: dict[str, Any]) -> dict[str, Any]:
    """The ``fee`` of a dossier of ``proc`` with the validated ``form``."""
    return proc.quote(form).detail()
