"""The job transition table (sync/jobs.py): every (state, event) pair, and a stateful run
of central's jobs table against a model."""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from central import backoffice_db, downlink_log
from central.fleet import jobs as central_jobs
from sync.jobs import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    JobError,
    JobEvent,
    JobState,
    next_state,
    parse_deadline,
    report_event,
)
from tests.pg import PgDatabase


@pytest.mark.parametrize(("state", "event"), list(itertools.product(JobState, JobEvent)))
def test_every_pair_is_in_the_table_or_raises(state: JobState, event: JobEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition, match=event.value):
            next_state(state, event)


def test_terminal_states_never_move() -> None:
    for state, event in itertools.product(TERMINAL, JobEvent):
        assert (state, event) not in TRANSITIONS


def test_only_a_queued_job_can_be_cancelled() -> None:
    assert {s for s, e in TRANSITIONS if e is JobEvent.CANCEL} == {JobState.QUEUED}


def test_the_first_in_progress_report_starts_the_job() -> None:
    assert report_event(JobState.QUEUED, "in-progress") is JobEvent.START
    assert report_event(JobState.IN_PROGRESS, "in-progress") is JobEvent.STEP


@pytest.mark.parametrize(
    ("text", "seconds"), [("10m", 600), ("30s", 30), ("2h", 7200), ("7d", 604800)]
)
def test_deadlines_parse(text: str, seconds: int) -> None:
    assert parse_deadline(text) == seconds


@pytest.mark.parametrize(("text", "needle"), [("10", "unit"), ("5s", "30 s"), ("8d", "7 days")])
def test_bad_deadlines_name_the_rule(text: str, needle: str) -> None:
    with pytest.raises(JobError, match=needle):
        parse_deadline(text)


KIOSK = "k-jobs-01"
OTHER = "k-jobs-02"
REPORTS = ("in-progress", "succeeded", "failed", "rejected", "timed-out")


class CentralJobs(RuleBasedStateMachine):
    """Central's jobs table driven by creates, reports (own and foreign), cancels and the
    clock, against a dict model that applies :data:`TRANSITIONS` by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.conn: sqlite3.Connection = backoffice_db.connect(self.target())
        with backoffice_db.transaction(self.conn):
            downlink_log.assign_office(self.conn, KIOSK, "000.00.14.H56")
            downlink_log.assign_office(self.conn, OTHER, "000.00.14.H56")
        self.now = 1_800_000_000.0
        self.model: dict[str, tuple[JobState, float]] = {}

    def target(self) -> backoffice_db.Target:
        return Path(self.dir.name) / "c.db"

    def teardown(self) -> None:
        self.conn.close()
        self.dir.cleanup()

    def _model_state(self, jid: str) -> JobState:
        state, deadline = self.model[jid]
        if state in (JobState.QUEUED, JobState.IN_PROGRESS) and self.now > deadline:
            return JobState.TIMED_OUT
        return state

    @rule(deadline=st.sampled_from([60, 600]))
    def create(self, deadline: int) -> None:
        (job,) = central_jobs.create(
            self.conn, "selftest", kiosks=[KIOSK], deadline_s=deadline, actor="cli:t", now=self.now
        )
        self.model[job.id] = (JobState.QUEUED, self.now + deadline)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), reported=st.sampled_from(REPORTS), own=st.booleans())
    def report(self, data: st.DataObject, reported: str, own: bool) -> None:
        jid = data.draw(st.sampled_from(sorted(self.model)))
        with backoffice_db.transaction(self.conn):
            central_jobs.expire_due(self.conn, now=self.now)
            central_jobs.apply_report(
                self.conn,
                KIOSK if own else OTHER,
                {"job": jid, "kind": "selftest", "state": reported},
                record_id=None,
                at=self.now,
            )
        state = self._model_state(jid)
        if own and state not in TERMINAL:
            state = next_state(state, report_event(state, reported))
        self.model[jid] = (state, self.model[jid][1])

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        jid = data.draw(st.sampled_from(sorted(self.model)))
        state = self._model_state(jid)
        if state is JobState.QUEUED:
            central_jobs.cancel_job(self.conn, jid, actor="cli:t", now=self.now)
            self.model[jid] = (JobState.CANCELLED, self.model[jid][1])
        else:
            with pytest.raises(JobError, match="only a queued job"):
                central_jobs.cancel_job(self.conn, jid, actor="cli:t", now=self.now)

    @rule(seconds=st.sampled_from([1, 100, 1000]))
    def time_passes(self, seconds: int) -> None:
        self.now += seconds

    @invariant()
    def states_agree(self) -> None:
        for job in central_jobs.list_jobs(self.conn, limit=1000, now=self.now):
            assert job.state is self._model_state(job.id), job.id


TestCentralJobs = CentralJobs.TestCase
TestCentralJobs.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_the_model_holds_on_postgresql(pg: PgDatabase) -> None:
    """The same machine over central's PostgreSQL: each example in a schema of its own."""

    class PgCentralJobs(CentralJobs):
        def target(self) -> backoffice_db.Target:
            return backoffice_db.PgTarget(pg.schema_dsn(Path(self.dir.name).name))

    run_state_machine_as_test(
        PgCentralJobs,
        settings=settings(
            max_examples=20,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
