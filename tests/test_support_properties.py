"""Properties: the payment notice parser and the support projection's catch-up."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import backoffice_db, payments, support
from tests.pg import CentralDb
from tests.support_helpers import ingest, open_db, support_body

VALID = {
    "reference": "VCB-20261201-0001",
    "dossier_code": "000.00.14.H56-261201-1001",
    "amount_vnd": 50000,
    "paid_at": "2026-12-01T10:00:00+07:00",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(raw=st.binary(max_size=300))
def test_any_bytes_parse_or_raise_payment_error(raw: bytes) -> None:
    try:
        notice = payments.parse_notice(raw)
    except payments.PaymentError as exc:
        assert exc.field and exc.message
    else:
        assert notice.amount_vnd > 0


@given(key=st.sampled_from(sorted(VALID)), value=json_values)
def test_one_field_replaced_parses_only_if_still_valid(key: str, value: object) -> None:
    body = {**VALID, key: value}
    raw = json.dumps(body).encode()
    try:
        notice = payments.parse_notice(raw)
    except payments.PaymentError as exc:
        assert exc.field == key
    else:
        assert getattr(notice, key) == value


def test_oversized_notice_refused() -> None:
    raw = json.dumps({**VALID, "pad": "x" * payments.MAX_CALLBACK_BYTES}).encode()
    with pytest.raises(payments.PaymentError, match="at most"):
        payments.parse_notice(raw)


# Each step: store some records (kinds mixed) or project with some batch size.
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("store"),
            st.lists(st.sampled_from(["support", "rating"]), min_size=1, max_size=5),
        ),
        st.tuples(st.just("project"), st.integers(1, 4)),
    ),
    max_size=12,
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps)
def test_projection_skips_nothing_and_repeats_nothing(central_db: CentralDb, plan: list) -> None:  # type: ignore[type-arg]
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    # One database for every example (on both engines): each starts with no records.
    with backoffice_db.transaction(conn):
        for table in ("records", "support_requests", "support_progress"):
            conn.execute(f"DELETE FROM {table}")
    stored: list[str] = []
    projected = 0
    try:
        for step in plan:
            if step[0] == "store":
                for kind in step[1]:
                    if kind == "support":
                        stored.append(ingest(db, "kiosk-1", "support", support_body()))
                    else:
                        ingest(db, "kiosk-1", "rating", {"level": "hai_long"})
            else:
                projected += support.project(conn, limit=step[1])
        projected += support.project(conn, limit=3)
        ids = [r.record_id for r in support.list_requests(conn, limit=1000, catch_up=False)]
        assert projected == len(stored)
        assert sorted(ids) == sorted(stored) and len(set(ids)) == len(ids)
    finally:
        conn.close()
