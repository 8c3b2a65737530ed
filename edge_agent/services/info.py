"""Touch to know: FAQ and news central published, read from the kiosk's cache.

Withdrawn items are hidden. :meth:`InfoService.faqs` and :meth:`InfoService.news`
search like the catalogue does (:class:`edge_agent.search.SearchIndex`: missing
diacritics forgiven, "ket hon" finds "kết hôn", Telex/VNI leftovers repaired),
ranked question (title) first, then tags, then the answer (body); with no
query, newest first.
"""

from __future__ import annotations

from typing import Any

from edge_agent import downlink_cache
from edge_agent.search import SearchIndex, normalize
from sync.outbox import Outbox

MAX_RESULTS = 50


def fold(text: str) -> str:
    """Lower case without diacritics: "Kết hôn Đồng Tháp" -> "ket hon dong thap"."""
    return normalize(text)


def _ranked(
    items: list[dict[str, Any]], query: str | None, fields: list[tuple[str, float]]
) -> list[dict[str, Any]]:
    if not (query or "").strip():
        return items[:MAX_RESULTS]
    docs = []
    for n, item in enumerate(items):
        texts: list[tuple[str, float]] = []
        for name, weight in fields:
            value = item.get(name)
            if isinstance(value, list):
                texts.extend((str(v), weight) for v in value)
            elif value is not None:
                texts.append((str(value), weight))
        docs.append((str(n), texts))
    hits = SearchIndex(docs).search(query or "", limit=MAX_RESULTS)
    return [items[int(h.id)] for h in hits]


class InfoService:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def _live(self, kind: str) -> list[dict[str, Any]]:
        with self.outbox.reading() as conn:
            items = downlink_cache.items(conn, kind)
        live = [i for i in items if not i.get("withdrawn")]
        return sorted(live, key=lambda i: str(i.get("published_at", "")), reverse=True)

    def faqs(
        self, query: str | None = None, *, procedure: str | None = None
    ) -> list[dict[str, Any]]:
        items = self._live("faq")
        if procedure is not None:
            items = [i for i in items if i.get("procedure") == procedure]
        return _ranked(items, query, [("question", 3.0), ("tags", 2.0), ("answer", 1.0)])

    def news(self, query: str | None = None) -> list[dict[str, Any]]:
        return _ranked(self._live("news"), query, [("title", 3.0), ("body", 1.0)])
