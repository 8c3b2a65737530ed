"""``aps-central dossier|inquiry|faq|news|report`` over a real central database (SQLite and
PostgreSQL: the CLI follows ``[central] store``)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from click.testing import CliRunner

from central import audit, downlink_log
from central.cli import main as central_cli
from tests import stack
from tests.backoffice_records import AGENCY, Kiosk, dossier_body
from tests.pg import CentralDb

CODE = f"{AGENCY}-261201-4001"


def _setup(tmp_path: Path, central_db: CentralDb) -> tuple[Path, Kiosk]:
    cfg = tmp_path / "central.toml"
    cfg.write_text("[central]\n" + central_db.central_toml(tmp_path / "central.db"))
    central_db.connect()  # central has run: the database and its tables exist
    return cfg, Kiosk(central_db.target)


def _run(cfg: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    out = CliRunner().invoke(central_cli, [*args, "--config", str(cfg)], input=input)
    return out.exit_code, out.stdout, out.stderr


def test_dossier_commands_change_search_and_audit(tmp_path: Path, central_db: CentralDb) -> None:
    cfg, k = _setup(tmp_path, central_db)
    k.send("dossier", dossier_body(CODE))
    code, out, _ = _run(cfg, "dossier", "status", CODE, "received", "--note", "Đã nhận hồ sơ")
    assert code == 0 and f"{CODE}: received (Đã tiếp nhận) set" in out
    code, out, err = _run(cfg, "dossier", "status", CODE, "result-returned")
    assert code == 1 and "cannot go from 'received' to 'result-returned'" in err
    assert "allowed next states: additional-papers, processing" in err
    code, out, _ = _run(cfg, "dossier", "pay", CODE, "--amount", "8000", "--reference", "FT1")
    assert code == 0 and "8000 VND received in total, paid" in out
    code, out, _ = _run(cfg, "dossier", "pay", CODE, "--amount", "8000", "--reference", "FT1")
    assert code == 0 and "already recorded; nothing changed" in out
    code, out, _ = _run(cfg, "dossier", "search", "--office", AGENCY, "--json")
    [found] = json.loads(out)
    assert found["state"] == "received" and found["paid"] is True
    code, out, _ = _run(cfg, "dossier", "search", "--state", "received")
    assert out.startswith(f"{CODE}  received  paid  2026-12-01")
    code, out, _ = _run(cfg, "dossier", "show", CODE)
    assert json.loads(out)["payments"][0]["reference"] == "FT1"
    conn = central_db.connect()
    actors = {r["actor"] for r in audit.entries(conn, target=CODE)}
    assert actors == {f"cli:{getpass.getuser()}"}
    body = downlink_log.current(conn, f"office:{AGENCY}", "dossier-status")[0].body
    assert body["note"] == "Đã nhận hồ sơ" and body["paid"] is True
    later = "2026-12-01T11:15:00+07:00"  # two hours after the first
    k.send("dossier", dossier_body(f"{AGENCY}-261201-4002", received_at=later))
    code, out, err = _run(cfg, "dossier", "duplicates")
    assert code == 0 and f"{AGENCY}-261201-4002 likely repeats {CODE}" in out
    code, out, _ = _run(cfg, "dossier", "duplicates", "--window-h", "1", "--json")
    assert json.loads(out)["pairs"] == []


def test_inquiry_faq_news_and_report_commands(tmp_path: Path, central_db: CentralDb) -> None:
    cfg, k = _setup(tmp_path, central_db)
    k.send("feedback", {"category": "question", "message": "Hỏi?", "lookup_code": "HT-261201-4001"})
    k.send("rating", {"level": "rat_hai_long"}, created="2026-12-01T10:00:00+07:00")
    code, out, _ = _run(cfg, "inquiry", "list", "--unanswered")
    assert code == 0 and out.startswith("HT-261201-4001  question  open")
    code, out, _ = _run(cfg, "inquiry", "answer", "HT-261201-4001", "-", input="Trả lời\nxin.\n")
    assert code == 0 and "sent to kiosk:k-office-01" in out
    code, out, _ = _run(cfg, "inquiry", "list", "--json")
    assert json.loads(out)[0]["answer"] == "Trả lời\nxin."
    faq = tmp_path / "faq.toml"
    faq.write_text('[[faq]]\nid = "a"\nquestion = "Hỏi?"\nanswer = "Đáp."\n', encoding="utf-8")
    code, out, _ = _run(cfg, "faq", "publish", str(faq))
    assert code == 0 and "faq: 1 published, 0 unchanged" in out
    code, out, _ = _run(cfg, "faq", "list")
    assert [i["id"] for i in json.loads(out)] == ["a"]
    code, out, _ = _run(cfg, "faq", "withdraw", "a")
    assert code == 0 and "withdrawn" in out
    news = tmp_path / "news.toml"
    news.write_text('[[news]]\nid = "b"\ntitle = "Tin"\n', encoding="utf-8")
    code, _, err = _run(cfg, "news", "publish", str(news))
    assert code == 1 and "news[0] b: body is missing" in err
    code, out, _ = _run(cfg, "report", "ratings", "--json")
    assert json.loads(out)[0]["counts"]["rat_hai_long"] == 1
    code, out, _ = _run(cfg, "report", "ratings")
    assert "Rất hài lòng 1 (100%)" in out


def test_a_wrong_database_path_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    cfg = stack.write_central_config(
        tmp_path / "central.toml", tmp_path / "nope.db", 1883, kiosks=()
    )
    code, _, err = _run(cfg, "dossier", "search")
    assert code == 1 and "no central database at" in err and "central.database" in err
    assert not (tmp_path / "nope.db").exists()
