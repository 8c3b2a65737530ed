"""``aps-central fleet``: the table for 500 kiosks, the filters, the sort, JSON lines, show."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.cli import main as central_cli
from central.fleet.fleet_table import TABLE_WIDTH
from central.fleet.registry import Registry
from central.ingest import FleetUpdate, classify_fleet
from central.store import SQLiteStore
from sync.envelope import encode_heartbeat, encode_status, heartbeat_topic, status_topic

N = 500
OFFICES = [f"000.00.{10 + n}.H56" for n in range(N // 10)]  # ten kiosks (slots 0-9) each


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _kind(i: int) -> str:
    """What kiosk i is doing: most work, some fault, some are gone."""
    if i % 50 == 7:
        return "never-seen"
    if i % 25 == 3:
        return "offline"
    if i % 10 == 1:
        return "degraded"
    if i == 499:
        return "long-silent"
    return "operational"


@pytest.fixture(scope="module")
def fleet_cfg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("fleet500")
    db = tmp / "central.db"
    store = SQLiteStore(db)
    registry = Registry(db)
    key = Ed25519PrivateKey.generate().public_key()
    now = time.time()
    items = []
    for i in range(N):
        kiosk = f"kiosk-{i:04d}" if i != 42 else "kiosk-with-a-very-long-identifier-0042"
        office = OFFICES[i // 10]
        registry.add_kiosk(kiosk, office=office, slot=i % 10, agency=office, signing_key=key)
        kind = _kind(i)
        if kind == "never-seen":
            continue
        printer = "paper_out" if kind == "degraded" else "ok"
        fields = {
            "queued": i % 7,
            "oldest_queued_s": (i % 7) * 30,
            "agent_version": "0.9.0",
            "disk_free_bytes": 8 * 1024**3,
            "devices": {
                "printer": {"state": printer},
                "reader": {"state": "ok"},
                "scanner": {"state": "ok"},
            },
        }
        items.append(classify_fleet(status_topic(kiosk), encode_status(kiosk, "online", _iso(now))))
        items.append(
            classify_fleet(heartbeat_topic(kiosk), encode_heartbeat(kiosk, _iso(now), **fields))
        )
        if kind == "offline":
            items.append(
                classify_fleet(status_topic(kiosk), encode_status(kiosk, "offline", _iso(now)))
            )
    assert all(isinstance(x, FleetUpdate) for x in items)
    store.ingest(items)
    with store.conn:  # kiosk 499 last heard two hours ago
        store.conn.execute(
            "UPDATE kiosks SET last_heartbeat_at = ?, state_at = ? WHERE kiosk = 'kiosk-0499'",
            (now - 7200, now - 7300),
        )
    registry.close()
    store.close()
    cfg = tmp / "central.toml"
    cfg.write_text(f'[central]\ndatabase = "{db}"\n', encoding="utf-8")
    return cfg


def _run(cfg: Path, *args: str) -> str:
    result = CliRunner().invoke(central_cli, ["fleet", "--config", str(cfg), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_table_for_500_kiosks_fits_120_columns_one_line_each(fleet_cfg: Path) -> None:
    lines = _run(fleet_cfg).splitlines()
    header, body, summary = lines[0], lines[1:-1], lines[-1]
    assert header.split()[:3] == ["KIOSK", "OFFICE", "STATE"]
    assert len(body) == N
    assert max(len(line) for line in lines) <= TABLE_WIDTH
    assert body[0].startswith("kiosk-0000 ")
    assert any(line.startswith("kiosk-with-a-very-l… ") for line in body)
    counts = {"operational": 0, "degraded": 0, "offline": 0, "never-seen": 0}
    for i in range(N):
        kind = _kind(i)
        counts["offline" if kind == "long-silent" else kind] += 1
    expected = (
        f"{N} kiosks: {counts['offline']} offline, {counts['degraded']} degraded,"
        f" {counts['never-seen']} never-seen, {counts['operational']} operational"
    )
    assert summary == expected
    degraded = next(line for line in body if line.startswith("kiosk-0001 "))
    assert " 2/3 ok " in degraded and degraded.endswith(" printer paper_out")
    silent = next(line for line in body if line.startswith("kiosk-0499 "))
    assert " offline " in silent and "not heard for 72" in silent and " 2h " in silent


def test_json_lines_carry_the_state_and_the_reasons(fleet_cfg: Path) -> None:
    rows = {r["kiosk"]: r for r in map(json.loads, _run(fleet_cfg, "--json").splitlines())}
    assert len(rows) == N
    assert rows["kiosk-0001"]["state"] == "degraded"
    assert rows["kiosk-0001"]["reasons"] == ["printer paper_out"]
    assert rows["kiosk-0003"]["state"] == "offline" and rows["kiosk-0003"]["down"] is True
    assert rows["kiosk-0003"]["reasons"] == ["said offline"]
    assert rows["kiosk-0007"]["state"] == "never-seen" and rows["kiosk-0007"]["slot"] == 7
    assert rows["kiosk-0000"]["state"] == "operational" and rows["kiosk-0000"]["reasons"] == []
    assert rows["kiosk-0000"]["office"] == OFFICES[0] and rows["kiosk-0000"]["queued"] == 0


def test_filters_by_office_state_and_problems(fleet_cfg: Path) -> None:
    def kiosks(*args: str) -> list[dict[str, object]]:
        return list(map(json.loads, _run(fleet_cfg, "--json", *args).splitlines()))

    assert {r["office"] for r in kiosks("--office", OFFICES[1])} == {OFFICES[1]}
    both = kiosks("--state", "offline", "--state", "never-seen")
    assert {r["state"] for r in both} == {"offline", "never-seen"}
    problems = kiosks("--problems")
    assert problems and all(r["state"] != "operational" for r in problems)
    assert len(problems) == len(both) + len(kiosks("--state", "degraded"))
    narrowed = kiosks("--problems", "--office", OFFICES[0], "--state", "degraded")
    assert narrowed and all(
        r["office"] == OFFICES[0] and r["state"] == "degraded" for r in narrowed
    )
    table = _run(fleet_cfg, "--state", "degraded").splitlines()
    assert table[-1].endswith("degraded") and all(" degraded " in x for x in table[1:-1])


@pytest.mark.parametrize(
    ("key", "first"),
    [
        ("kiosk", "kiosk-0000"),
        ("state", None),  # worst first: offline before degraded before operational
        ("heard", "kiosk-0007"),  # never heard at the top
        ("queue", None),
    ],
)
def test_sort_orders(fleet_cfg: Path, key: str, first: str | None) -> None:
    rows = list(map(json.loads, _run(fleet_cfg, "--json", "--sort", key).splitlines()))
    if first is not None:
        assert rows[0]["kiosk"] == first
    if key == "state":
        order = ["offline", "degraded", "never-seen", "operational"]
        ranks = [order.index(str(r["state"])) for r in rows]
        assert ranks == sorted(ranks)
    if key == "queue":
        queues = [r["queued"] or 0 for r in rows]
        assert queues == sorted(queues, reverse=True)


def test_show_one_kiosk_with_its_devices_and_history(fleet_cfg: Path) -> None:
    out = _run(fleet_cfg, "show", "kiosk-0001")
    assert "State       degraded: printer paper_out" in out
    assert "printer            paper_out" in out
    assert "History     1 samples" in out
    data = json.loads(_run(fleet_cfg, "show", "kiosk-0001", "--json"))
    assert data["state"] == "degraded" and len(data["history"]) == 1
    assert data["history"][0]["state"] == "degraded"
    assert data["history"][0]["devices"]["printer"] == "paper_out"


def test_show_names_an_unknown_kiosk_and_a_bad_since(fleet_cfg: Path) -> None:
    result = CliRunner().invoke(central_cli, ["fleet", "show", "nope", "--config", str(fleet_cfg)])
    assert result.exit_code != 0 and "no kiosk 'nope'" in result.output
    result = CliRunner().invoke(
        central_cli, ["fleet", "show", "kiosk-0001", "--since", "ages", "--config", str(fleet_cfg)]
    )
    assert result.exit_code != 0 and "--since" in result.output and "24h" in result.output


def test_an_empty_fleet_says_so(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "central.db").close()
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'[central]\ndatabase = "{tmp_path / "central.db"}"\n', encoding="utf-8")
    assert _run(cfg).splitlines()[-1] == "0 kiosks"
