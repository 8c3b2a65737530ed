"""Alert rules: the layers, the key=value parser (hypothesis), damaged rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central import audit
from central.fleet import alert_rules
from central.fleet.alert_rules import KINDS, RuleBook, RuleError, parse_assignments
from tests.pg import CentralDb


def test_layers_fall_through() -> None:
    book = RuleBook(
        {"offline": {"minutes": 10.0, "severity": "warning"}},
        [{"office": "HN01", "kind": "offline", "params": {"minutes": 3.0}, "enabled": None}],
    )
    hn01, hn02 = book.rule("HN01", "offline"), book.rule("HN02", "offline")
    assert (hn01.param("minutes"), hn01.severity) == (3.0, "warning")
    assert (hn02.param("minutes"), hn02.severity) == (10.0, "warning")
    assert book.rule(None, "cover-open").open_after_s == 60.0


@given(kind=st.sampled_from(sorted(KINDS)), pairs=st.lists(st.text(max_size=30), max_size=5))
def test_parser_refuses_with_a_rule_error_only(kind: str, pairs: list[str]) -> None:
    try:
        out = parse_assignments(kind, pairs)
    except RuleError as exc:
        assert exc.field and exc.message
    else:
        assert set(out) <= {
            "severity",
            "enabled",
            *alert_rules.COMMON_DEFAULTS,
            *KINDS[kind].params,
        }


@given(
    kind=st.sampled_from(sorted(KINDS)),
    value=st.floats(min_value=0, max_value=10_000_000, allow_nan=False),
)
def test_parser_round_trips_numbers(kind: str, value: float) -> None:
    assert parse_assignments(kind, [f"hold_down_s={value!r}"]) == {"hold_down_s": value}


@pytest.mark.parametrize(
    ("pair", "field", "words"),
    [
        ("minutes", "settings", "key=value"),
        ("minutes=abc", "minutes", "not a number"),
        ("minutes=-1", "offline.minutes", "from 0 to 10000000"),
        ("minutes=nan", "offline.minutes", "from 0 to"),
        ("severity=loud", "offline.severity", "info, warning, critical"),
        ("enabled=yes", "enabled", "true or false"),
        ("records=5", "offline.records", "not a setting of offline"),
    ],
)
def test_parser_errors_name_the_field(pair: str, field: str, words: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_assignments("offline", [pair])
    assert err.value.field == field and words in err.value.message


def test_set_rule_is_audited_and_a_damaged_row_is_ignored(central_db: CentralDb) -> None:
    conn = central_db.connect()
    alert_rules.set_rule(conn, "HN01", "offline", {"minutes": 2.0}, actor="cli:an", now=5.0)
    alert_rules.set_rule(conn, "HN01", "offline", {}, actor="cli:an", disable=True, now=6.0)
    rule = RuleBook.load(conn).rule("HN01", "offline")
    assert (rule.enabled, rule.param("minutes")) == (False, 2.0)
    assert len(audit.entries(conn, target="alert-rule:HN01:offline")) == 2
    conn.execute("UPDATE alert_rules SET params = ? WHERE kind = 'offline'", (json.dumps([1]),))
    conn.execute(
        "INSERT INTO alert_rules VALUES ('HN02', 'backlog', '{\"records\": -5}', NULL, 0, 'x')"
    )
    book = RuleBook.load(conn)  # neither row stops the engine
    assert book.rule("HN01", "offline").param("minutes") == 5.0
    assert book.rule("HN02", "backlog").param("records") == 200.0
    with pytest.raises(RuleError, match="office"):
        alert_rules.set_rule(conn, "", "offline", {}, actor="x", now=1.0)
    with pytest.raises(RuleError, match="unknown alert kind"):
        alert_rules.set_rule(conn, "HN01", "paper", {}, actor="x", now=1.0)


def test_readers_tolerate_a_database_without_the_table(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "empty.db")
    assert alert_rules.office_overrides(conn) == []
    assert len(alert_rules.effective_rules(conn)) == len(KINDS)
