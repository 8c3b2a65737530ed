"""The kiosk application offline through a catalogue update, a status change and an answer.

Everything real: the broker, central's collector and downlink service, the
back office's own functions (catalogue publishing, status changes, answers),
and the kiosk application (KioskApp) read as the screen reads it. The kiosk
is stopped while central changes; when it starts again it must end with all
of them, asked for on connect (no retained message carries any of them).
"""

from __future__ import annotations

import json
from pathlib import Path

from central import backoffice_db
from central.answers import answer
from central.catalogue_publish import publish_catalogue
from central.dossiers import set_status
from central.mosquitto import MosquittoProcess
from edge_agent.app import KioskApp
from edge_agent.catalogue import bundled_document
from tests.downlink_stack import OFFICE, start_central
from tests.kiosk import KIOSK, app_config
from tests.waiting import wait_until


def _feedback_at_central(db: Path) -> int:
    conn = backoffice_db.connect(db)
    try:
        row = conn.execute(
            "SELECT count(*) FROM records WHERE kind = 'feedback' AND kiosk = ?", (KIOSK,)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def test_a_kiosk_offline_through_catalogue_status_and_answer_ends_with_all_of_them(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "central.db"
    central = start_central(broker, db)
    cfg = app_config(tmp_path, broker.kiosk(KIOSK))
    app = KioskApp(cfg)
    app.start()
    try:
        question = app.feedback.submit("question", "Bao giờ có kết quả hồ sơ của tôi?")
        wait_until(lambda: _feedback_at_central(db) == 1, 60, "the question at central")
        assert app.inbox is not None
        wait_until(lambda: app.inbox.last_reply_at() is not None, 60, "first state reply")
        bundled = app.catalogue().version
    finally:
        app.stop()

    # The kiosk is off. At central: a new catalogue, a status change, an answer.
    conn = backoffice_db.connect(db)
    doc = bundled_document()
    parts = [int(p) for p in str(doc["version"]).split(".")]
    doc["version"] = ".".join(str(p) for p in [*parts[:-1], parts[-1] + 1])
    published = publish_catalogue(conn, json.loads(json.dumps(doc)), actor="test")
    code = f"{OFFICE}-261201-1001"
    set_status(conn, code, "received", actor="test")
    set_status(conn, code, "result-ready", actor="test", note="Mời Ông/Bà đến nhận kết quả.")
    answer(conn, question.lookup_code, "Thứ Sáu có kết quả.", actor="test", answered_by="Chị Lan")
    conn.close()

    app = KioskApp(cfg)
    app.start()
    try:
        wait_until(lambda: app.catalogue().version == published, 60, "the new catalogue")
        wait_until(lambda: app.tracking.lookup(code).state == "result-ready", 60, "the status")
        wait_until(lambda: app.feedback.answer_for(question.lookup_code).answered, 60, "answer")
        tracked = app.tracking.lookup(code)
        assert tracked.source == "office" and tracked.note == "Mời Ông/Bà đến nhận kết quả."
        got = app.feedback.answer_for(question.lookup_code)
        assert got.answer == "Thứ Sáu có kết quả." and got.answered_by == "Chị Lan"
        assert published != bundled
        assert app.sync.counters.connects == 1  # it asked on connect; no nudge was needed
    finally:
        app.stop()
        central.stop()
