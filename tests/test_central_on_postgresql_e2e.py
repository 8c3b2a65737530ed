"""All of central on PostgreSQL, by configuration alone, the way a ward office meets it.

Real parts: a private mosquitto; PostgreSQL (a fresh database); ``aps-central run`` as its
own process with ``[central] store = "postgresql"`` (collector, downlink, alert engine, the
HTTP API with the console); the ``aps-central`` commands an admin types; the kiosk
application with its emulated USB printer. The config also names a SQLite path
(``database``), as every config does: the test ends by checking that no file was ever
made there, so nothing of central fell back to SQLite.

1. A citizen files a dossier (signed), rates the service and asks a question.
2. At central: the dossier in ``dossier search`` and on the console, the question in
   ``inquiry list``, the kiosk operational in ``fleet``.
3. Back down: a status change and an answer reach the kiosk's screen; a job (a test slip)
   runs and is audited.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from central import backoffice_db
from central.mosquitto import MosquittoProcess, free_ports
from edge_agent.app import KioskApp
from edge_agent.devices import DeviceSupervisor
from edge_agent.dossiers import Applicant
from edge_agent.signature import HandwrittenSignature
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from tests import identity, stack
from tests.central_config import on_engine
from tests.console_seed import login
from tests.kiosk import KIOSK, app_config, strokes
from tests.pg import CentralDb, PgDatabase
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

PASSWORD = "mật khẩu đủ dài 2026"


def _cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "central.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _fleet_state(config: Path) -> str | None:
    for row in _json_lines(_cli(config, "fleet", "--json")):
        if row["kiosk"] == KIOSK:
            return str(row["state"])
    return None


def _console(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    answer = login(client, "quan.tri", PASSWORD, origin=base)
    assert answer.status_code in (200, 303), answer.text[:500]
    return client


def test_a_ward_office_on_postgresql_files_sees_answers_and_runs_a_job(
    broker: MosquittoProcess, pg: PgDatabase, tmp_path: Path
) -> None:
    db = tmp_path / "central" / "central.db"  # named by the config, never to be created
    target = backoffice_db.PgTarget(pg.dsn)
    (api_port,) = free_ports(1)
    config = stack.write_central_config(tmp_path / "central.toml", db, broker.collector(), ())
    on_engine(config, db, CentralDb(kind="postgresql", target=target, opened=[]))
    with config.open("a", encoding="utf-8") as fh:
        fh.write(
            f'\n[api]\nlisten = "127.0.0.1:{api_port}"\n'
            "\n[alerts]\nevaluate_every_s = 0.5\n"
            "\n[downlink]\nnudge_interval_s = 0.2\n"
        )
    identity.register(target, KIOSK)  # the registry is in PostgreSQL too
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    _cli(config, "console", "user", "add", "quan.tri", "--role", "admin",
         "--password-file", str(password_file))  # fmt: skip

    usb = EmulatedUsbPrinter()
    cfg = app_config(tmp_path, broker.kiosk(KIOSK), devices={"printer": "usb://04b8:0e15"})
    central = stack.spawn("central.cli", config, tmp_path / "central.log")
    app = KioskApp(
        cfg,
        devices=DeviceSupervisor(cfg.devices, spool_dir=cfg.agent.receipts_dir, usb_backend=usb),
    )
    try:
        app.start()
        # 1. The citizen's side.
        prepared = app.filing.prepare(
            "2.000815",
            {"ten_giay_to": "Học bạ", "so_trang": 12, "so_ban": 1},
            applicant=Applicant(full_name="Nguyễn Thị Ngọc Hường", id_number="087205001234"),
            phone="0912345678",
        )
        sig = HandwrittenSignature.from_strokes(strokes(), width=400, height=150)
        filed = app.filing.file(prepared, signature=sig)
        code = filed.code
        app.ratings.rate("hai_long", dossier_code=code)
        question = app.feedback.submit("question", "Bao giờ có kết quả?")

        # 2. Central's side, every view from PostgreSQL.
        def dossier_found() -> bool:
            return any(
                d["code"] == code for d in json.loads(_cli(config, "dossier", "search", "--json"))
            )

        wait_until(dossier_found, 90, "the dossier in `aps-central dossier search`")
        shown = json.loads(_cli(config, "dossier", "show", code))
        assert shown["state"] == "submitted" and shown["kiosk"] == KIOSK

        def inquiry_listed() -> bool:
            listed = json.loads(_cli(config, "inquiry", "list", "--json"))
            return any(i.get("lookup_code") == question.lookup_code for i in listed)

        wait_until(inquiry_listed, 60, "the question in `aps-central inquiry list`")
        wait_until(lambda: _fleet_state(config) == "operational", 90, "the kiosk operational")
        base = f"http://127.0.0.1:{api_port}"
        console = _console(base)
        page = console.get(f"/console/dossiers/{code}")
        assert page.status_code == 200 and code in page.text
        kiosk_page = console.get(f"/console/kiosks/{KIOSK}")
        assert kiosk_page.status_code == 200 and KIOSK in kiosk_page.text

        # 3. Back down to the kiosk, through the downlink log in PostgreSQL.
        _cli(config, "dossier", "status", code, "received")
        wait_until(lambda: app.tracking.lookup(code).state == "received", 60, "the status")
        _cli(config, "inquiry", "answer", question.lookup_code, "Dự kiến 3 ngày làm việc.")
        created = json.loads(
            _cli(config, "job", "create", "print-test-slip", "--kiosk", KIOSK, "--json")
        )
        job = created[0] if isinstance(created, list) else created
        job_id = str(job["id"])

        def job_state() -> str:
            return str(json.loads(_cli(config, "job", "show", job_id, "--json"))["state"])

        wait_until(lambda: job_state() == "succeeded", 90, "the test slip printed")
        console.close()
    finally:
        app.stop()
        stack.stop(central)

    with psycopg.connect(pg.dsn) as conn:
        kinds: dict[str, int] = dict(
            conn.execute(
                "SELECT kind, count(*) FROM records WHERE kiosk = %s GROUP BY kind", (KIOSK,)
            ).fetchall()
        )
        assert kinds.get("dossier") == 1 and kinds.get("rating") == 1
        actions = {
            r[0]
            for r in conn.execute("SELECT action FROM audit WHERE target = %s", (f"job:{job_id}",))
        }
        assert {"job.create", "job.succeeded"} <= actions
        answered = conn.execute(
            "SELECT answer FROM inquiries WHERE lookup_code = %s", (question.lookup_code,)
        ).fetchone()
        assert answered is not None and answered[0] == "Dự kiến 3 ngày làm việc."
    assert not db.exists(), "something of central opened the SQLite file"
    assert "Traceback" not in (tmp_path / "central.log").read_text(encoding="utf-8")
