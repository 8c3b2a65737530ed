"""Remote configuration and jobs end to end: a real broker, central's collector and downlink
service, central's own functions (as the CLI calls them) and the kiosk application."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

from central import attachments, audit, backoffice_db, downlink_log
from central.fleet import desired_config, jobs
from central.mosquitto import MosquittoProcess
from edge_agent.app import KioskApp
from sync.jobs import JobState
from tests.downlink_stack import OFFICE, start_central
from tests.kiosk import KIOSK, app_config, card
from tests.waiting import wait_until


def _conn(db: Path) -> sqlite3.Connection:
    return backoffice_db.connect(db)


def _running(db: Path) -> str | None:
    conn = _conn(db)
    try:
        return desired_config.show(conn, kiosk=KIOSK)["running_version"]
    finally:
        conn.close()


def _report(db: Path) -> dict[str, Any] | None:
    conn = _conn(db)
    try:
        return desired_config.last_report(conn, KIOSK)
    finally:
        conn.close()


def _job_state(db: Path, job_id: str) -> JobState | None:
    conn = _conn(db)
    try:
        job = jobs.get_job(conn, job_id)
        return None if job is None else job.state
    finally:
        conn.close()


def _create(db: Path, kind: str, **kw: Any) -> str:
    conn = _conn(db)
    try:
        (job,) = jobs.create(conn, kind, kiosks=[KIOSK], actor="cli:admin", **kw)
        return job.id
    finally:
        conn.close()


def _start(broker: MosquittoProcess, tmp_path: Path, db: Path) -> KioskApp:
    app = KioskApp(app_config(tmp_path, broker.kiosk(KIOSK)))
    app.start()
    assert app.inbox is not None
    inbox = app.inbox
    wait_until(lambda: inbox.last_reply_at() is not None, 60, "first state reply")
    conn = _conn(db)
    try:
        wait_until(lambda: downlink_log.office_of(conn, KIOSK) == OFFICE, 60, "office claimed")
    finally:
        conn.close()
    return app


def test_a_config_push_is_applied_reported_and_audited_and_a_bad_one_refused(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "central.db"
    central = start_central(broker, db)
    app = _start(broker, tmp_path, db)
    try:
        conn = _conn(db)
        sent = desired_config.set_values(
            conn,
            office=OFFICE,
            values={"log_level": "warning", "session_idle_s": 120},
            actor="cli:a",
        )
        assert sent == {KIOSK: 1}
        sent = desired_config.set_values(
            conn, kiosk=KIOSK, values={"session_idle_s": 300}, actor="cli:b"
        )
        assert sent == {KIOSK: 2}
        wait_until(lambda: app.session.idle_timeout_s == 300, 60, "version 2 in force")
        assert app.remote_config.version_text() == "2"
        wait_until(lambda: (_report(db) or {}).get("version") == 2, 60, "the applied report")
        assert (_report(db) or {})["state"] == "applied"
        wait_until(lambda: _running(db) == "2", 60, "config_version 2 in a heartbeat")
        actions = [e["action"] for e in desired_config.history(conn, kiosk=KIOSK)]
        assert actions[:3] == ["config.applied", "config.version", "config.set"]

        # Valid for central, refused by this kiosk: its screen warns 30 s before the timeout.
        desired_config.set_values(conn, kiosk=KIOSK, values={"session_idle_s": 30}, actor="cli:b")
        wait_until(lambda: (_report(db) or {}).get("version") == 3, 60, "the refusal")
        report = _report(db) or {}
        assert report["state"] == "refused" and report["field"] == "session_idle_s"
        assert "ui.idle_warning_s" in report["reason"]
        assert app.remote_config.version_text() == "2" and app.session.idle_timeout_s == 300
        refused = audit.entries(conn, target=f"kiosk:{KIOSK}")[0]
        assert refused["action"] == "config.refused" and refused["actor"] == f"kiosk:{KIOSK}"
        conn.close()
    finally:
        app.stop()
    # The last good configuration survives a restart.
    again = KioskApp(app_config(tmp_path, broker.kiosk(KIOSK)))
    try:
        assert again.remote_config.version_text() == "2" and again.session.idle_timeout_s == 300
    finally:
        again.stop()
        central.stop()


def test_job_kinds_run_report_and_a_job_waits_for_the_session(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "central.db"
    central = start_central(broker, db)
    app = _start(broker, tmp_path, db)
    try:
        selftest = _create(db, "selftest")
        wait_until(lambda: _job_state(db, selftest) is JobState.SUCCEEDED, 60, "selftest")
        conn = _conn(db)
        job = jobs.get_job(conn, selftest)
        assert job is not None and job.result is not None and job.result["checks"] >= 3, job
        conn.close()

        purge = _create(db, "purge-synced", args={"older_than_days": "0"})
        wait_until(lambda: _job_state(db, purge) is JobState.SUCCEEDED, 60, "purge")

        resync = _create(db, "resync-catalogue")
        wait_until(lambda: _job_state(db, resync) is JobState.SUCCEEDED, 60, "resync")

        diag = _create(db, "collect-diagnostics")
        wait_until(lambda: _job_state(db, diag) is JobState.SUCCEEDED, 60, "diagnostics")
        conn = _conn(db)
        done = jobs.get_job(conn, diag)
        assert done is not None and done.result is not None
        att = str(done.result["attachment"])
        wait_until(lambda: attachments.read_file(conn, KIOSK, att) is not None, 60, "tarball")
        data = attachments.read_file(conn, KIOSK, att)
        assert data is not None and len(data) == done.result["bytes"]
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = sorted(m.name for m in tar.getmembers())
            config_text = tar.extractfile("diagnostics/config.json").read().decode()  # type: ignore[union-attr]
        assert "diagnostics/agent.log" in names and "diagnostics/health.json" in names
        secrets = sorted((tmp_path / "keys").glob("*.key"))
        assert secrets  # the kiosk's signing key (and the test central's) are there ...
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            text = b"".join(
                f.read() for m in tar.getmembers() if (f := tar.extractfile(m)) is not None
            )
        for secret in secrets:  # ... and never in the tarball
            body = secret.read_bytes().strip().splitlines()
            assert not any(line in text for line in body if len(line) > 20), secret
        assert json.loads(config_text)["kiosk"]["id"] == KIOSK
        conn.close()

        # A citizen is at the kiosk: the job is stored but waits; it runs once they leave.
        app.identify(card())
        waiting = _create(db, "selftest")
        wait_until(lambda: app.jobs.state_of(waiting) is not None, 60, "order on the kiosk")
        for _ in range(3):
            assert app.jobs.run_due() is None
        assert app.jobs.state_of(waiting) == ("queued", None)
        assert _job_state(db, waiting) is JobState.QUEUED
        app.session.clear()
        wait_until(lambda: _job_state(db, waiting) is JobState.SUCCEEDED, 60, "after the session")

        # Cancelled before it starts: the kiosk never runs it.
        app.identify(card())
        doomed = _create(db, "selftest")
        wait_until(lambda: app.jobs.state_of(doomed) is not None, 60, "order on the kiosk")
        conn = _conn(db)
        jobs.cancel_job(conn, doomed, actor="cli:admin")
        conn.close()
        wait_until(lambda: app.jobs.state_of(doomed) == ("cancelled", "cancelled"), 60, "cancel")
        app.session.clear()
    finally:
        app.stop()

    # A replayed order (the kiosk forgot its downlink cursor) runs once.
    with sqlite3.connect(tmp_path / f"{KIOSK}.db") as kdb:
        kdb.execute("DELETE FROM downlink_state")
        kdb.execute("DELETE FROM downlink_items")
    app = _start(broker, tmp_path, db)
    try:
        conn = _conn(db)
        wait_until(
            lambda: (
                app.inbox is not None and app.inbox.cursor() >= downlink_log.latest_cursor(conn)
            ),
            60,
            "every order delivered again",
        )
        conn.close()
        app.jobs.run_due()
        ran = [r for r in app.outbox.records() if r["kind"] == "job"]
        starts = [r["body"]["job"] for r in ran if r["body"].get("step") == "started"]
        assert len(starts) == len(set(starts))  # no job started twice
    finally:
        app.stop()
        central.stop()


def test_a_job_for_a_box_that_never_answers_times_out(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    conn = _conn(db)
    with backoffice_db.transaction(conn):
        downlink_log.assign_office(conn, "k-silent-01", OFFICE)
    (job,) = jobs.create(
        conn, "selftest", kiosks=["k-silent-01"], actor="cli:a", deadline_s=30, now=1_000.0
    )
    assert jobs.get_job(conn, job.id, now=1_029.0).state is JobState.QUEUED  # type: ignore[union-attr]
    assert jobs.list_jobs(conn, states=["timed-out"])[0].id == job.id
    conn.close()


def test_an_office_config_set_before_central_knew_the_kiosk_reaches_it_on_first_contact(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "central.db"
    central = start_central(broker, db)
    conn = _conn(db)
    assert (
        desired_config.set_values(conn, office=OFFICE, values={"session_idle_s": 90}, actor="a")
        == {}
    )
    conn.close()
    app = _start(broker, tmp_path, db)
    try:
        wait_until(lambda: app.session.idle_timeout_s == 90, 60, "the office's configuration")
        wait_until(lambda: (_report(db) or {}).get("state") == "applied", 60, "its report")
    finally:
        app.stop()
        central.stop()
