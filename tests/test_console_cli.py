"""``aps-central console user ...`` on a real central database (the click commands run in
process), then the account logs in to the console."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from central import audit
from central.backoffice_db import Target
from central.cli import main
from tests.central_config import on_engine
from tests.console_seed import PASSWORD, app_for, login
from tests.pg import CentralDb
from tests.stack import write_central_config

FAST = "[console]\nargon2_time_cost = 1\nargon2_memory_kib = 8192\nargon2_parallelism = 1\n"


def _config(tmp_path: Path, central_db: CentralDb) -> tuple[Path, Target]:
    db = tmp_path / "central.db"
    cfg = write_central_config(tmp_path / "central.toml", db, 18830, kiosks=())
    on_engine(cfg, db, central_db)
    cfg.write_text(cfg.read_text(encoding="utf-8") + "\n" + FAST, encoding="utf-8")
    return cfg, central_db.target


def _run(cfg: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["console", "user", *args, "--config", str(cfg)], input=input)
    return result.exit_code, result.output


def test_add_list_passwd_disable_unlock_are_audited_and_work(
    tmp_path: Path, central_db: CentralDb
) -> None:
    cfg, db = _config(tmp_path, central_db)
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    code, out = _run(
        cfg,
        "add",
        "lan.nguyen",
        "--role",
        "staff",
        "--office",
        "000.00.14.H56",
        "--password-file",
        str(secret),
    )
    assert code == 0, out
    assert json.loads(out)["office"] == "000.00.14.H56"
    code, out = _run(cfg, "add", "quan.tri", "--role", "admin", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, out
    code, out = _run(cfg, "list")
    names = [json.loads(line)["name"] for line in out.splitlines()]
    assert names == ["lan.nguyen", "quan.tri"]
    with TestClient(app_for(db)) as c:
        assert login(c, "lan.nguyen").status_code == 303
    new = "một mật khẩu mới dài hơn"
    code, out = _run(cfg, "passwd", "lan.nguyen", input=f"{new}\n{new}\n")
    assert code == 0, out
    with TestClient(app_for(db)) as c:
        assert login(c, "lan.nguyen").status_code == 401
        assert login(c, "lan.nguyen", new).status_code == 303
    assert _run(cfg, "disable", "lan.nguyen")[0] == 0
    with TestClient(app_for(db)) as c:
        assert login(c, "lan.nguyen", new).status_code == 401
    assert _run(cfg, "disable", "lan.nguyen", "--enable")[0] == 0
    assert _run(cfg, "unlock", "lan.nguyen")[0] == 0
    actions = {e["action"] for e in audit.entries(central_db.connect(), limit=50)}
    assert {
        "console.user.add",
        "console.user.passwd",
        "console.user.disable",
        "console.user.enable",
        "console.user.unlock",
    } <= actions


def test_cli_errors_name_the_field_and_the_fix(tmp_path: Path, central_db: CentralDb) -> None:
    cfg, _ = _config(tmp_path, central_db)
    code, out = _run(cfg, "add", "x", "--role", "admin", input="a\na\n")
    assert code != 0 and "name" in out and "2-40 characters" in out
    code, out = _run(cfg, "add", "lan", "--role", "staff", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert code != 0 and "--office" in out
    code, out = _run(cfg, "add", "lan", "--role", "viewer", input="ngan\nngan\n")
    assert code != 0 and "at least 12 characters" in out
    code, out = _run(cfg, "unlock", "khong.co")
    assert code != 0 and "aps-central console user list" in out
    code, out = _run(
        cfg, "add", "lan", "--role", "viewer", "--password-file", str(tmp_path / "missing")
    )
    assert code != 0 and "--password-file" in out
