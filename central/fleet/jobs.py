"""Remote jobs at central: the jobs table, creating, listing, cancelling, and the kiosks' reports.

Theory of operation
-------------------
:func:`create` stores one job per kiosk (``queued``, with ``deadline_at``), its
audit row and its **job order** in the kiosk's downlink log (audience
``kiosk:<id>``, item kind ``job``, key = job id), all in one transaction: the
nudger tells the kiosk within a second, and a kiosk that is offline gets the
order on its next connect (docs/jobs.md).

The kiosk answers with ``job`` records (one per transition). They arrive
through the collector like every record (signed, ingested once, acked after
commit) and are folded here by :func:`project`, a catch-up over the records
table (:mod:`central.projection`): every public reader calls it first. Each
report becomes a ``job_events`` row; the job's state moves only through
:func:`sync.jobs.next_state`, so an out-of-order, repeated or late report
changes nothing it should not (a report of a job already cancelled or timed
out is kept as an event, ``applied = 0``). A report whose verified sender is
not the job's kiosk is refused and logged: a kiosk speaks only for itself.

Deadlines are evaluated at read time (:meth:`Job.state_at`): a job still
queued or in progress after ``deadline_at`` *reads* ``timed-out`` whether or
not anything persisted it. :func:`expire_due` persists those transitions (and
audits them); the projection runs it before folding, so a report arriving
after the deadline cannot resurrect the job.

Cancelling (:func:`cancel_job`) is allowed only while the job is ``queued``
at central. It supersedes the order in the downlink log with a ``cancel``
order; a kiosk that had already started reports on, and those reports are
kept as events of the cancelled job.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from central import audit, downlink_log, projection
from sync.downlink import check_item_size
from sync.ids import new_ulid
from sync.jobs import (
    ACTIVE,
    DEFAULT_DEADLINE_S,
    JOB_KINDS,
    JOB_REPORT,
    MAX_DEADLINE_S,
    MIN_DEADLINE_S,
    TERMINAL,
    IllegalTransition,
    JobError,
    JobEvent,
    JobState,
    can_cancel,
    check_args,
    next_state,
    order_body,
    report_event,
)

log = logging.getLogger("aps.central.jobs")

PROJECTION = "jobs"
ORDER_KIND = "job"
RECORD_KIND = "job"
MAX_LIST = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kiosk TEXT NOT NULL,
    office TEXT,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at REAL NOT NULL,
    deadline_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    step TEXT,
    detail TEXT,
    error TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_kiosk ON jobs (kiosk, created_at);
CREATE INDEX IF NOT EXISTS jobs_active ON jobs (state, deadline_at)
    WHERE state IN ('queued', 'in-progress');
CREATE TABLE IF NOT EXISTS job_events (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    at REAL NOT NULL,
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    state TEXT NOT NULL,
    applied INTEGER NOT NULL,
    step TEXT,
    detail TEXT,
    record_id TEXT
);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job, n);
CREATE UNIQUE INDEX IF NOT EXISTS job_events_record ON job_events (record_id)
    WHERE record_id IS NOT NULL;
"""

_COLUMNS = (
    "id, kiosk, office, kind, args, state, actor, created_at, deadline_at, started_at,"
    " finished_at, step, detail, error, result"
)


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


@dataclass(frozen=True, kw_only=True)
class Job:
    id: str
    kiosk: str
    office: str | None
    kind: str
    args: dict[str, str]
    stored_state: JobState
    actor: str
    created_at: float
    deadline_at: float
    started_at: float | None = None
    finished_at: float | None = None
    step: str | None = None
    detail: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    now: float = field(default=0.0, compare=False)

    @property
    def state(self) -> JobState:
        """The state as read at ``now`` (a job past its deadline reads timed-out)."""
        return self.state_at(self.now)

    def state_at(self, now: float) -> JobState:
        if self.stored_state in ACTIVE and now > self.deadline_at:
            return JobState.TIMED_OUT
        return self.stored_state

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kiosk": self.kiosk,
            "office": self.office,
            "kind": self.kind,
            "args": self.args,
            "state": self.state.value,
            "actor": self.actor,
            "created_at": _iso(self.created_at),
            "deadline_at": _iso(self.deadline_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "step": self.step,
            "detail": self.detail,
            "error": self.error,
            "result": self.result,
        }


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _job(row: Sequence[Any], now: float) -> Job:
    (jid, kiosk, office, kind, args, state, actor, created, deadline, started, finished) = row[:11]
    step, detail, error, result = row[11:]
    return Job(
        id=jid,
        kiosk=kiosk,
        office=office,
        kind=kind,
        args=json.loads(args),
        stored_state=JobState(state),
        actor=actor,
        created_at=created,
        deadline_at=deadline,
        started_at=started,
        finished_at=finished,
        step=step,
        detail=detail,
        error=error,
        result=None if result is None else json.loads(result),
        now=now,
    )


def _event(
    conn: sqlite3.Connection,
    job: str,
    *,
    at: float,
    source: str,
    event: JobEvent | str,
    state: JobState,
    applied: bool,
    step: str | None = None,
    detail: str | None = None,
    record_id: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO job_events (job, at, source, event, state, applied, step, detail,"
        " record_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (job, at, source, str(event), state.value, int(applied), step, detail, record_id),
    )


def _deadline_text(deadline_at: float) -> str:
    return datetime.fromtimestamp(deadline_at, UTC).isoformat(timespec="seconds")


# -- creating and cancelling ---------------------------------------------------------------
def create(
    conn: sqlite3.Connection,
    kind: str,
    *,
    kiosks: Iterable[str] = (),
    office: str | None = None,
    args: dict[str, Any] | None = None,
    deadline_s: int = DEFAULT_DEADLINE_S,
    actor: str,
    now: float | None = None,
) -> list[Job]:
    """Queue ``kind`` on each of ``kiosks`` (or every kiosk of ``office``); one job per kiosk.

    Raises :class:`sync.jobs.JobError` naming what is wrong (an unknown kind, bad
    arguments, a deadline out of bounds, an office with no kiosk).
    """
    at = time.time() if now is None else now
    if kind not in JOB_KINDS:
        raise JobError(f"job kind {kind!r}: unknown; one of {', '.join(JOB_KINDS)}")
    clean = check_args(kind, args or {})
    if not MIN_DEADLINE_S <= deadline_s <= MAX_DEADLINE_S:
        raise JobError(f"deadline {deadline_s} s: must be {MIN_DEADLINE_S} to {MAX_DEADLINE_S} s")
    targets = sorted(set(kiosks))
    if office is not None:
        targets = sorted(
            set(targets) | downlink_log.kiosks_of(conn, [downlink_log.office_audience(office)])
        )
        if not targets:
            raise JobError(
                f"office {office!r}: central knows no kiosk there "
                "(aps-central kiosk offices lists them)"
            )
    if not targets:
        raise JobError("no kiosk: give --kiosk K or --office O")
    deadline_at = at + deadline_s
    made: list[Job] = []
    with projection.transaction(conn):
        for kiosk in targets:
            jid = new_ulid()
            kiosk_office = downlink_log.office_of(conn, kiosk)
            body = order_body(jid, kind, clean, _deadline_text(deadline_at))
            check_item_size(ORDER_KIND, jid, body)
            conn.execute(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES"
                " (?, ?, ?, ?, ?, 'queued', ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL)",
                (jid, kiosk, kiosk_office, kind, json.dumps(clean), actor, at, deadline_at),
            )
            _event(
                conn,
                jid,
                at=at,
                source=actor,
                event="create",
                state=JobState.QUEUED,
                applied=True,
            )
            audit.record(
                conn,
                actor,
                "job.create",
                f"job:{jid}",
                {"kind": kind, "kiosk": kiosk, "args": clean, "deadline_s": deadline_s},
                now=at,
            )
            downlink_log.append(
                conn, downlink_log.kiosk_audience(kiosk), ORDER_KIND, jid, body, now=at
            )
            made.append(
                Job(
                    id=jid,
                    kiosk=kiosk,
                    office=kiosk_office,
                    kind=kind,
                    args=clean,
                    stored_state=JobState.QUEUED,
                    actor=actor,
                    created_at=at,
                    deadline_at=deadline_at,
                    now=at,
                )
            )
    return made


def cancel_job(
    conn: sqlite3.Connection, job_id: str, *, actor: str, now: float | None = None
) -> Job:
    """Cancel a job that has not started; :class:`JobError` says why not otherwise."""
    at = time.time() if now is None else now
    project(conn, now=at)
    with projection.transaction(conn):
        job = _get(conn, job_id, at)
        if job is None:
            raise JobError(f"job {job_id!r}: no such job (aps-central job list)")
        state = job.state_at(at)
        if not can_cancel(state):
            raise JobError(f"job {job_id} is {state.value}: only a queued job can be cancelled")
        new = next_state(state, JobEvent.CANCEL)
        conn.execute(
            "UPDATE jobs SET state = ?, finished_at = ? WHERE id = ?", (new.value, at, job_id)
        )
        _event(conn, job_id, at=at, source=actor, event=JobEvent.CANCEL, state=new, applied=True)
        audit.record(conn, actor, "job.cancel", f"job:{job_id}", {"kind": job.kind}, now=at)
        body = order_body(job_id, job.kind, job.args, _deadline_text(job.deadline_at), cancel=True)
        downlink_log.append(
            conn, downlink_log.kiosk_audience(job.kiosk), ORDER_KIND, job_id, body, now=at
        )
    found = get_job(conn, job_id, now=at)
    assert found is not None
    return found


# -- reading ---------------------------------------------------------------------------------
def _get(conn: sqlite3.Connection, job_id: str, now: float) -> Job | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _job(row, now)


def get_job(conn: sqlite3.Connection, job_id: str, *, now: float | None = None) -> Job | None:
    at = time.time() if now is None else now
    project(conn, now=at)
    return _get(conn, job_id, at)


def list_jobs(
    conn: sqlite3.Connection,
    *,
    kiosk: str | None = None,
    offices: Iterable[str] | None = None,
    states: Iterable[str] | None = None,
    limit: int = 100,
    now: float | None = None,
) -> list[Job]:
    """Jobs, newest first, filtered by kiosk, offices and (read-time) states."""
    at = time.time() if now is None else now
    project(conn, now=at)
    wanted = None if states is None else {JobState(s) for s in states}
    sql = f"SELECT {_COLUMNS} FROM jobs"
    where: list[str] = []
    params: list[Any] = []
    if kiosk is not None:
        where.append("kiosk = ?")
        params.append(kiosk)
    if offices is not None:
        office_list = list(offices)
        where.append(f"office IN ({','.join('?' for _ in office_list)})")
        params.extend(office_list)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC"
    out: list[Job] = []
    for row in conn.execute(sql, params):
        job = _job(row, at)
        if wanted is None or job.state in wanted:
            out.append(job)
            if len(out) >= min(limit, MAX_LIST):
                break
    return out


def job_events(conn: sqlite3.Connection, job_id: str) -> list[dict[str, Any]]:
    """Every event of one job, oldest first (created, reports, cancel, expiry)."""
    project(conn)
    rows = conn.execute(
        "SELECT n, at, source, event, state, applied, step, detail FROM job_events"
        " WHERE job = ? ORDER BY n",
        (job_id,),
    ).fetchall()
    return [
        {
            "n": n,
            "at": _iso(at),
            "source": source,
            "event": event,
            "state": state,
            "applied": bool(applied),
            "step": step,
            "detail": detail,
        }
        for n, at, source, event, state, applied, step, detail in rows
    ]


# -- deadlines and reports ---------------------------------------------------------------------
def expire_due(conn: sqlite3.Connection, *, now: float | None = None) -> int:
    """Persist ``timed-out`` for every active job past its deadline (audited); how many."""
    at = time.time() if now is None else now
    due = conn.execute(
        "SELECT id, state, kind, kiosk FROM jobs"
        " WHERE state IN ('queued', 'in-progress') AND deadline_at < ?",
        (at,),
    ).fetchall()
    if not due:
        return 0
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN IMMEDIATE")
    try:
        for jid, state, kind, kiosk in due:
            new = next_state(JobState(state), JobEvent.EXPIRE)
            conn.execute(
                "UPDATE jobs SET state = ?, finished_at = ? WHERE id = ? AND state = ?",
                (new.value, at, jid, state),
            )
            _event(
                conn, jid, at=at, source="central", event=JobEvent.EXPIRE, state=new, applied=True
            )
            audit.record(
                conn,
                "central",
                "job.timed-out",
                f"job:{jid}",
                {"kind": kind, "kiosk": kiosk},
                now=at,
            )
        if own:
            conn.execute("COMMIT")
    except BaseException:
        if own and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(due)


def project(conn: sqlite3.Connection, *, now: float | None = None) -> int:
    """Fold the ``job`` records central received since the last call; returns how many."""
    at = time.time() if now is None else now
    expire_due(conn, now=at)
    return projection.catch_up(conn, PROJECTION, lambda: _fold(conn, at))


def _fold(conn: sqlite3.Connection, now: float) -> int:
    expire_due(conn, now=now)
    done = 0
    for row in projection.new_records(conn, PROJECTION, (RECORD_KIND,)):
        try:
            body = json.loads(row.body)
            JOB_REPORT.validate_python(body)
        except (ValueError, ValidationError) as exc:  # schema-checked at ingest: no
            log.error("job record %s/%s not folded: %s", row.kiosk, row.id, exc)
            continue
        apply_report(conn, row.kiosk, body, record_id=row.id, at=row.received_at)
        done += 1
    return done


def apply_report(
    conn: sqlite3.Connection,
    kiosk: str,
    body: dict[str, Any],
    *,
    record_id: str | None,
    at: float,
) -> bool:
    """One kiosk report into the jobs table (inside the caller's transaction); applied?"""
    job = _get(conn, body["job"], at)
    if job is None:
        log.warning("kiosk %s reported on unknown job %s; ignored", kiosk, body["job"])
        return False
    if job.kiosk != kiosk:
        log.warning(
            "kiosk %s reported on job %s of kiosk %s; refused (a kiosk speaks only for itself)",
            kiosk,
            job.id,
            job.kiosk,
        )
        return False
    state = job.stored_state
    reported = body["state"]
    step = body.get("step")
    detail = body.get("detail") or body.get("error")
    try:
        event = report_event(state, reported)
        new = next_state(state, event)
    except IllegalTransition as exc:
        _event(
            conn,
            job.id,
            at=at,
            source=f"kiosk:{kiosk}",
            event=REPORTED_EVENT_FALLBACK.get(reported, JobEvent.STEP),
            state=state,
            applied=False,
            step=step,
            detail=f"ignored: {exc}",
            record_id=record_id,
        )
        return False
    sets = ["state = ?", "step = COALESCE(?, step)", "detail = COALESCE(?, detail)"]
    params: list[Any] = [new.value, step, body.get("detail")]
    if event is JobEvent.START:
        sets.append("started_at = COALESCE(started_at, ?)")
        params.append(at)
    if new in TERMINAL:
        sets += ["finished_at = ?", "error = ?", "result = ?"]
        result = body.get("result")
        params += [at, body.get("error"), None if result is None else json.dumps(result)]
    conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*params, job.id))
    _event(
        conn,
        job.id,
        at=at,
        source=f"kiosk:{kiosk}",
        event=event,
        state=new,
        applied=True,
        step=step,
        detail=detail,
        record_id=record_id,
    )
    if new in TERMINAL:
        audit.record(
            conn,
            f"kiosk:{kiosk}",
            f"job.{new.value}",
            f"job:{job.id}",
            {"kind": job.kind, "error": body.get("error"), "result": body.get("result")},
            now=at,
        )
    return True


REPORTED_EVENT_FALLBACK = {
    "in-progress": JobEvent.STEP,
    "succeeded": JobEvent.SUCCEED,
    "failed": JobEvent.FAIL,
    "rejected": JobEvent.REJECT,
    "timed-out": JobEvent.KIOSK_TIMEOUT,
}
