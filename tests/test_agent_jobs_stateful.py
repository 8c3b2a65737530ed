"""The kiosk's job runner as a state machine: orders delivered, replayed and cancelled, the
citizen's session coming and going, the clock, runner passes, and the agent killed and
reopened, against a model. Invariants: no job starts twice, none starts during a session or
after its deadline or once cancelled, and every report is one central accepts."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge_agent.inbox import Inbox
from edge_agent.services.jobs import JobRegistry, JobRunner
from sync.downlink import Item
from sync.ids import new_ulid
from sync.jobs import order_body
from sync.outbox import Outbox
from sync.schemas import check_body

KIOSK = "k-office-01"
START = 1_900_000_000.0


class KioskJobs(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "agent.db"
        self.now = START
        self.busy = False
        self.cursor = 0
        self.orders: dict[str, dict[str, Any]] = {}
        self.cancelled: set[str] = set()
        self.started: list[str] = []  # ids in the order the handler ran them
        self.started_when: dict[str, tuple[bool, float]] = {}
        self._open()

    def _open(self) -> None:
        self.outbox = Outbox(self.path, KIOSK)
        self.inbox = Inbox(self.outbox)
        registry = JobRegistry()
        registry.register("selftest", self._handler)
        self.runner = JobRunner(
            self.outbox, registry, busy=lambda: self.busy, clock=lambda: self.now
        )
        self.runner.install(self.inbox)
        self._running: str | None = None

    def _handler(self, args: dict[str, str], report: Any) -> dict[str, Any]:
        job = args["n"]
        self.started.append(job)
        self.started_when[job] = (self.busy, self.now)
        return {"ok": True}

    def teardown(self) -> None:
        self.outbox.close()
        self.dir.cleanup()

    def _deliver(self, body: dict[str, Any]) -> None:
        self.cursor += 1
        self.inbox.apply(
            [Item(cursor=self.cursor, kind="job", key=body["id"], body=body)], self.cursor
        )

    @rule(deadline=st.sampled_from([30, 300]))
    def order(self, deadline: int) -> None:
        jid = new_ulid()
        when = datetime.fromtimestamp(self.now + deadline, UTC).isoformat(timespec="seconds")
        body = order_body(jid, "selftest", {"n": jid}, when)
        self.orders[jid] = body
        self._deliver(body)

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        jid = data.draw(st.sampled_from(sorted(self.orders)))
        self._deliver(self.orders[jid])

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        jid = data.draw(st.sampled_from(sorted(self.orders)))
        if jid not in self.started:
            self.cancelled.add(jid)
        self._deliver({**self.orders[jid], "cancel": True})

    @rule()
    def session_toggles(self) -> None:
        self.busy = not self.busy

    @rule(seconds=st.sampled_from([5, 60]))
    def time_passes(self, seconds: int) -> None:
        self.now += seconds

    @rule()
    def runner_pass(self) -> None:
        while self.runner.run_due() is not None:
            pass

    @rule()
    def crash_and_reopen(self) -> None:
        self.outbox.close()
        self._open()

    @invariant()
    def no_job_started_twice(self) -> None:
        assert len(self.started) == len(set(self.started))

    @invariant()
    def none_started_in_a_session_late_or_cancelled(self) -> None:
        for jid, (busy, at) in self.started_when.items():
            deadline = datetime.fromisoformat(self.orders[jid]["deadline"]).timestamp()
            assert not busy and at <= deadline and jid not in self.cancelled

    @invariant()
    def every_report_is_valid_and_settled_jobs_report_once(self) -> None:
        ends: dict[str, int] = {}
        for rec in self.outbox.records():
            if rec["kind"] != "job":
                continue
            check_body("job", rec["body"])
            if rec["body"]["state"] != "in-progress":
                ends[rec["body"]["job"]] = ends.get(rec["body"]["job"], 0) + 1
        assert all(n == 1 for n in ends.values()), ends


TestKioskJobs = KioskJobs.TestCase
TestKioskJobs.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
