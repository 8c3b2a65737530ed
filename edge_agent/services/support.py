"""Help from the free support team: a help request, or a home visit.

A citizen asks for help on the screen or presses the kiosk's physical help
button; an elderly, disabled or seriously ill citizen (or a relative) asks for
a home visit with address, reason and phone. Each is a ``support`` record
(``type`` help or home-visit) with a lookup code (HO-/TN-, see
:mod:`edge_agent.lookup_codes`), queued durably like any record. Central
routes it to the staff member on duty and sends the reply down as a
``support-reply`` item keyed by the lookup code; :meth:`SupportService.status`
reads it from the kiosk's cache and, while there is none, tells the citizen
the request is on its way and gives the office's hotline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from edge_agent import CitizenError, downlink_cache
from edge_agent.lookup_codes import next_code
from edge_agent.services._common import Office, clean_text, drop_none, queued
from edge_agent.session import CitizenSession
from sync.outbox import Outbox

log = logging.getLogger("aps.support")

BUTTON_MESSAGE = "Công dân bấm nút hỗ trợ tại ki-ốt."
SCREEN_MESSAGE = "Công dân cần hỗ trợ tại ki-ốt."
SENT = "Yêu cầu hỗ trợ của Ông/Bà đã được gửi (mã {code}). Cán bộ sẽ đến hỗ trợ trong giây lát."
SENT_HOME = (
    "Yêu cầu hỗ trợ tại nhà đã được gửi (mã {code}). "
    "Cán bộ sẽ gọi điện cho Ông/Bà theo số {phone} để hẹn lịch."
)
WAITING = "Yêu cầu {code} đã được ghi nhận, đang chờ cán bộ tiếp nhận."
HOTLINE = " Nếu cần gấp, xin gọi đường dây nóng {hotline}."


@dataclass(frozen=True, kw_only=True)
class SupportTicket:
    lookup_code: str
    record_id: str
    screen_text: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "lookup_code": self.lookup_code,
            "record_id": self.record_id,
            "screen_text": self.screen_text,
        }


@dataclass(frozen=True, kw_only=True)
class SupportStatus:
    """Where a support request stands, for the screen."""

    lookup_code: str
    status: str  # waiting (no reply yet), assigned, no-one-on-duty, resolved
    staff_name: str | None
    channel: str | None
    hotline: str | None
    message: str
    at: str | None

    def to_json_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SupportService:
    def __init__(self, outbox: Outbox, office: Office, session: CitizenSession) -> None:
        self.outbox, self.office, self.session = outbox, office, session

    def request_help(
        self,
        *,
        source: Literal["screen", "button", "kiosk"] = "screen",
        message: str | None = None,
        topic: str | None = None,
        phone: str | None = None,
    ) -> SupportTicket:
        """Queue a help request (from the screen, the button with no text, or the kiosk itself)."""
        current = self.session.identity()
        body = {
            "type": "help",
            "source": source,
            "message": clean_text(message)
            or (BUTTON_MESSAGE if source == "button" else SCREEN_MESSAGE),
            "topic": clean_text(topic),
            "phone": clean_text(phone),
            "full_name": None if current is None else current[0].full_name,
        }
        code, record_id = self._queue("help", body)
        log.info("help request %s queued (%s)", code, source)
        return SupportTicket(
            lookup_code=code, record_id=record_id, screen_text=SENT.format(code=code)
        )

    def request_home_visit(
        self,
        *,
        full_name: str,
        phone: str,
        address: str,
        reason: str,
        message: str | None = None,
    ) -> SupportTicket:
        """Queue a home-visit request; name, phone, address and reason are required."""
        values = {
            "full_name": clean_text(full_name),
            "phone": clean_text(phone),
            "address": clean_text(address),
            "reason": clean_text(reason),
        }
        labels = {
            "full_name": "Họ và tên",
            "phone": "Số điện thoại",
            "address": "Địa chỉ",
            "reason": "Lý do",
        }
        for name, value in values.items():
            if value is None:
                raise CitizenError(
                    f"body.{name}: required for a home visit", f"Vui lòng nhập «{labels[name]}»."
                )
        body = {
            "type": "home-visit",
            "source": "screen",
            "message": clean_text(message) or f"Đề nghị hỗ trợ tại nhà: {values['reason']}",
            **values,
        }
        code, record_id = self._queue("home-visit", body)
        log.info("home-visit request %s queued", code)
        return SupportTicket(
            lookup_code=code,
            record_id=record_id,
            screen_text=SENT_HOME.format(code=code, phone=values["phone"]),
        )

    def _queue(self, kind: str, body: dict[str, Any]) -> tuple[str, str]:
        with queued(self.outbox) as tx:
            code = next_code(tx.conn, kind, self.office.clock(), self.office.slot)
            record = tx.add("support", drop_none({**body, "lookup_code": code}))
        return code, record.id

    def status(self, lookup_code: str) -> SupportStatus:
        """The reply central sent down for ``lookup_code``, or "waiting" with the hotline."""
        code = lookup_code.strip().upper()
        with self.outbox.reading() as conn:
            reply = downlink_cache.item(conn, "support-reply", code)
        hotline = self.office.hotline or None
        if reply is None:
            text = WAITING.format(code=code) + (HOTLINE.format(hotline=hotline) if hotline else "")
            return SupportStatus(
                lookup_code=code,
                status="waiting",
                staff_name=None,
                channel=None,
                hotline=hotline,
                message=text,
                at=None,
            )
        return SupportStatus(
            lookup_code=code,
            status=str(reply.get("status", "assigned")),
            staff_name=reply.get("staff_name"),
            channel=reply.get("channel"),
            hotline=reply.get("hotline") or hotline,
            message=str(reply.get("message", "")),
            at=reply.get("at"),
        )
