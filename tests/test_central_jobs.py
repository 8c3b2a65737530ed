"""Central's jobs: create, list, show, cancel, events, audit, and kiosk reports folded from
records that went through the real collector (classify, schema, store)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central import audit, backoffice_db, downlink_log
from central.backoffice_db import Target
from central.fleet import jobs
from sync.envelope import Record, records_topic
from sync.ids import new_stream_id, new_ulid
from sync.jobs import JobError, JobState
from sync.schemas import SchemaError, check_body
from tests import identity as keyring
from tests.backoffice_records import AGENCY, Kiosk
from tests.pg import CentralDb

K1 = "k-office-01"
K2 = "k-office-02"


def _db(central_db: CentralDb) -> tuple[Target, sqlite3.Connection]:
    db = central_db.target
    conn = central_db.connect()
    with backoffice_db.transaction(conn):
        downlink_log.assign_office(conn, K1, AGENCY)
        downlink_log.assign_office(conn, K2, AGENCY)
    return db, conn


def _report(job: str, state: str, **kw: Any) -> dict[str, Any]:
    return {"job": job, "kind": "selftest", "state": state, **kw}


def test_create_queues_one_job_per_kiosk_with_its_order_and_audit(central_db: CentralDb) -> None:
    _, conn = _db(central_db)
    made = jobs.create(conn, "selftest", office=AGENCY, actor="cli:admin", deadline_s=600)
    assert sorted(j.kiosk for j in made) == [K1, K2]
    for job in made:
        order = downlink_log.current(conn, downlink_log.kiosk_audience(job.kiosk), "job", job.id)
        assert order[0].body["kind"] == "selftest" and order[0].body["args"] == {}
        (row,) = audit.entries(conn, target=f"job:{job.id}")
        assert row["action"] == "job.create" and row["actor"] == "cli:admin"
        assert jobs.get_job(conn, job.id).state is JobState.QUEUED  # type: ignore[union-attr]
    assert [j.id for j in jobs.list_jobs(conn, kiosk=K1)] == [made[0].id]
    assert jobs.list_jobs(conn, offices=["nowhere"]) == []
    assert len(jobs.list_jobs(conn, states=["queued"])) == 2


@pytest.mark.parametrize(
    ("kind", "kw", "needle"),
    [
        ("format-disk", {"kiosks": [K1]}, "unknown; one of"),
        ("selftest", {}, "no kiosk"),
        ("selftest", {"office": "000.99"}, "knows no kiosk"),
        ("selftest", {"kiosks": [K1], "deadline_s": 5}, "30 to"),
        ("selftest", {"kiosks": [K1], "args": {"Bad": "x"}}, "args.Bad"),
        ("selftest", {"kiosks": [K1], "args": {"a": "x" * 201}}, "200 characters"),
    ],
)
def test_bad_creates_name_the_problem(
    central_db: CentralDb, kind: str, kw: dict[str, Any], needle: str
) -> None:
    _, conn = _db(central_db)
    with pytest.raises(JobError, match=needle):
        jobs.create(conn, kind, actor="cli:admin", **kw)
    assert jobs.list_jobs(conn) == []


def test_reports_through_the_collector_move_the_job_and_audit_the_result(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    (job,) = jobs.create(conn, "selftest", kiosks=[K1], actor="cli:admin")
    kiosk = Kiosk(db, K1)
    kiosk.send("job", _report(job.id, "in-progress", step="started"))
    assert jobs.get_job(conn, job.id).state is JobState.IN_PROGRESS  # type: ignore[union-attr]
    kiosk.send("job", _report(job.id, "succeeded", result={"checks": 3, "ok": True}))
    done = jobs.get_job(conn, job.id)
    assert done is not None and done.state is JobState.SUCCEEDED
    assert done.result == {"checks": 3, "ok": True}
    actions = [e["action"] for e in audit.entries(conn, target=f"job:{job.id}")]
    assert actions == ["job.succeeded", "job.create"]
    assert [e["event"] for e in jobs.job_events(conn, job.id)] == ["create", "start", "succeed"]


def test_another_kiosk_cannot_report_on_a_job_not_its_own(central_db: CentralDb) -> None:
    db, conn = _db(central_db)
    (job,) = jobs.create(conn, "selftest", kiosks=[K1], actor="cli:admin")
    Kiosk(db, K2).send("job", _report(job.id, "succeeded"))
    assert jobs.get_job(conn, job.id).state is JobState.QUEUED  # type: ignore[union-attr]
    assert [e["event"] for e in jobs.job_events(conn, job.id)] == ["create"]


def test_a_job_that_never_reports_times_out_at_read_time_and_is_persisted(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    (job,) = jobs.create(conn, "selftest", kiosks=[K1], actor="cli:admin", deadline_s=60, now=1e9)
    assert jobs.get_job(conn, job.id, now=1e9 + 59).state is JobState.QUEUED  # type: ignore[union-attr]
    assert jobs.get_job(conn, job.id, now=1e9 + 61).state is JobState.TIMED_OUT  # type: ignore[union-attr]
    assert audit.entries(conn, target=f"job:{job.id}")[0]["action"] == "job.timed-out"
    # a late success changes nothing: timed-out is terminal
    Kiosk(db, K1).send("job", _report(job.id, "succeeded"))
    assert jobs.get_job(conn, job.id).state is JobState.TIMED_OUT  # type: ignore[union-attr]
    assert jobs.job_events(conn, job.id)[-1]["applied"] is False


def test_cancel_before_start_supersedes_the_order_and_is_audited(central_db: CentralDb) -> None:
    db, conn = _db(central_db)
    (job,) = jobs.create(conn, "selftest", kiosks=[K1], actor="cli:admin")
    cancelled = jobs.cancel_job(conn, job.id, actor="cli:boss")
    assert cancelled.state is JobState.CANCELLED
    (order,) = downlink_log.current(conn, downlink_log.kiosk_audience(K1), "job", job.id)
    assert order.body["cancel"] is True
    assert audit.entries(conn, target=f"job:{job.id}")[0]["actor"] == "cli:boss"
    with pytest.raises(JobError, match="only a queued job"):
        jobs.cancel_job(conn, job.id, actor="cli:boss")
    (started,) = jobs.create(conn, "selftest", kiosks=[K1], actor="cli:admin")
    Kiosk(db, K1).send("job", _report(started.id, "in-progress"))
    with pytest.raises(JobError, match="in-progress"):
        jobs.cancel_job(conn, started.id, actor="cli:boss")
    with pytest.raises(JobError, match="no such job"):
        jobs.cancel_job(conn, new_ulid(), actor="cli:boss")


def _raw(kiosk: str, body: Any) -> bytes:
    rec = Record(
        kind="job",
        kiosk=kiosk,
        stream=new_stream_id(),
        seq=1,
        id=new_ulid(),
        created="2026-12-02T09:00:00.000+07:00",
        body=body,
    )
    return rec.encode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"job": "nope", "kind": "selftest", "state": "succeeded"}, "body.job"),
        ({"job": new_ulid(), "kind": "selftest", "state": "exploded"}, "body.state"),
        (
            {"job": new_ulid(), "kind": "selftest", "state": "failed", "error": "e" * 501},
            "body.error",
        ),
        (
            {
                "job": new_ulid(),
                "kind": "selftest",
                "state": "succeeded",
                "result": {f"k{i}": i for i in range(33)},
            },
            "body.result",
        ),
    ],
)
def test_garbage_and_oversized_reports_are_dead_lettered_naming_the_field(
    central_db: CentralDb, body: dict[str, Any], field: str
) -> None:
    _db(central_db)
    store = central_db.store()
    try:
        result = keyring.process_batch(store, [(records_topic(K1), _raw(K1, body))])
        assert result.outcome.stored == 0
        (dead,) = store.dead_letters()
        assert field in dead["reason"], dead["reason"]
    finally:
        store.close()


def test_the_state_is_derived_at_read_time_even_before_anything_persists_it() -> None:
    job = jobs.Job(
        id=new_ulid(),
        kiosk=K1,
        office=AGENCY,
        kind="selftest",
        args={},
        stored_state=JobState.IN_PROGRESS,
        actor="cli:a",
        created_at=100.0,
        deadline_at=160.0,
        now=161.0,
    )
    assert job.state is JobState.TIMED_OUT and job.state_at(159.0) is JobState.IN_PROGRESS
    assert job.to_json_dict()["state"] == "timed-out"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "job": st.just(new_ulid()) | st.text(max_size=30),
            "kind": st.sampled_from(["selftest", "Bad kind"]),
            "state": st.sampled_from(["in-progress", "succeeded", "failed", "??"]),
            "step": _json,
            "detail": _json,
            "error": _json,
            "result": _json,
        },
    )
)
def test_any_report_body_is_accepted_or_refused_with_a_schema_error(body: dict[str, Any]) -> None:
    try:
        check_body("job", body)
    except SchemaError as exc:
        assert exc.problems  # names the field
