"""Touch to know: FAQ and news central published, read from the kiosk's cache.

Withdrawn items are hidden. :meth:`InfoService.faqs` searches questions,
answers and tags forgiving missing diacritics ("ket hon" finds "kết hôn"):
both sides are folded (NFD, combining marks dropped, đ -> d, lower case) and
every word of the query must appear; hits in the question rank first.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from edge_agent import downlink_cache
from sync.outbox import Outbox

MAX_RESULTS = 50


def fold(text: str) -> str:
    """Lower case without diacritics: "Kết hôn Đồng Tháp" -> "ket hon dong thap"."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).lower().split())


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
        words = fold(query or "").split()
        if not words:
            return items[:MAX_RESULTS]
        scored = []
        for i in items:
            question = fold(str(i.get("question", "")))
            rest = fold(" ".join([str(i.get("answer", "")), *map(str, i.get("tags", []))]))
            if all(w in question or w in rest for w in words):
                scored.append((sum(w in question for w in words), i))
        scored.sort(key=lambda s: -s[0])  # stable: newest first within a score
        return [i for _, i in scored[:MAX_RESULTS]]

    def news(self) -> list[dict[str, Any]]:
        return self._live("news")[:MAX_RESULTS]
