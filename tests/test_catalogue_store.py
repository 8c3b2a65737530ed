"""The kiosk's active catalogue on a real SQLite file: atomic swap, keep the last good one."""

from __future__ import annotations

import copy
import json
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from edge_agent import CitizenError
from edge_agent.catalogue import CatalogueStore, FormError, bundled_catalogue, bundled_document

DOC = bundled_document()


def version(v: str, **changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(DOC)
    d["version"] = v
    d.update(changes)
    return d


def open_db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def apply_in_tx(store: CatalogueStore, conn: sqlite3.Connection, body: Any) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    result = store.apply(conn, body)
    conn.execute("COMMIT")
    return result


def test_bundled_until_central_sends_one_then_swaps_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    conn = open_db(db)
    store = CatalogueStore(conn)
    assert store.current().version == DOC["version"]
    assert store.catalogue_status() == {
        "version": DOC["version"],
        "rejected_version": None,
        "error": None,
    }
    newer = version("2027.1.1")
    newer["procedures"][0]["name"] = "Đăng ký khai sinh (bản mới)"
    assert apply_in_tx(store, conn, newer).outcome == "applied"
    assert store.current().get("1.001193").name == "Đăng ký khai sinh (bản mới)"
    assert apply_in_tx(store, conn, newer).outcome == "unchanged"
    conn.close()
    # Another connection (the CLI, another thread) and a restart see the new one.
    again = CatalogueStore(open_db(db))
    assert again.current().version == "2027.1.1"
    assert again.catalogue_status()["version"] == "2027.1.1"


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (version("2027.2.1", procedures=[]), "procedures"),
        ({"version": "2027.2.1"}, "procedures"),
        (version("2026.1.1"), "not newer than the active 2027.1.1"),
        ("not a document", "JSON object"),
        (version("2027.2.1", extra_key=1), "extra_key"),
    ],
)
def test_a_bad_document_keeps_the_last_good_one_and_is_reported(
    tmp_path: Path, bad: Any, error: str
) -> None:
    conn = open_db(tmp_path / "kiosk.db")
    store = CatalogueStore(conn)
    assert apply_in_tx(store, conn, version("2027.1.1")).outcome == "applied"
    result = apply_in_tx(store, conn, bad)
    assert result.outcome == "refused" and result.error is not None and error in result.error
    assert store.current().version == "2027.1.1"
    status = store.catalogue_status()
    assert status["version"] == "2027.1.1" and error in status["error"]
    assert status["rejected_version"] == (bad.get("version") if isinstance(bad, dict) else None)
    # A good one afterwards clears the refusal.
    assert apply_in_tx(store, conn, version("2027.3.1")).outcome == "applied"
    assert store.catalogue_status() == {
        "version": "2027.3.1",
        "rejected_version": None,
        "error": None,
    }


def test_a_rolled_back_transaction_leaves_the_old_catalogue(tmp_path: Path) -> None:
    """The inbox rolls back when anything in the page fails: never half an update."""
    conn = open_db(tmp_path / "kiosk.db")
    store = CatalogueStore(conn)
    apply_in_tx(store, conn, version("2027.1.1"))
    conn.execute("BEGIN IMMEDIATE")
    assert store.apply(conn, version("2027.5.1")).outcome == "applied"
    conn.execute("ROLLBACK")
    assert store.current().version == "2027.1.1"
    rows = conn.execute("SELECT count(*) FROM catalogue_active").fetchone()[0]
    assert rows == 1


def test_a_readers_connection_sees_the_old_or_the_new_never_a_mix(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    writer = open_db(db)
    writer.execute("PRAGMA journal_mode = WAL")
    store = CatalogueStore(writer)
    apply_in_tx(store, writer, version("2027.1.1"))
    reader = CatalogueStore(open_db(db))
    writer.execute("BEGIN IMMEDIATE")
    store.apply(writer, version("2027.2.1"))
    assert reader.current().version == "2027.1.1"  # not committed yet
    writer.execute("COMMIT")
    assert reader.current().version == "2027.2.1"


def test_an_agent_release_with_a_newer_bundled_catalogue_wins(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "kiosk.db")
    old = bundled_catalogue()
    conn.execute("BEGIN")
    conn.execute(
        "CREATE TABLE catalogue_active (id INTEGER PRIMARY KEY CHECK (id = 1), version TEXT NOT"
        " NULL, body TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    conn.execute("COMMIT")
    store = CatalogueStore(conn)
    older = version("2025.1.1")
    conn.execute(
        "INSERT INTO catalogue_active VALUES (1, '2025.1.1', ?, 0)",
        (json.dumps(older),),
    )
    assert store.current().version == old.version
    assert store.catalogue_status()["version"] == old.version


def test_procedure_api_fee_prefill_and_form_errors_in_vietnamese() -> None:
    cat = bundled_catalogue()
    copy_proc = cat.get("2.000815")
    assert copy_proc.time_limit_days == 0 and copy_proc.same_day
    assert copy_proc.quote({"so_trang": 5, "so_ban": 2}).amount_vnd == 14000
    assert copy_proc.fee_vnd == 2000
    assert cat.get("1.001193").fee_vnd == 0
    assert [p.kind for p in copy_proc.papers] == ["original", "copy"]
    residence = cat.get("1.004222")
    filled = residence.prefill(
        {
            "full_name": "Nguyễn Văn An",
            "id_number": "087205001234",
            "address": "12 Hùng Vương",
            "date_of_birth": date(1990, 1, 2),
        }
    )
    assert filled == {"ho_ten_nguoi_yeu_cau": "Nguyễn Văn An", "so_dinh_danh": "087205001234"}
    assert cat.get("1.004884").prefill({"date_of_birth": date(1990, 1, 2)}) == {
        "ngay_sinh": "1990-01-02"
    }
    with pytest.raises(FormError) as err:
        residence.validate(
            {**filled, "dia_chi_tam_tru": "x", "thoi_han_thang": 6, "so_dien_thoai": "abc"}
        )
    assert err.value.field == "so_dien_thoai" and "Số điện thoại" in err.value.message_vi
    with pytest.raises(FormError) as err:
        residence.validate(
            {**filled, "so_dinh_danh": "12345", "dia_chi_tam_tru": "x", "thoi_han_thang": 6}
        )
    assert err.value.field == "so_dinh_danh" and "12 chữ số" in err.value.message_vi
    with pytest.raises(FormError) as err:
        residence.validate({**filled, "dia_chi_tam_tru": "x", "thoi_han_thang": 25})
    assert err.value.field == "thoi_han_thang" and "từ 1 đến 24" in err.value.message_vi
    with pytest.raises(CitizenError):
        cat.get("9.999999")
