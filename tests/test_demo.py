"""The README's first command: aps-demo --once ends with a truthful JSON summary."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from PIL import Image


def test_demo_once_files_and_syncs_everything(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent.demo", "--once", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["submitted"] == 12
    assert summary["at_central"] == 12
    assert summary["duplicates"] == 0 and summary["lost"] == 0
    assert summary["sequence_gaps"] == 0
    assert (out / "kiosk.db").exists() and (out / "central.db").exists()
    # Every filed dossier's receipt reached the emulated printer and was kept.
    assert summary["receipts"] == 12
    conn = sqlite3.connect(f"file:{out / 'kiosk.db'}?mode=ro", uri=True)
    codes = {row[0] for row in conn.execute("SELECT code FROM dossiers")}
    conn.close()
    receipts = out / "receipts"
    assert {p.stem for p in receipts.glob("*.png")} == codes
    assert {p.stem for p in receipts.glob("*.bin")} == codes
    png = receipts / f"{sorted(codes)[0]}.png"
    with Image.open(png) as image:
        image.load()
        assert image.width == 576  # 80 mm paper, 203 dpi
        assert 600 <= image.height <= 4000
        assert image.convert("L").getextrema() == (0, 255)  # ink on paper, not blank
    assert all(p.stat().st_size > 10_000 for p in receipts.glob("*.bin"))  # raster + QR
    assert "scanner" in proc.stdout and "receipt printed" in proc.stdout
    # The demo drives the kiosk application: signed filings (PNG + strokes each),
    # a rating per filing, a question, a home visit and the help button, at central.
    assert summary["kinds"] == {
        "chunk": 24,
        "dossier": 12,
        "feedback": 1,
        "rating": 12,
        "support": 2,
    }
    assert summary["lookup_codes"]["help"].startswith("HO-")
    # Every model's answer from central reached the kiosk: a status change and a bank's
    # payment from the back-office API, the staff's answer, the on-duty staff member's
    # reply to the help request (and their webhook notification), a FAQ item and a new
    # catalogue version, each read back through the kiosk application's own services.
    assert summary["arrived"] == {
        "status": True,
        "paid": True,
        "answer": True,
        "support_reply": True,
        "faq": True,
        "catalogue": True,
    }
    (tracked,) = summary["tracked"].values()
    assert tracked == {"state": "result-ready", "paid": True}
    assert summary["downlink_at_kiosk"] == {
        "answer": 1,
        "catalogue": 1,
        "dossier-status": 1,
        "faq": 1,
        "support-reply": 1,
    }
    assert summary["staff_notified"] >= 1
    assert "Trần Thị Mai" in proc.stdout  # who is coming, on the kiosk's screen text
