"""Notifiers against real loopback receivers: a webhook (HTTP) and an SMTP server."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from central.config import CentralConfig, NotifySection
from central.notify import (
    FanoutNotifier,
    Notification,
    NotifyError,
    SmtpNotifier,
    WebhookNotifier,
    sign,
    verify_signature,
)
from sync.config import ConfigError
from tests.notify_receivers import smtp_sink, webhook_receiver

SECRET = b"s3cret-shared-with-the-relay"


def note(**kw: object) -> Notification:
    args: dict[str, object] = {
        "id": "7:lan.nguyen:1.0",
        "event": "help",
        "request": 7,
        "lookup_code": "HO-261201-1004",
        "office": "000.00.14.H56",
        "kiosk": "kiosk-1",
        "staff_id": "lan.nguyen",
        "staff_name": "Nguyễn Thị Lan",
        "staff_email": "lan@example.vn",
        "message": "Tôi cần hỗ trợ",
        "received_at": "2026-12-01T09:15:02+07:00",
        "sent_at": "2026-12-01T09:15:03+07:00",
    }
    args.update(kw)
    return Notification(**args)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_signature_is_hmac_of_the_exact_body() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, body, header)
    assert not verify_signature(SECRET, body + b" ", header)
    assert not verify_signature(b"other", body, header)
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, "")


def test_webhook_delivers_signed_json_to_a_real_receiver() -> None:
    with webhook_receiver(SECRET) as recv:
        WebhookNotifier(recv.url, SECRET.decode()).send(note())
        assert recv.bad_signatures == 0
        assert len(recv.received) == 1
        got = recv.received[0]
        assert got["lookup_code"] == "HO-261201-1004"
        assert got["staff_name"] == "Nguyễn Thị Lan"
        assert got["id"] == "7:lan.nguyen:1.0"


def test_webhook_with_the_wrong_secret_is_refused_by_the_receiver() -> None:
    with webhook_receiver(SECRET) as recv:
        with pytest.raises(NotifyError, match="HTTP 401"):
            WebhookNotifier(recv.url, "not-the-secret").send(note())
        assert recv.bad_signatures == 1 and recv.received == []


def test_webhook_failures_raise_notify_error() -> None:
    with webhook_receiver(SECRET) as recv:
        recv.status = 500
        with pytest.raises(NotifyError, match="HTTP 500"):
            WebhookNotifier(recv.url, SECRET).send(note())
        recv.status = 204
        recv.hold = threading.Event()
        with pytest.raises(NotifyError, match="Timeout"):
            WebhookNotifier(recv.url, SECRET, timeout_s=0.3).send(note())
        recv.hold.set()
    with pytest.raises(NotifyError, match="ConnectError"):
        WebhookNotifier(f"http://127.0.0.1:{closed_port()}/x", SECRET).send(note())
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("ftp://example.vn/", SECRET)


def test_smtp_delivers_to_the_staff_member_and_the_team() -> None:
    with smtp_sink() as sink:
        SmtpNotifier(sink.host, sink.port, "aps@example.vn", to=["team@example.vn"]).send(note())
        assert len(sink.messages) == 1
        rcpt, msg = sink.messages[0]
        assert rcpt == ["lan@example.vn", "team@example.vn"]
        assert "HO-261201-1004" in msg["Subject"] and "Yêu cầu hỗ trợ" in msg["Subject"]
        text = msg.get_content()
        assert "Tôi cần hỗ trợ" in text and "Nguyễn Thị Lan" in text
        # No staff e-mail: the team only; nobody at all: a clear error.
        SmtpNotifier(sink.host, sink.port, "aps@example.vn", to=["team@example.vn"]).send(
            note(staff_email=None, event="home-visit", address="12 Lê Lợi")
        )
        assert sink.messages[1][0] == ["team@example.vn"]
        assert "thăm nhà" in sink.messages[1][1]["Subject"]
        with pytest.raises(NotifyError, match="no recipient"):
            SmtpNotifier(sink.host, sink.port, "aps@example.vn").send(note(staff_email=None))


def test_smtp_unreachable_raises_notify_error() -> None:
    with pytest.raises(NotifyError, match=r"smtp 127\.0\.0\.1"):
        SmtpNotifier("127.0.0.1", closed_port(), "aps@example.vn", timeout_s=2).send(note())


def test_fanout_succeeds_when_one_delivers_and_fails_when_none_does() -> None:
    with webhook_receiver(SECRET) as recv, smtp_sink() as sink:
        dead = SmtpNotifier("127.0.0.1", closed_port(), "aps@example.vn", timeout_s=2)
        FanoutNotifier([dead, WebhookNotifier(recv.url, SECRET)]).send(note())
        assert len(recv.received) == 1
        recv.status = 500
        with pytest.raises(NotifyError, match="HTTP 500"):
            FanoutNotifier([dead, WebhookNotifier(recv.url, SECRET)]).send(note())
        assert sink.messages == []


def test_notify_config_builds_the_notifiers_and_names_bad_fields(tmp_path) -> None:
    assert NotifySection().notifier() is None
    both = NotifySection(
        webhook_url="https://relay.example.vn/aps",
        webhook_secret="x" * 16,  # type: ignore[arg-type]
        smtp_host="127.0.0.1",
        smtp_sender="aps@example.vn",
    ).notifier()
    assert isinstance(both, FanoutNotifier)
    assert "webhook https://relay.example.vn/aps" in both.describe()
    cases = {
        'webhook_url = "https://relay.example.vn/aps"\n': "webhook_secret",
        'webhook_url = "https://relay.example.vn/aps"\nwebhook_secret = "short"\n': "16",
        'webhook_url = "relay.example.vn"\n': "webhook_url",
        'smtp_host = "mail.example.vn"\n': "smtp_sender",
        'smtp_to = ["not an address"]\n': "smtp_to",
        "smtp_port = 0\n": "smtp_port",
        "max_attempts = 0\n": "max_attempts",
        "colour = 1\n": "colour",
        'webhook_url = "http://relay.example.vn/aps"\nwebhook_secret = "0123456789abcdef"\n': (
            "clear text"
        ),
    }
    from central.config import load_central_config

    for text, needle in cases.items():
        path = tmp_path / "central.toml"
        path.write_text("[notify]\n" + text)
        with pytest.raises(ConfigError, match=needle):
            load_central_config(path)
    path = tmp_path / "central.toml"
    path.write_text(
        '[notify]\nwebhook_url = "https://relay.example.vn/aps"\n'
        'webhook_secret = "0123456789abcdef"\n[api]\npayment_secret = "fedcba9876543210"\n'
    )
    dumped = load_central_config(path).model_dump_json()
    assert "0123456789abcdef" not in dumped and "fedcba9876543210" not in dumped
    assert json.loads(dumped)["notify"]["webhook_secret"] == "**********"
    assert isinstance(CentralConfig().support.timezone, str)
    # Plain http is fine to this machine, and when explicitly allowed.
    assert NotifySection(webhook_url="http://127.0.0.1:9/x", webhook_secret="x" * 16).notifier()
    assert NotifySection(
        webhook_url="http://relay.lan/x", webhook_secret="x" * 16, webhook_allow_http=True
    ).notifier()
