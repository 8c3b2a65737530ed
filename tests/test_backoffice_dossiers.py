"""Central's dossier back office: lifecycle table, index, status changes, payments, duplicates."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import audit, backoffice_db, downlink_log
from central.backoffice_db import Target
from central.dossiers import (
    TransitionRefused,
    duplicates,
    get_dossier,
    project,
    record_payment,
    search_dossiers,
    set_status,
)
from central.staff_text import BackofficeError, Conflict, NotFound
from sync import dossier_status as ds
from sync.schemas import parse_datetime
from tests import identity as keyring
from tests.backoffice_records import AGENCY, OTHER_AGENCY, Kiosk, at, dossier_body
from tests.pg import CentralDb

CODE = f"{AGENCY}-261201-4001"
CODE2 = f"{AGENCY}-261201-4002"
OFFICE = downlink_log.office_audience(AGENCY)
STATUS_KEYS = {
    "code",
    "state",
    "paid",
    "paid_amount_vnd",
    "paid_at",
    "portal_code",
    "note",
    "changed_at",
    "due",
}


def _db(central_db: CentralDb) -> tuple[Target, sqlite3.Connection]:
    return central_db.target, central_db.connect()


def _empty(central_db: CentralDb) -> tuple[Target, sqlite3.Connection]:
    """For a hypothesis example: ``central_db`` with no records and no back-office rows
    (one database serves every example of a test, on both engines)."""
    db, conn = _db(central_db)
    with backoffice_db.transaction(conn):
        for table in (
            "records",
            "projection_positions",
            "dossier_index",
            "dossier_payments",
            "downlink",
            "audit",
        ):
            conn.execute(f"DELETE FROM {table}")
    return db, conn


# -- the lifecycle table (sans-I/O) ---------------------------------------------------


def test_every_state_has_a_row_a_label_and_terminal_states_are_final() -> None:
    assert set(ds.TRANSITIONS) == set(ds.STATES) == set(ds.LABELS_VI)
    for state, nxt in ds.TRANSITIONS.items():
        assert nxt <= set(ds.STATES) and state not in nxt
    assert {s for s in ds.STATES if ds.is_final(s)} == {"result-returned", "rejected", "withdrawn"}
    assert ds.label("received") == "Đã tiếp nhận"
    # Every state is reachable from submitted.
    seen, todo = {ds.INITIAL}, [ds.INITIAL]
    while todo:
        for n in ds.TRANSITIONS[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    assert seen == set(ds.STATES)


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from([*ds.STATES, "paid", "done", ""]), max_size=40))
def test_no_sequence_of_requests_reaches_a_state_the_table_does_not_allow(
    requests: list[str],
) -> None:
    state: ds.State = ds.INITIAL
    path = [state]
    for wanted in requests:
        try:
            new = ds.check_transition(CODE, state, wanted)
        except ds.UnknownState:
            assert wanted not in ds.STATES
            continue
        except ds.IllegalTransition as exc:
            assert wanted not in ds.TRANSITIONS[state] and wanted != state
            assert exc.allowed == sorted(ds.TRANSITIONS[state])
            assert CODE in str(exc) and wanted in str(exc)
            continue
        assert new == state or new in ds.TRANSITIONS[state]
        state = new
        path.append(state)
    for a, b in itertools.pairwise(path):
        assert a == b or b in ds.TRANSITIONS[a]


def test_portal_codes_file_is_validated() -> None:
    codes = ds.load_portal_codes()
    assert codes.code_of("submitted") == 1 and codes.code_of("received") == 2
    assert codes.code_of("result-returned") == 10 and codes.code_of("processing") is None
    assert codes.state_of(10) == "result-returned"
    with pytest.raises(ds.PortalCodesError, match="portal status code 7 is not in"):
        codes.state_of(7)
    bad = [
        ({"codes": {"done": 3}}, "unknown dossier state 'done'"),
        ({"codes": {"received": 2, "processing": 2}}, "both have code 2"),
        ({"codes": {"received": True}}, "expected a whole number"),
        ({"codes": {"received": "2"}}, "expected a whole number"),
        ({"codes": {"received": 10_000}}, "outside 0..9999"),
        ({"code": {}}, "unknown key"),
        ({}, "missing table"),
    ]
    for data, message in bad:
        with pytest.raises(ds.PortalCodesError, match=message):
            ds.parse_portal_codes(data, "test.toml")


def test_portal_codes_file_errors_name_the_file(tmp_path: Path) -> None:
    f = tmp_path / "codes.toml"
    f.write_text("[codes]\nreceived = \n", encoding="utf-8")
    with pytest.raises(ds.PortalCodesError, match=r"codes\.toml: not valid TOML"):
        ds.load_portal_codes(f)
    with pytest.raises(ds.PortalCodesError, match="cannot read"):
        ds.load_portal_codes(tmp_path / "absent.toml")
    f.write_text("[codes]\nprocessing = 3\n", encoding="utf-8")
    assert ds.load_portal_codes(f).state_of(3) == "processing"


# -- the index ------------------------------------------------------------------------


def test_the_index_reads_dossiers_as_the_collector_stored_them(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    k = Kiosk(db)
    k.send("dossier", dossier_body(CODE))
    k.send("feedback", {"category": "feedback", "message": "Nhanh gọn"})
    k.send(
        "dossier",
        dossier_body(
            f"{OTHER_AGENCY}-261202-1001",
            id_number="001099012345",
            received_at=at("2026-12-02T08:00:00+07:00", 0),
        ),
    )
    found = search_dossiers(conn, office=AGENCY)
    assert [d["code"] for d in found] == [CODE]
    d = found[0]
    assert d["kiosk"] == "k-office-01" and d["procedure"] == "1.001193"
    assert d["applicant_name"] == "Nguyễn Thị Ngọc Hường" and d["day"] == "2026-12-01"
    assert d["state"] == "submitted" and d["paid"] is False and d["fee_vnd"] == 8000
    assert d["received"] is True and d["due"] == "2026-12-04T17:00+07:00"
    assert [x["code"] for x in search_dossiers(conn, day="2026-12-02")] == [
        f"{OTHER_AGENCY}-261202-1001"
    ]
    assert [x["code"] for x in search_dossiers(conn, code=f"{AGENCY}-2612")] == [CODE]
    assert len(search_dossiers(conn, state="submitted")) == 2
    assert search_dossiers(conn, state="received") == []
    with pytest.raises(BackofficeError, match="unknown dossier state 'recieved'"):
        search_dossiers(conn, state="recieved")
    with pytest.raises(BackofficeError, match="day: '1/12/2026' is not a date"):
        search_dossiers(conn, day="1/12/2026")
    with pytest.raises(BackofficeError, match=r"limit: 0 is outside 1\.\.10000"):
        search_dossiers(conn, limit=0)
    # The catch-up is idempotent: nothing new, nothing done; another connection agrees.
    assert project(conn) == 0
    other = central_db.connect()
    assert project(other) == 0 and len(search_dossiers(other)) == 2
    got = get_dossier(conn, CODE)
    assert got["allowed_next"] == sorted(ds.TRANSITIONS["submitted"]) and got["payments"] == []
    with pytest.raises(NotFound, match=f"dossier {AGENCY}-261201-9999"):
        get_dossier(conn, f"{AGENCY}-261201-9999")
    with pytest.raises(BackofficeError, match="expected a national dossier code"):
        get_dossier(conn, "261201-1004")


# -- status changes -----------------------------------------------------------------------


def test_a_status_change_is_audited_and_flows_down_to_the_office(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    Kiosk(db).send("dossier", dossier_body(CODE))
    out = set_status(
        conn, CODE, "received", actor="cli:tester", note="  Mời ông/bà chờ kết quả\r\n"
    )
    assert out["changed"] is True and out["held"] is False and out["state"] == "received"
    assert out["portal_code"] == "2" and out["note"] == "Mời ông/bà chờ kết quả"
    items = downlink_log.current(conn, OFFICE, "dossier-status")
    assert [i.key for i in items] == [CODE]
    body = items[0].body
    assert set(body) == STATUS_KEYS
    assert body["state"] == "received" and body["paid"] is False and body["portal_code"] == "2"
    assert body["due"] == "2026-12-04T17:00+07:00" and parse_datetime(body["changed_at"])
    rows = audit.entries(conn, target=CODE)
    assert [(r["actor"], r["action"]) for r in rows] == [("cli:tester", "dossier.status")]
    assert rows[0]["detail"]["from"] == "submitted" and rows[0]["detail"]["to"] == "received"
    # The same push again changes nothing: no audit row, no new item.
    again = set_status(conn, CODE, "received", actor="cli:tester", note="Mời ông/bà chờ kết quả")
    assert again["changed"] is False
    assert len(audit.entries(conn, target=CODE)) == 1
    assert downlink_log.latest_cursor(conn) == out["cursor"]
    # An illegal step is refused, naming the code, the states and what may follow.
    with pytest.raises(TransitionRefused) as caught:
        set_status(conn, CODE, "result-returned", actor="cli:tester")
    message = str(caught.value)
    assert CODE in message and "'received'" in message and "'result-returned'" in message
    assert "processing" in message and caught.value.allowed == sorted(ds.TRANSITIONS["received"])
    assert isinstance(caught.value, Conflict)
    assert get_dossier(conn, CODE)["state"] == "received"
    assert len(audit.entries(conn, target=CODE)) == 1


def test_bad_status_requests_say_which_field_and_change_nothing(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    Kiosk(db).send("dossier", dossier_body(CODE))
    cases = [
        ({"state": "done"}, "unknown dossier state 'done'"),
        ({"note": "x" * 1001}, "note: 1001 characters, longer than 1000"),
        ({"note": "Đã nhận\u202e"}, "note: contains control or format character U\\+202E"),
        ({"actor": " "}, "actor: empty"),
        ({"portal_code": "3"}, "portal_code: 3 does not match state 'received'"),
        ({"portal_code": "x" * 40}, "portal_code: .* is not a portal status code"),
    ]
    for change, message in cases:
        args = {"state": "received", "actor": "cli:tester", **change}
        with pytest.raises(BackofficeError, match=message):
            set_status(conn, CODE, args.pop("state"), **args)  # type: ignore[arg-type]
    assert audit.entries(conn) == [] and downlink_log.latest_cursor(conn) == 0
    assert get_dossier(conn, CODE)["state"] == "submitted"


def test_a_status_before_the_record_is_held_and_the_record_fills_it_in(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    out = set_status(conn, CODE, "received", actor="backoffice")
    assert out["held"] is True and out["received"] is False and out["office"] == AGENCY
    assert downlink_log.current(conn, OFFICE, "dossier-status")[0].body["state"] == "received"
    held = search_dossiers(conn, state="received")
    assert [(d["code"], d["received"]) for d in held] == [(CODE, False)]
    pay = record_payment(
        conn,
        CODE,
        amount_vnd=8000,
        reference="FT26335001",
        paid_at="2026-12-01T09:20:00+07:00",
        actor="bank",
        source="bank",
    )
    assert pay["paid"] is True and pay["held"] is True
    # The kiosk was offline; its record arrives now.
    Kiosk(db).send("dossier", dossier_body(CODE))
    d = get_dossier(conn, CODE)
    assert d["received"] is True and d["state"] == "received" and d["paid"] is True
    assert d["kiosk"] == "k-office-01" and d["fee_vnd"] == 8000
    assert d["applicant_name"] == "Nguyễn Thị Ngọc Hường"
    body = downlink_log.current(conn, OFFICE, "dossier-status")[0].body
    assert body["due"] == "2026-12-04T17:00+07:00" and body["paid"] is True
    assert [r["action"] for r in audit.entries(conn, target=CODE)] == [
        "dossier.record-arrived",
        "dossier.payment",
        "dossier.status",
    ]


# -- payments -----------------------------------------------------------------------------


def _pay(conn: sqlite3.Connection, code: str, amount: int, ref: str) -> dict[str, object]:
    return record_payment(
        conn,
        code,
        amount_vnd=amount,
        reference=ref,
        paid_at="2026-12-01T10:00:00+07:00",
        actor="token:bank",
        source="bank",
    )


def test_a_replayed_bank_callback_records_nothing_twice(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    k = Kiosk(db)
    k.send("dossier", dossier_body(CODE, fee_vnd=8000))
    k.send("dossier", dossier_body(CODE2, fee_vnd=8000, id_number="001099012345"))
    part = _pay(conn, CODE, 3000, "REF-1")
    assert part["paid"] is False and part["paid_amount"] == 3000 and part["changed"] is True
    cursor = downlink_log.latest_cursor(conn)
    for _ in range(3):
        replay = _pay(conn, CODE, 3000, "REF-1")
        assert replay["replayed"] is True and replay["changed"] is False
    assert downlink_log.latest_cursor(conn) == cursor
    rest = _pay(conn, CODE, 5000, "REF-2")
    assert rest["paid"] is True and rest["paid_amount"] == 8000
    body = downlink_log.current(conn, OFFICE, "dossier-status", CODE)[0].body
    assert body["paid"] is True and body["paid_amount_vnd"] == 8000
    assert body["paid_at"] == "2026-12-01T10:00:00+07:00"
    with pytest.raises(Conflict, match=f"REF-1.*already recorded for dossier {CODE}"):
        _pay(conn, CODE2, 3000, "REF-1")
    with pytest.raises(Conflict, match="3000 VND"):
        _pay(conn, CODE, 3001, "REF-1")
    d = get_dossier(conn, CODE)
    assert [p["reference"] for p in d["payments"]] == ["REF-1", "REF-2"]
    assert [r["action"] for r in audit.entries(conn, target=CODE)] == ["dossier.payment"] * 2
    assert get_dossier(conn, CODE2)["paid"] is False
    for amount, ref, message in [
        (0, "R", r"amount_vnd: 0 is outside 1\.\."),
        (10**13, "R", "amount_vnd: .* is outside"),
        (True, "R", "amount_vnd: expected a whole number"),
        (100, "  ", "reference: empty"),
    ]:
        with pytest.raises(BackofficeError, match=message):
            _pay(conn, CODE2, amount, ref)
    with pytest.raises(BackofficeError, match=r"paid_at: .* UTC offset"):
        record_payment(
            conn,
            CODE2,
            amount_vnd=1,
            reference="R9",
            paid_at="2026-12-01T10:00:00",
            actor="a",
            source="bank",
        )


# -- duplicates ---------------------------------------------------------------------------


def test_likely_duplicate_filings_are_flagged(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    k = Kiosk(db)
    base = "2026-12-01T09:00:00+07:00"
    first = f"{AGENCY}-261201-4001"
    k.send("dossier", dossier_body(first, received_at=base))
    # Same citizen, same procedure, 10 minutes later: a likely duplicate.
    k.send("dossier", dossier_body(f"{AGENCY}-261201-4002", received_at=at(base, 10)))
    # Another procedure, another citizen, and the same pair two days later: not.
    k.send("dossier", dossier_body(f"{AGENCY}-261201-4003", procedure="2.000986"))
    k.send(
        "dossier", dossier_body(f"{AGENCY}-261201-4004", id_number="001099012345", received_at=base)
    )
    k.send("dossier", dossier_body(f"{AGENCY}-261203-4001", received_at=at(base, 2 * 1440)))
    # The kiosk says this filing follows one never confirmed (crash before the code showed).
    k.send(
        "dossier",
        dossier_body(
            f"{AGENCY}-261205-4001",
            id_number="079088000111",
            received_at=at(base, 4 * 1440),
            unconfirmed_before=f"{AGENCY}-261201-4004",
        ),
    )
    found = duplicates(conn)
    pairs = {(p["code"], p["duplicate_of"], p["reason"]) for p in found["pairs"]}
    assert pairs == {
        (f"{AGENCY}-261201-4002", first, "same-applicant-procedure"),
        (f"{AGENCY}-261205-4001", f"{AGENCY}-261201-4004", "unconfirmed-before"),
    }
    assert found["unconfirmed_before"] == 1
    same = next(p for p in found["pairs"] if p["reason"] == "same-applicant-procedure")
    assert same["apart_s"] == 600 and same["applicant_name"] == "Nguyễn Thị Ngọc Hường"
    assert get_dossier(conn, f"{AGENCY}-261201-4002")["duplicate_of"] == first
    assert get_dossier(conn, f"{AGENCY}-261203-4001")["duplicate_of"] is None
    # A wider window catches the filing two days later too.
    wide = duplicates(conn, window_s=3 * 86400)
    assert (f"{AGENCY}-261203-4001", f"{AGENCY}-261201-4002") in {
        (p["code"], p["duplicate_of"]) for p in wide["pairs"]
    }
    assert duplicates(conn, office=OTHER_AGENCY)["pairs"] == []
    # Staff withdraw the repeat: the pair is settled and leaves the list (--all shows it).
    set_status(conn, f"{AGENCY}-261201-4002", "withdrawn", actor="cli:staff", note="Nộp trùng")
    assert (f"{AGENCY}-261201-4002", first) not in {
        (p["code"], p["duplicate_of"]) for p in duplicates(conn)["pairs"]
    }
    assert (f"{AGENCY}-261201-4002", first) in {
        (p["code"], p["duplicate_of"]) for p in duplicates(conn, include_settled=True)["pairs"]
    }
    with pytest.raises(BackofficeError, match="window"):
        duplicates(conn, window_s=0)


# -- a stateful run on a real database -----------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(ds.STATES), min_size=1, max_size=12))
def test_status_requests_on_a_real_database_follow_the_table(
    central_db: CentralDb, requests: list[str]
) -> None:
    db, conn = _empty(central_db)
    Kiosk(db).send("dossier", dossier_body(CODE))
    model: ds.State = "submitted"
    changes = 0
    for wanted in requests:
        try:
            out = set_status(conn, CODE, wanted, actor="hypothesis")
        except TransitionRefused:
            assert wanted != model and wanted not in ds.TRANSITIONS[model]
            continue
        assert wanted == model or wanted in ds.TRANSITIONS[model]
        changes += bool(out["changed"])
        model = ds.parse_state(wanted)
    assert get_dossier(conn, CODE)["state"] == model
    assert len(audit.entries(conn, target=CODE)) == changes
    items = downlink_log.current(conn, OFFICE, "dossier-status", CODE)
    assert (items[0].body["state"] if items else "submitted") == model
    conn.close()  # one per example (the fixture closes any a failure left)


# -- concurrency --------------------------------------------------------------------------


def test_the_collector_ingesting_and_the_back_office_writing_do_not_fail(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    k = Kiosk(db)
    codes = [f"{AGENCY}-261201-{4000 + n}" for n in range(1, 41)]
    for code in codes[:10]:
        k.send("dossier", dossier_body(code))
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            for code in codes[10:]:
                k.send("dossier", dossier_body(code))
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=ingest)
    writer.start()
    for n, code in enumerate(codes):
        set_status(conn, code, "received", actor="cli:tester")
        if n % 3 == 0:
            _pay(conn, code, 8000, f"REF-{n}")
    writer.join(timeout=120)
    assert not writer.is_alive() and errors == []
    every = {d["code"]: d for d in search_dossiers(conn, limit=1000)}
    assert set(every) == set(codes)
    assert all(d["state"] == "received" and d["received"] for d in every.values())
    assert sum(d["paid"] for d in every.values()) == len(codes[::3])


def test_central_housekeeping_folds_records_with_the_configured_window(
    tmp_path: Path, central_db: CentralDb
) -> None:
    from central.config import load_central_config
    from central.service import CentralService

    cfg_path = tmp_path / "central.toml"
    cfg_path.write_text(
        "[central]\n"
        + central_db.central_toml(tmp_path / "central.db")
        + "\n[dossiers]\nduplicate_window_h = 72\n"
        + keyring.write_keys(tmp_path / "keys").central_toml(),
        encoding="utf-8",
    )
    service = CentralService(load_central_config(cfg_path))
    k = Kiosk(central_db.target)
    base = "2026-12-01T09:00:00+07:00"
    k.send("dossier", dossier_body(CODE, received_at=base))
    k.send("dossier", dossier_body(f"{AGENCY}-261203-4001", received_at=at(base, 2 * 1440)))
    k.send("feedback", {"category": "question", "message": "Hỏi", "lookup_code": "HT-261201-4001"})
    k.send("rating", {"level": "hai_long"})
    store = central_db.store()
    service.housekeep(store)
    store.close()
    conn = central_db.connect()
    rows = dict(conn.execute("SELECT code, duplicate_of FROM dossier_index").fetchall())
    assert rows == {CODE: None, f"{AGENCY}-261203-4001": CODE}  # 48 h apart, within 72 h
    assert conn.execute("SELECT count(*) FROM inquiries").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM rating_index").fetchone()[0] == 1
    assert service.project_backoffice() == 0  # nothing new


def test_a_bad_portal_code_file_is_a_config_error(tmp_path: Path) -> None:
    from central.config import load_central_config
    from sync.config import ConfigError

    codes = tmp_path / "codes.toml"
    codes.write_text("[codes]\nreceived = 2\nprocessing = 2\n", encoding="utf-8")
    cfg_path = tmp_path / "central.toml"
    cfg_path.write_text(f'[dossiers]\nportal_status_codes = "{codes}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="both have code 2"):
        load_central_config(cfg_path)
    codes.write_text("[codes]\nreceived = 2\nprocessing = 3\n", encoding="utf-8")
    cfg = load_central_config(cfg_path)
    assert cfg.dossiers.portal_codes().code_of("processing") == 3


def test_a_code_filed_twice_keeps_the_first_and_the_catch_up_pages(
    central_db: CentralDb, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from central import projection

    monkeypatch.setattr(projection, "BATCH", 1)  # read 4 rowids per query: many pages
    db, conn = _db(central_db)
    a, b = Kiosk(db, "k-a-01"), Kiosk(db, "k-b-01")
    downlink_log.assign_office(conn, "k-b-01", OTHER_AGENCY)
    first = a.send("dossier", dossier_body(CODE))
    for n in range(3):
        a.send("rating", {"level": "hai_long"})
        a.send("dossier", dossier_body(f"{AGENCY}-261201-{5000 + n}", id_number=f"00109901234{n}"))
    with caplog.at_level("WARNING", logger="aps.dossiers"):
        b.send("dossier", dossier_body(CODE, name="Kẻ Mạo Danh", id_number="079088000111"))
        assert len(search_dossiers(conn, limit=1000)) == 4
    d = get_dossier(conn, CODE)
    assert (d["kiosk"], d["record_id"]) == ("k-a-01", first.id)
    assert d["applicant_name"] == "Nguyễn Thị Ngọc Hường"
    text = caplog.text
    assert f"dossier code {CODE} filed twice" in text
    assert f"names office {AGENCY}, central has the kiosk at {OTHER_AGENCY}" in text


def test_payments_never_total_more_than_a_fee_can_be(
    central_db: CentralDb,
) -> None:
    from sync.schemas import FEE_VND_MAX

    _, conn = _db(central_db)
    _pay(conn, CODE, FEE_VND_MAX, "BIG-1")
    with pytest.raises(BackofficeError, match="would total"):
        _pay(conn, CODE, 1, "BIG-2")
    assert get_dossier(conn, CODE)["paid_amount"] == FEE_VND_MAX


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["A", "B", "C", "D"]), st.integers(1, 5000)),
        min_size=1,
        max_size=15,
    )
)
def test_replayed_and_new_payments_count_each_reference_once(
    central_db: CentralDb, calls: list[tuple[str, int]]
) -> None:
    db, conn = _empty(central_db)
    Kiosk(db).send("dossier", dossier_body(CODE, fee_vnd=8000))
    first: dict[str, int] = {}
    for ref, amount in calls:
        try:
            out = _pay(conn, CODE, amount, ref)
        except Conflict:
            assert ref in first and first[ref] != amount
            continue
        assert out["replayed"] is (ref in first)
        first.setdefault(ref, amount)
    d = get_dossier(conn, CODE)
    total = sum(first.values())
    assert d["paid_amount"] == total and d["paid"] is (total >= 8000)
    assert len(audit.entries(conn, target=CODE)) == len(first)
    body = downlink_log.current(conn, OFFICE, "dossier-status", CODE)[0].body
    assert body["paid_amount_vnd"] == total
    conn.close()


def test_two_back_office_writers_on_one_dossier_serialise(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    Kiosk(db).send("dossier", dossier_body(CODE))
    steps = ["received", "processing", "result-ready", "result-returned"]
    outcomes: list[list[str]] = [[], []]

    def staff(n: int) -> None:
        mine = central_db.connect()
        for state in steps:
            try:
                out = set_status(mine, CODE, state, actor=f"api:staff-{n}")
                outcomes[n].append("changed" if out["changed"] else "same")
            except TransitionRefused:
                outcomes[n].append("refused")
        mine.close()

    threads = [threading.Thread(target=staff, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    # Each step was changed by exactly one of them; nothing failed but legal refusals.
    assert sum(o.count("changed") for o in outcomes) == len(steps)
    assert get_dossier(conn, CODE)["state"] == "result-returned"
    assert len(audit.entries(conn, target=CODE)) == len(steps)
