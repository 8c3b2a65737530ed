"""Remote configuration: the settings schema (sync/remote_config.py) and the kiosk's service
on a real outbox and inbox: stored with the cursor, refused with the field, reported, and
never touching the records queued in the outbox."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.inbox import Inbox
from edge_agent.services.remote_config import RemoteConfigService
from sync.downlink import Item
from sync.outbox import Outbox
from sync.remote_config import (
    SETTINGS,
    RemoteConfigError,
    check_item,
    check_setting,
    digest,
    item_body,
    parse_setting,
)
from sync.schemas import check_body
from tests.stack import dossier_body

KIOSK = "k-office-01"


@pytest.mark.parametrize(
    ("text", "field", "needle"),
    [
        ("session_idle_s=10", "session_idle_s", "30 to 1800"),
        ("session_idle_s=abc", "session_idle_s", "whole number"),
        ("heartbeat_interval_s=99999", "heartbeat_interval_s", "10 to 3600"),
        ("log_level=loud", "log_level", "debug, info, warning, error"),
        ("office_hours=17:00-07:30", "office_hours", "before the closing"),
        ("office_hours=7h-17h", "office_hours", "HH:MM-HH:MM"),
        ("screen_notice_vi=a\u200bb", "screen_notice_vi", "invisible"),
        ("mqtt.host=evil.example", "mqtt.host", "cannot be set remotely"),
        ("identity=x", "identity", "settable: session_idle_s"),
        ("noequals", "noequals", "key=value"),
    ],
)
def test_bad_settings_name_the_field_and_the_rule(text: str, field: str, needle: str) -> None:
    with pytest.raises(RemoteConfigError, match=needle) as info:
        parse_setting(text)
    assert info.value.field == field


def test_good_settings_parse() -> None:
    assert parse_setting("session_idle_s=120") == ("session_idle_s", 120)
    assert parse_setting("screen_notice_vi=Nghỉ trưa 11:30-13:00") == (
        "screen_notice_vi",
        "Nghỉ trưa 11:30-13:00",
    )


@given(name=st.sampled_from([*SETTINGS, "mqtt_host", ""]), value=st.from_type(object))
def test_check_setting_only_ever_refuses_with_a_remote_config_error(name: str, value: Any) -> None:
    try:
        assert check_setting(name, value) == value
    except RemoteConfigError as exc:
        assert exc.field == name


@given(st.text(max_size=40))
def test_parse_setting_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(RemoteConfigError):
        parse_setting(text)


def test_a_tampered_item_is_refused_by_digest() -> None:
    body = item_body(4, {"log_level": "info"})
    body["settings"]["log_level"] = "debug"
    with pytest.raises(RemoteConfigError, match="digest"):
        check_item(body)
    assert check_item(item_body(4, {"log_level": "info"}))[0] == 4


class Applied:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, settings: dict[str, Any]) -> None:
        self.seen.append(settings)


def _setup(tmp_path: Path) -> tuple[Outbox, Inbox, RemoteConfigService, Applied]:
    outbox = Outbox(tmp_path / "agent.db", KIOSK)
    inbox = Inbox(outbox)
    applied = Applied()
    service = RemoteConfigService(outbox, applied)
    service.install(inbox)
    return outbox, inbox, service, applied


def _reports(outbox: Outbox) -> list[dict[str, Any]]:
    out = [r["body"] for r in outbox.records() if r["kind"] == "config"]
    for body in out:
        check_body("config", body)
    return out


def test_a_config_applied_while_the_outbox_holds_records_loses_none(tmp_path: Path) -> None:
    outbox, inbox, service, applied = _setup(tmp_path)
    ids = [outbox.add("dossier", dossier_body(i)).id for i in range(5)]
    inbox.apply(
        [Item(cursor=1, kind="config", key="agent", body=item_body(1, {"session_idle_s": 90}))], 1
    )
    assert applied.seen[-1] == {"session_idle_s": 90}
    assert service.version_text() == "1"
    queued = [r["id"] for r in outbox.records("queued") if r["kind"] == "dossier"]
    assert queued == ids
    assert _reports(outbox) == [
        {"version": 1, "digest": digest({"session_idle_s": 90}), "state": "applied"}
    ]
    outbox.close()


def test_a_bad_config_is_refused_reported_and_the_last_good_kept(tmp_path: Path) -> None:
    outbox, inbox, service, _ = _setup(tmp_path)
    good = item_body(1, {"log_level": "info"})
    inbox.apply([Item(cursor=1, kind="config", key="agent", body=good)], 1)
    bad = {"version": 2, "digest": "0" * 64, "settings": {"log_level": "info", "mqtt_host": "x"}}
    inbox.apply([Item(cursor=2, kind="config", key="agent", body=bad)], 2)
    assert service.current() == (1, good["digest"], {"log_level": "info"})
    refused = _reports(outbox)[-1]
    assert refused["state"] == "refused" and refused["field"] == "mqtt_host"
    assert refused["version"] == 2 and "cannot be set remotely" in refused["reason"]
    assert inbox.cursor() == 2  # the refusal does not hold the downlink back
    outbox.close()


def test_a_report_pending_when_the_agent_died_is_sent_after_restart(tmp_path: Path) -> None:
    outbox, inbox, _, _ = _setup(tmp_path)
    inbox.on_applied.clear()  # the agent "dies" between the page's commit and the report
    inbox.apply([Item(cursor=1, kind="config", key="agent", body=item_body(1, {}))], 1)
    assert _reports(outbox) == []
    outbox.close()
    outbox = Outbox(tmp_path / "agent.db", KIOSK)
    again = RemoteConfigService(outbox, Applied())
    assert again.flush_reports() == 1 and _reports(outbox)[0]["state"] == "applied"
    assert again.version_text() == "1"
    outbox.close()
