"""A central.toml written for SQLite (tests/stack.py), pointed at the test's engine."""

from __future__ import annotations

from pathlib import Path

from tests.pg import CentralDb


def on_engine(cfg: Path, db: Path, central_db: CentralDb) -> Path:
    """``cfg``'s ``[central] database = db`` line, plus the store and DSN on PostgreSQL.

    Raises if the config has no such line: a test meant for PostgreSQL must not run on
    the SQLite file by a silent miss.
    """
    text = cfg.read_text(encoding="utf-8")
    line = f'[central]\ndatabase = "{db}"\n'
    if line not in text:
        raise AssertionError(f"{cfg} has no {line!r} to point at {central_db.kind}")
    cfg.write_text(text.replace(line, "[central]\n" + central_db.central_toml(db), 1), "utf-8")
    return cfg
