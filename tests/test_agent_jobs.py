"""The kiosk's job registry and runner on a real outbox and inbox (no broker): orders
stored once, run once, never during a session, deadlines, rejections, crash recovery."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.inbox import Inbox
from edge_agent.services.jobs import JobRegistry, JobRunner, ThenDo
from sync.downlink import Item
from sync.ids import new_ulid
from sync.jobs import order_body
from sync.outbox import Outbox
from sync.schemas import check_body

KIOSK = "k-office-01"
NOW = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _setup(
    tmp_path: Path, *, busy: list[bool] | None = None
) -> tuple[Outbox, Inbox, JobRunner, Clock]:
    outbox = Outbox(tmp_path / "agent.db", KIOSK)
    inbox = Inbox(outbox)
    clock = Clock()
    flag = busy if busy is not None else [False]
    runner = JobRunner(outbox, JobRegistry(), busy=lambda: flag[0], clock=clock)
    runner.install(inbox)
    return outbox, inbox, runner, clock


def _order(kind: str = "selftest", *, deadline: float = NOW + 600, **args: str) -> dict[str, Any]:
    when = datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds")
    return order_body(new_ulid(), kind, dict(args), when)


def _reports(outbox: Outbox) -> list[dict[str, Any]]:
    out = [r for r in outbox.records() if r["kind"] == "job"]
    for r in out:
        check_body("job", r["body"])  # every report is what central accepts
    return [r["body"] for r in out]


def test_a_job_delivered_twice_runs_once(tmp_path: Path) -> None:
    outbox, inbox, runner, _ = _setup(tmp_path)
    ran: list[dict[str, str]] = []

    def selftest(args: dict[str, str], report: Any) -> dict[str, Any]:
        ran.append(args)
        report("checks", "3 checks")
        return {"ok": True}

    runner.register("selftest", selftest)
    order = _order(level="quick")
    inbox.apply([Item(cursor=1, kind="job", key=order["id"], body=order)], 1)
    assert runner.run_due() == order["id"]
    # delivered again: as a replayed page, and after the kiosk cleared its cursor
    inbox.apply([Item(cursor=1, kind="job", key=order["id"], body=order)], 1)
    with outbox.local_write() as conn:
        conn.execute("DELETE FROM downlink_state")
        conn.execute("DELETE FROM downlink_items")
    inbox.apply([Item(cursor=1, kind="job", key=order["id"], body=order)], 1)
    assert runner.run_due() is None
    assert ran == [{"level": "quick"}]
    states = [(b["state"], b.get("step")) for b in _reports(outbox)]
    assert states == [("in-progress", "started"), ("in-progress", "checks"), ("succeeded", None)]
    assert _reports(outbox)[-1]["result"] == {"ok": True}
    outbox.close()


def test_a_job_waits_for_the_session_and_its_deadline_still_applies(tmp_path: Path) -> None:
    busy = [True]
    outbox, inbox, runner, clock = _setup(tmp_path, busy=busy)
    ran: list[str] = []
    runner.register("selftest", lambda args, report: ran.append("x") or {})
    first, second = _order(deadline=NOW + 60), _order(deadline=NOW + 600)
    inbox.apply(
        [
            Item(cursor=1, kind="job", key=first["id"], body=first),
            Item(cursor=2, kind="job", key=second["id"], body=second),
        ],
        2,
    )
    assert runner.run_due() is None and ran == []  # a citizen is at the kiosk
    clock.now = NOW + 61
    assert runner.run_due() == first["id"]  # settled: it is past its deadline
    assert _reports(outbox)[-1]["state"] == "timed-out"
    assert runner.run_due() is None and ran == []  # the second still waits
    busy[0] = False
    assert runner.run_due() == second["id"] and ran == ["x"]
    outbox.close()


def test_unknown_kinds_are_rejected_and_failures_reported(tmp_path: Path) -> None:
    outbox, inbox, runner, _ = _setup(tmp_path)

    def broken(args: dict[str, str], report: Any) -> dict[str, Any]:
        raise RuntimeError("máy in không trả lời " + "x" * 900)

    runner.register("print-test-slip", broken)
    unknown, failing = _order("update"), _order("print-test-slip")
    inbox.apply(
        [
            Item(cursor=1, kind="job", key=unknown["id"], body=unknown),
            Item(cursor=2, kind="job", key=failing["id"], body=failing),
        ],
        2,
    )
    runner.run_due()
    runner.run_due()
    rejected, _started, failed = _reports(outbox)
    assert rejected["state"] == "rejected" and "cannot run 'update'" in rejected["error"]
    assert failed["state"] == "failed" and failed["error"].startswith("RuntimeError: máy in")
    assert len(failed["error"]) <= 500
    outbox.close()


def test_a_cancel_before_start_stops_it_and_after_start_changes_nothing(tmp_path: Path) -> None:
    outbox, inbox, runner, _ = _setup(tmp_path)
    runner.register("selftest", lambda args, report: {})
    order = _order()
    inbox.apply([Item(cursor=1, kind="job", key=order["id"], body=order)], 1)
    cancel = {**order, "cancel": True}
    inbox.apply([Item(cursor=2, kind="job", key=order["id"], body=cancel)], 2)
    assert runner.run_due() is None
    assert runner.state_of(order["id"]) == ("cancelled", "cancelled")
    assert _reports(outbox) == []
    outbox.close()


def test_a_job_running_when_the_agent_died_is_reported_failed_not_rerun(tmp_path: Path) -> None:
    outbox, inbox, runner, _ = _setup(tmp_path)
    order = _order()
    inbox.apply([Item(cursor=1, kind="job", key=order["id"], body=order)], 1)
    with outbox.local_write() as conn:
        conn.execute("UPDATE remote_jobs SET state = 'running'")
    outbox.close()
    outbox = Outbox(tmp_path / "agent.db", KIOSK)
    runner = JobRunner(outbox, JobRegistry())
    assert runner.state_of(order["id"]) == ("done", "failed")
    assert _reports(outbox)[-1]["error"] == "the agent stopped during the job"
    assert runner.run_due() is None
    outbox.close()


def test_then_do_runs_after_the_success_is_durable(tmp_path: Path) -> None:
    outbox, inbox, runner, _ = _setup(tmp_path)
    seen: list[list[str]] = []
    runner.register(
        "restart-agent",
        lambda args, report: ThenDo(
            {"restarting": True}, lambda: seen.append([b["state"] for b in _reports(outbox)])
        ),
    )
    order = _order("restart-agent")
    inbox.apply([Item(cursor=1, kind="job", key=order["id"], body=order)], 1)
    runner.run_due()
    assert seen == [["in-progress", "succeeded"]]
    outbox.close()


def test_a_bad_order_is_skipped_by_the_inbox(tmp_path: Path) -> None:
    outbox, inbox, runner, _ = _setup(tmp_path)
    bad = {**_order(), "id": "not-a-ulid"}
    result = inbox.apply([Item(cursor=1, kind="job", key="x", body=bad)], 1)
    assert result.invalid == 1 and runner.run_due() is None
    outbox.close()


@pytest.mark.parametrize("n", [40])
def test_oversized_results_are_clipped_to_the_report_bounds(tmp_path: Path, n: int) -> None:
    outbox, inbox, runner, _ = _setup(tmp_path)
    runner.register("selftest", lambda args, report: {f"k{i}": "y" * 5000 for i in range(n)})
    order = _order()
    inbox.apply([Item(cursor=1, kind="job", key=order["id"], body=order)], 1)
    runner.run_due()
    assert len(_reports(outbox)[-1]["result"]) == 32
    outbox.close()
