"""The satisfaction rating after a filing: rất hài lòng, hài lòng, không hài lòng.

One ``rating`` record per filing (a second rating of the same dossier is
refused: one citizen, one voice), with an optional reason; a rating without a
dossier (the kiosk's service in general) is allowed too. Central reports them
per office and day.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from edge_agent import CitizenError
from edge_agent.services._common import clean_text, drop_none, queued
from sync.outbox import Outbox

log = logging.getLogger("aps.ratings")

LEVELS = {
    "rat_hai_long": "Rất hài lòng",
    "hai_long": "Hài lòng",
    "khong_hai_long": "Không hài lòng",
}
THANKS = "Cảm ơn Ông/Bà đã đánh giá."

SCHEMA = """
CREATE TABLE IF NOT EXISTS ratings_given (dossier_code TEXT PRIMARY KEY) WITHOUT ROWID;
"""


@dataclass(frozen=True, kw_only=True)
class Rated:
    record_id: str
    level: str
    screen_text: str

    def to_json_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RatingService:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        with outbox.lock:
            outbox.conn.executescript(SCHEMA)

    def rate(
        self, level: str, *, dossier_code: str | None = None, reason: str | None = None
    ) -> Rated:
        if level not in LEVELS:
            raise CitizenError(
                f"level: {level!r} is not one of {list(LEVELS)}",
                "Vui lòng chọn: Rất hài lòng, Hài lòng hoặc Không hài lòng.",
            )
        try:
            with queued(self.outbox) as tx:
                if dossier_code is not None:
                    known = tx.conn.execute(
                        "SELECT 1 FROM dossiers WHERE code = ?", (dossier_code,)
                    ).fetchone()
                    if known is None:
                        raise CitizenError(
                            f"dossier_code: {dossier_code[:64]!r} was not filed at this kiosk",
                            "Không tìm thấy hồ sơ này tại ki-ốt.",
                        )
                    tx.conn.execute(
                        "INSERT INTO ratings_given (dossier_code) VALUES (?)", (dossier_code,)
                    )
                body = drop_none(
                    {"level": level, "dossier_code": dossier_code, "reason": clean_text(reason)}
                )
                record = tx.add("rating", body)
        except sqlite3.IntegrityError as exc:
            raise CitizenError(
                f"dossier_code: {dossier_code} was already rated",
                "Hồ sơ này đã được đánh giá. Cảm ơn Ông/Bà.",
            ) from exc
        log.info("rating %s queued", level)
        return Rated(record_id=record.id, level=level, screen_text=THANKS)
