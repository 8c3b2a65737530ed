"""Telling a staff member that a citizen needs them: webhook or e-mail.

Theory of operation
-------------------
A :class:`Notifier` has one method, ``send(note)``, which either delivers the
:class:`Notification` or raises :class:`NotifyError` (the reason is kept on
the request, so staff and admins can see why nobody was told). It never
retries: :mod:`central.support` owns the retries (bounded, with backoff) and
keeps the request whatever happens here.

- :class:`WebhookNotifier` POSTs the notification as JSON to one URL (a chat
  bot relay, the office's paging service). The receiver authenticates it by
  ``X-APS-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body bytes
  under the shared secret; ``id`` and ``sent_at`` in the body let it drop
  replays. Any answer but 2xx, a timeout or a refused connection is a failure.
- :class:`SmtpNotifier` sends a plain-text e-mail (Vietnamese subject and body)
  to the staff member's address, else to the configured team addresses.
- :class:`FanoutNotifier` sends through each configured notifier and succeeds
  when at least one delivered (an e-mail outage does not silence the webhook).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import httpx

log = logging.getLogger("aps.central.notify")

SIGNATURE_HEADER = "X-APS-Signature"
ERROR_CHARS = 300


class NotifyError(Exception):
    """A notification was not delivered (the request is kept and retried)."""


@dataclass(frozen=True, kw_only=True)
class Notification:
    """What a staff member needs to act on one support request."""

    id: str  # unique per (request, attempt series): "<request n>:<event>"
    event: str  # help, home-visit
    request: int
    lookup_code: str | None
    office: str | None
    kiosk: str
    staff_id: str | None
    staff_name: str | None
    staff_email: str | None
    message: str
    full_name: str | None = None
    phone: str | None = None
    address: str | None = None
    reason: str | None = None
    received_at: str = ""
    sent_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def subject(self) -> str:
        if self.event.startswith("alert-"):
            return alert_subject(self)
        what = "Yêu cầu thăm nhà" if self.event == "home-visit" else "Yêu cầu hỗ trợ"
        return f"[APS] {what} {self.lookup_code or self.request} tại kiosk {self.kiosk}"

    def text(self) -> str:
        if self.event.startswith("alert-"):
            return alert_text(self)
        lines = [
            self.subject(),
            "",
            f"Mã tra cứu: {self.lookup_code or '-'}",
            f"Cơ quan: {self.office or '-'}",
            f"Kiosk: {self.kiosk}",
            f"Cán bộ được giao: {self.staff_name or '-'}",
            f"Nội dung: {self.message}",
        ]
        for label, value in (
            ("Họ tên", self.full_name),
            ("Điện thoại", self.phone),
            ("Địa chỉ", self.address),
            ("Lý do", self.reason),
        ):
            if value:
                lines.append(f"{label}: {value}")
        lines += ["", f"Nhận lúc: {self.received_at}", f"Số yêu cầu: {self.request}"]
        return "\n".join(lines) + "\n"


# Fleet alerts (central/fleet/alert_watch.py) ride on the same Notification: ``event`` is
# ``alert-opened``, ``alert-renotified``, ``alert-escalated`` or ``alert-cleared``,
# ``request`` the alert's id, ``message`` its detail, ``extra["alert"]`` the alert's fields.
ALERT_EVENTS = {
    "alert-opened": "Cảnh báo mới",
    "alert-renotified": "Cảnh báo vẫn chưa được xử lý",
    "alert-escalated": "Cảnh báo đã nâng mức",
    "alert-cleared": "Cảnh báo đã hết",
}
ALERT_SEVERITIES = {"critical": "nghiêm trọng", "warning": "cảnh báo", "info": "thông tin"}


def alert_subject(note: Notification) -> str:
    alert = note.extra.get("alert", {})
    what = ALERT_EVENTS.get(note.event, "Cảnh báo")
    severity = ALERT_SEVERITIES.get(str(alert.get("severity")), "")
    return f"[APS] {what} ({severity}) {alert.get('kind', '')} tại kiosk {note.kiosk}"


def alert_text(note: Notification) -> str:
    alert = note.extra.get("alert", {})
    lines = [
        alert_subject(note),
        "",
        f"Số cảnh báo: {note.request}",
        f"Loại: {alert.get('kind', '-')}",
        f"Mức độ: {ALERT_SEVERITIES.get(str(alert.get('severity')), '-')}",
        f"Cơ quan: {note.office or '-'}",
        f"Kiosk: {note.kiosk}",
        f"Chi tiết: {note.message}",
        f"Mở lúc: {note.received_at}",
        "",
        f"Xác nhận: aps-central alerts ack {note.request} --comment '...'",
    ]
    return "\n".join(lines) + "\n"


class Notifier(Protocol):
    """Deliver one notification or raise :class:`NotifyError`."""

    def send(self, note: Notification) -> None: ...

    def describe(self) -> str: ...


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` (constant-time compare)."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body), header.strip())


class WebhookNotifier:
    def __init__(self, url: str, secret: str | bytes, *, timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {url!r}")
        self.url = url
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return f"webhook {self.url}"

    def send(self, note: Notification) -> None:
        body = json.dumps(note.as_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(self.secret, body),
            "User-Agent": "aps-central",
        }
        try:
            reply = httpx.post(
                self.url,
                content=body,
                headers=headers,
                timeout=self.timeout_s,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise NotifyError(f"{self.describe()}: {_short(exc)}") from exc
        if not 200 <= reply.status_code < 300:
            raise NotifyError(f"{self.describe()}: answered HTTP {reply.status_code}")


class SmtpNotifier:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        to: Sequence[str] = (),
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.to = tuple(to)
        self.username, self.password = username, password
        self.starttls = starttls
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return f"smtp {self.host}:{self.port}"

    def recipients(self, note: Notification) -> list[str]:
        if note.staff_email:
            return [note.staff_email, *(a for a in self.to if a != note.staff_email)]
        return list(self.to)

    def send(self, note: Notification) -> None:
        rcpt = self.recipients(note)
        if not rcpt:
            raise NotifyError(
                f"{self.describe()}: no recipient (staff {note.staff_id or '-'} has no e-mail "
                "and [notify] smtp_to is empty)"
            )
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(rcpt)
        msg["Subject"] = note.subject()
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="aps-central")
        msg.set_content(note.text())
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(msg, to_addrs=rcpt)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"{self.describe()}: {_short(exc)}") from exc
        if len(refused) == len(rcpt):
            raise NotifyError(f"{self.describe()}: every recipient refused: {sorted(refused)}")


class FanoutNotifier:
    """Each notifier in turn; delivered when at least one delivered."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        if not notifiers:
            raise ValueError("FanoutNotifier needs at least one notifier")
        self.notifiers = tuple(notifiers)

    def describe(self) -> str:
        return " + ".join(n.describe() for n in self.notifiers)

    def send(self, note: Notification) -> None:
        errors: list[str] = []
        for notifier in self.notifiers:
            try:
                notifier.send(note)
            except NotifyError as exc:
                errors.append(str(exc))
        if len(errors) == len(self.notifiers):
            raise NotifyError("; ".join(errors))
        for error in errors:  # delivered another way: not retried, but not silent
            log.warning("notification %s: %s (delivered through another notifier)", note.id, error)
