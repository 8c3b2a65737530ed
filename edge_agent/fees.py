"""The fee of a filing, from the procedure's fee rule and the form (pages, copies).

One function, :func:`compute_fee`, returns the dossier's ``fee``
(:class:`sync.schemas.FeeDetail`): ``{"rule", "amount_vnd", "pages", "copies"}``.
It is the application's only way to a fee, so the rebuilt catalogue's own fee
rules (helper A's ``compute_fee``) replace it in one place.

Until then the rule is inferred from the bundled catalogue: no fee is ``free``;
a form with a page count (``so_trang``) is certification of copies, charged per
page by Thông tư 226/2016/TT-BTC: 2.000 đồng a page for pages 1-2, 1.000 đồng
from page 3, at most 200.000 đồng a copy, times the copies (``so_ban``,
default 1); a form with only a copy count is ``per-copy`` (fee x copies);
anything else is ``flat``.
"""

from __future__ import annotations

from typing import Any

from edge_agent.catalogue import Procedure

PAGES_FIELD = "so_trang"
COPIES_FIELD = "so_ban"
#: TT 226/2016/TT-BTC art. 4: certification of copies.
FIRST_PAGES, FIRST_PAGE_VND, LATER_PAGE_VND, CAP_PER_COPY_VND = 2, 2000, 1000, 200_000


def _count(form: dict[str, Any], name: str) -> int | None:
    value = form.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def per_page_fee(pages: int) -> int:
    """Fee of one certified copy of ``pages`` pages (TT 226/2016, capped)."""
    first = min(pages, FIRST_PAGES) * FIRST_PAGE_VND
    later = max(0, pages - FIRST_PAGES) * LATER_PAGE_VND
    return min(first + later, CAP_PER_COPY_VND)


def compute_fee(proc: Procedure, form: dict[str, Any]) -> dict[str, Any]:
    """The ``fee`` of a dossier of ``proc`` with the validated ``form``."""
    names = {f.name for f in proc.form}
    pages, copies = _count(form, PAGES_FIELD), _count(form, COPIES_FIELD)
    if proc.fee_vnd == 0:
        return {"rule": "free", "amount_vnd": 0}
    if PAGES_FIELD in names:
        n_pages = pages if pages is not None else 1
        n_copies = copies if copies is not None else 1
        return {
            "rule": "per-page",
            "amount_vnd": per_page_fee(n_pages) * n_copies,
            "pages": n_pages,
            "copies": n_copies,
        }
    if COPIES_FIELD in names:
        n_copies = copies if copies is not None else 1
        return {"rule": "per-copy", "amount_vnd": proc.fee_vnd * n_copies, "copies": n_copies}
    return {"rule": "flat", "amount_vnd": proc.fee_vnd}
