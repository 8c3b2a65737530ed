"""Remote jobs on the kiosk: the handler registry and the runner that reports results.

Theory of operation
-------------------
Central's job orders arrive as downlink items of kind ``job`` (key = job id).
:meth:`JobRunner.install` registers their validator and a handler on the
inbox; the handler stores the order in ``remote_jobs`` inside the page's
transaction (``INSERT OR IGNORE`` by id: an order delivered twice, or again
after the kiosk cleared its downlink cursor, is stored once and so **runs
once**). An order with ``cancel: true`` marks a job that has not started
``cancelled``; one already running or finished is not touched.

:meth:`JobRunner.run_due` runs the oldest queued job, one at a time, on the
runner's own thread:

- **never during a citizen's session**: while ``busy()`` (the session is in
  use) the job waits; its deadline still runs, and a job whose deadline passed
  before it could start is reported ``timed-out`` and never started;
- an unknown kind is reported ``rejected`` (the agent is older than central);
- otherwise it is marked ``running`` and reported ``in-progress`` in one
  transaction, the handler runs with the job's args and a ``report(step,
  detail)`` callable (each call one more ``in-progress`` record), and its
  outcome (``succeeded`` with the handler's result dict, or ``failed`` with the
  exception's message) is reported in the same transaction that marks it done.

Reports are outbox records of kind ``job`` (``sync.jobs.JobReportBody``):
durable before anything else happens, signed, retried until central acks them
after its commit. A job found ``running`` when the agent starts (the agent
died mid-job) is reported ``failed`` ("the agent stopped during the job"),
never run again: handlers need not be idempotent.

A handler may return :class:`ThenDo` to act *after* its success is durably
reported (``restart-agent`` asks the process to exit only then, so its own
report is not lost).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.downlink import Item
from sync.jobs import (
    DETAIL_CHARS,
    ERROR_CHARS,
    RESULT_KEYS,
    RESULT_TEXT_CHARS,
    STEP_CHARS,
    check_order,
    clip,
)
from sync.outbox import Outbox
from sync.schemas import parse_datetime

log = logging.getLogger("aps.jobs")

ITEM_KIND = "job"
RECORD_KIND = "job"

SCHEMA = """
CREATE TABLE IF NOT EXISTS remote_jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    deadline_at REAL NOT NULL,
    state TEXT NOT NULL,
    received_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS remote_jobs_queued ON remote_jobs (state, received_at);
"""

#: ``report(step, detail)``: one more in-progress report while the job runs.
Report = Callable[[str, str | None], None]
#: ``fn(args, report) -> result dict`` (or :class:`ThenDo`), raising on failure.
Handler = Callable[[dict[str, str], Report], "dict[str, Any] | ThenDo | None"]


@dataclass(frozen=True)
class ThenDo:
    """A result, and an action to run once that result is durably reported."""

    result: dict[str, Any]
    action: Callable[[], None]


class JobRegistry:
    """Which job kinds this agent can run, and the function that runs each."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, fn: Handler) -> None:
        """Run ``fn(args, report)`` for jobs of ``kind`` (replaces an earlier handler)."""
        self._handlers[kind] = fn

    def kinds(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)


def _result(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A handler's result, held to the report's bounds (long texts cut, extra keys dropped)."""
    if value is None:
        return None
    out: dict[str, Any] = {}
    for key, item in list(value.items())[:RESULT_KEYS]:
        name = str(key)[:64]
        if item is None or (isinstance(item, bool | int) and -(2**63) <= item < 2**63):
            out[name] = item
        elif isinstance(item, float):
            out[name] = str(item)
        else:
            text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
            out[name] = clip(text, RESULT_TEXT_CHARS)
    return out


class JobRunner:
    """Stores job orders from the inbox and runs them, reporting through the outbox."""

    def __init__(
        self,
        outbox: Outbox,
        registry: JobRegistry | None = None,
        *,
        busy: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
    ) -> None:
        self.outbox = outbox
        self.registry = registry or JobRegistry()
        self.busy = busy
        self.clock = clock
        self.tick_s = tick_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Called after each pass of the runner thread (the remote-config reporter hooks in).
        self.on_tick: list[Callable[[], None]] = []
        with self.outbox.local_write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
        self._recover()

    # -- registry --------------------------------------------------------------------------
    def register(self, kind: str, fn: Handler) -> None:
        self.registry.register(kind, fn)

    # -- orders from the inbox -------------------------------------------------------------
    def install(self, inbox: Any) -> None:
        """Have ``inbox`` (``edge_agent.inbox.Inbox``) hand job orders to this runner."""
        inbox.register_validator(ITEM_KIND, check_order)
        inbox.register(ITEM_KIND, self.store_order)
        inbox.on_applied.append(self._on_applied)

    def store_order(self, conn: sqlite3.Connection, item: Item) -> None:
        """The inbox handler: keep the order (once per id), or cancel a job not yet started."""
        body = item.body
        deadline = parse_datetime(body["deadline"])
        if deadline is None:
            raise ValueError(f"job {item.key}: deadline {body['deadline']!r} is not a date-time")
        if body.get("cancel"):
            conn.execute(
                "INSERT OR IGNORE INTO remote_jobs (id, kind, args, deadline_at, state,"
                " received_at, finished_at, outcome) VALUES (?, ?, ?, ?, 'cancelled', ?, ?,"
                " 'cancelled')",
                (body["id"], body["kind"], "{}", deadline.timestamp(), self.clock(), self.clock()),
            )
            conn.execute(
                "UPDATE remote_jobs SET state = 'cancelled', finished_at = ?, outcome ="
                " 'cancelled' WHERE id = ? AND state = 'queued'",
                (self.clock(), body["id"]),
            )
            return
        conn.execute(
            "INSERT OR IGNORE INTO remote_jobs (id, kind, args, deadline_at, state, received_at)"
            " VALUES (?, ?, ?, ?, 'queued', ?)",
            (
                body["id"],
                body["kind"],
                json.dumps(body["args"], ensure_ascii=False),
                deadline.timestamp(),
                self.clock(),
            ),
        )

    def _on_applied(self, news: list[tuple[str, str]]) -> None:
        if any(kind == ITEM_KIND for kind, _ in news):
            self._wake.set()

    # -- running ----------------------------------------------------------------------------
    def _report(self, job_id: str, kind: str, state: str, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"job": job_id, "kind": kind, "state": state}
        for name, value in fields.items():
            if value is not None:
                body[name] = value
        return body

    def _recover(self) -> None:
        """Jobs left ``running`` by a process that died: reported failed, never rerun."""
        with self.outbox.reading() as conn:
            rows = conn.execute(
                "SELECT id, kind FROM remote_jobs WHERE state = 'running'"
            ).fetchall()
        for job_id, kind in rows:
            self._finish(
                job_id,
                self._report(job_id, kind, "failed", error="the agent stopped during the job"),
                "failed",
            )

    def _finish(self, job_id: str, report: dict[str, Any], outcome: str) -> None:
        with self.outbox.transaction() as tx:
            tx.add(RECORD_KIND, report)
            tx.conn.execute(
                "UPDATE remote_jobs SET state = 'done', finished_at = ?, outcome = ? WHERE id = ?",
                (self.clock(), outcome, job_id),
            )

    def state_of(self, job_id: str) -> tuple[str, str | None] | None:
        """(state, outcome) of one job on this kiosk, or None if it never arrived."""
        with self.outbox.reading() as conn:
            row = conn.execute(
                "SELECT state, outcome FROM remote_jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def run_due(self) -> str | None:
        """Run (or settle) the oldest queued job; its id, or None if nothing could run now."""
        with self.outbox.reading() as conn:
            row = conn.execute(
                "SELECT id, kind, args, deadline_at FROM remote_jobs WHERE state = 'queued'"
                " ORDER BY received_at, id LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        job_id, kind, args_text, deadline_at = str(row[0]), str(row[1]), str(row[2]), row[3]
        if self.clock() > deadline_at:
            when = datetime.fromtimestamp(deadline_at, UTC).isoformat(timespec="seconds")
            self._finish(
                job_id,
                self._report(job_id, kind, "timed-out", detail=f"deadline {when} passed unstarted"),
                "timed-out",
            )
            return job_id
        if self.busy():
            return None  # a citizen is at the kiosk: wait (the deadline still applies)
        handler = self.registry.get(kind)
        if handler is None:
            known = ", ".join(sorted(self.registry.kinds()))
            self._finish(
                job_id,
                self._report(
                    job_id,
                    kind,
                    "rejected",
                    error=clip(
                        f"this agent cannot run {kind!r} jobs (it runs: {known})", ERROR_CHARS
                    ),
                ),
                "rejected",
            )
            return job_id
        with self.outbox.transaction() as tx:
            tx.add(RECORD_KIND, self._report(job_id, kind, "in-progress", step="started"))
            tx.conn.execute("UPDATE remote_jobs SET state = 'running' WHERE id = ?", (job_id,))

        def report(step: str, detail: str | None = None) -> None:
            self.outbox.add(
                RECORD_KIND,
                self._report(
                    job_id,
                    kind,
                    "in-progress",
                    step=clip(step, STEP_CHARS),
                    detail=None if detail is None else clip(detail, DETAIL_CHARS),
                ),
            )

        log.info("job %s (%s) started", job_id, kind)
        try:
            outcome = handler(json.loads(args_text), report)
        except Exception as exc:
            log.warning("job %s (%s) failed: %s", job_id, kind, exc)
            error = clip(f"{type(exc).__name__}: {exc}", ERROR_CHARS)
            self._finish(job_id, self._report(job_id, kind, "failed", error=error), "failed")
            return job_id
        action = None
        if isinstance(outcome, ThenDo):
            action = outcome.action
            outcome = outcome.result
        self._finish(
            job_id, self._report(job_id, kind, "succeeded", result=_result(outcome)), "succeeded"
        )
        log.info("job %s (%s) succeeded", job_id, kind)
        if action is not None:
            action()
        return job_id

    # -- the runner thread -------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="kiosk-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            for hook in self.on_tick:
                try:
                    hook()
                except Exception:  # the runner must not die of one hook
                    log.exception("job runner hook failed")
            try:
                while not self._stop.is_set() and self.run_due() is not None:
                    pass
            except Exception:  # e.g. the outbox full: try again on the next tick
                log.exception("job runner pass failed")
