"""Questions, feedback and petitions (hỏi đáp, phản ánh, kiến nghị), and their answers.

Each is a ``feedback`` record with a lookup code (HT- question, PA- feedback,
KN- petition) the citizen keeps; an optional contact. Staff answer at central,
which sends the answer to every kiosk of the office as an ``answer`` item
keyed by the lookup code, so :meth:`FeedbackService.answer_for` finds it at
any kiosk there, online or not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from edge_agent import CitizenError, downlink_cache
from edge_agent.lookup_codes import next_code
from edge_agent.services._common import Office, clean_text, drop_none, queued
from sync.outbox import Outbox
from sync.schemas import LOOKUP_CODE_RE

log = logging.getLogger("aps.feedback")

Category = Literal["question", "feedback", "petition"]
CATEGORY_VI = {"question": "Câu hỏi", "feedback": "Phản ánh", "petition": "Kiến nghị"}
SENT = (
    "{what} của Ông/Bà đã được gửi. Mã tra cứu: {code}. "
    "Xin ghi lại mã để xem trả lời tại bất kỳ ki-ốt nào của bộ phận Một cửa."
)
NO_ANSWER = "Chưa có trả lời cho mã {code}. Xin Ông/Bà vui lòng quay lại sau."
BAD_CODE = "Mã tra cứu không đúng. Mã có dạng HT-261201-1004."


@dataclass(frozen=True, kw_only=True)
class Submitted:
    lookup_code: str
    record_id: str
    screen_text: str

    def to_json_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True, kw_only=True)
class Answer:
    lookup_code: str
    category: str | None
    answer: str | None
    answered_at: str | None
    answered_by: str | None
    screen_text: str

    @property
    def answered(self) -> bool:
        return self.answer is not None

    def to_json_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "answered": self.answered}


class FeedbackService:
    def __init__(self, outbox: Outbox, office: Office) -> None:
        self.outbox, self.office = outbox, office

    def submit(
        self,
        category: Category,
        message: str,
        *,
        contact: str | None = None,
        procedure: str | None = None,
    ) -> Submitted:
        if category not in CATEGORY_VI:
            raise CitizenError(
                f"category: {category!r} is not one of {list(CATEGORY_VI)}",
                "Vui lòng chọn loại ý kiến: câu hỏi, phản ánh hoặc kiến nghị.",
            )
        with queued(self.outbox) as tx:
            code = next_code(tx.conn, category, self.office.clock(), self.office.slot)
            body = drop_none(
                {
                    "category": category,
                    "message": clean_text(message) or "",
                    "contact": clean_text(contact),
                    "procedure": clean_text(procedure),
                    "lookup_code": code,
                }
            )
            record = tx.add("feedback", body)
        log.info("%s %s queued", category, code)
        return Submitted(
            lookup_code=code,
            record_id=record.id,
            screen_text=SENT.format(what=CATEGORY_VI[category], code=code),
        )

    def answer_for(self, lookup_code: str) -> Answer:
        """The staff's answer to ``lookup_code`` from the kiosk's cache (or "not yet")."""
        code = lookup_code.strip().upper()
        if not LOOKUP_CODE_RE.match(code):
            raise CitizenError(f"lookup_code: {lookup_code[:40]!r} is not a lookup code", BAD_CODE)
        with self.outbox.reading() as conn:
            item = downlink_cache.item(conn, "answer", code)
        if item is None:
            return Answer(
                lookup_code=code,
                category=None,
                answer=None,
                answered_at=None,
                answered_by=None,
                screen_text=NO_ANSWER.format(code=code),
            )
        text = str(item.get("answer", ""))
        return Answer(
            lookup_code=code,
            category=item.get("category"),
            answer=text,
            answered_at=item.get("answered_at"),
            answered_by=item.get("answered_by"),
            screen_text=text,
        )
