"""Durable before promised (invariant 1), seen at the system-call level.

A SIGKILL keeps the page cache, so a kill test cannot tell a commit that
reached the disk from one that only reached the kernel. This test watches the
calls themselves: a filing runs in a child process under an LD_PRELOAD shim
(tests/fsync_shim.c, compiled with gcc here) that logs every write to and every
fsync/fdatasync of the kiosk database's files, and the child appends a marker
to the same log each time ``DossierDesk.file()`` or ``Outbox.add()`` returns,
and when the first byte of a receipt reaches the (emulated USB) printer in the
agent's own ``file_and_print``.
At every marker, each database file (the main file, its WAL or rollback
journal) must have been flushed after its last write: what was promised then
survives a power cut. ``PRAGMA synchronous=NORMAL`` or ``OFF`` on the
outbox's connection leaves the WAL unflushed after a commit and fails here.
The -shm file is the WAL's index, rebuilt from the WAL after a crash: it is
never flushed and need not be.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SHIM_SOURCE = Path(__file__).with_name("fsync_shim.c")
ROOT = Path(__file__).resolve().parent.parent
FILINGS = 5
ADDS = 3
PRINTS = 2

CHILD = """
import os, sys
from pathlib import Path
from zoneinfo import ZoneInfo
from edge_agent.catalogue import bundled_catalogue
from edge_agent.dossiers import Applicant, DossierDesk
from edge_agent.due_date import OfficeRules, WorkCalendar
from sync.outbox import Outbox

db, log, spool = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
filings, adds, prints = map(int, sys.argv[4:7])
marks = os.open(log, os.O_WRONLY | os.O_APPEND)

def mark(text):
    os.write(marks, ("M " + text + "\\n").encode())

outbox = Outbox(db, "k-fsync-01", min_free_disk_bytes=0)
desk = DossierDesk(
    outbox, bundled_catalogue(), WorkCalendar(OfficeRules()),
    agency="000.00.14.H56", slot=1, tz=ZoneInfo("Asia/Ho_Chi_Minh"),
)
mark("opened")
for i in range(filings):
    filed = desk.file(
        "2.000884",
        Applicant(full_name="Nguyễn Thị Ngọc Hường", id_number="087205001234"),
        {"ten_van_ban": f"Giấy uỷ quyền số {i}"},
    )
    mark("promised file() " + filed.code)
for i in range(adds):
    rec = outbox.add("support", {"topic": "máy in", "message": f"Hết giấy {i}", "contact": ""})
    mark("promised add() " + rec.id)
outbox.close()

# The agent's own path: its desk from its config, then the receipt on a printer
# that marks the log when the first print byte reaches it.
from drivers.printer import ReceiptPrinter
from edge_agent.agent import open_desk
from edge_agent.config import AgentConfig
from edge_agent.receipts import file_and_print
from firmware_mocks.usb_printer import EmulatedUsbPrinter

class MarkingPrinter(EmulatedUsbPrinter):
    printing = False

    def bulk_write(self, dev_handle, ep, intf, data, timeout):
        payload = bytes(data)
        if not self.printing and not (len(payload) == 3 and payload[:2] == b"\x10\x04"):
            self.printing = True
            mark("promised: receipt printing")
        return super().bulk_write(dev_handle, ep, intf, data, timeout)

cfg = AgentConfig.model_validate({
    "kiosk": {"id": "k-fsync-01", "agency": "000.00.14.H56", "slot": 1},
    "agent": {"database": str(db)},
})
desk = open_desk(cfg)
for i in range(prints):
    usb = MarkingPrinter()
    printer = ReceiptPrinter("usb://04b8:0e15", spool_dir=spool, usb_backend=usb)
    filed, outcome = file_and_print(
        desk, printer, cfg, "2.000884",
        Applicant(full_name="Đặng Quốc Việt", id_number="087205012345"),
        {"ten_van_ban": f"Giấy uỷ quyền in {i}"},
    )
    assert outcome.printed, outcome
    printer.close()
    mark("returned file_and_print() " + filed.code)
desk.outbox.close()
"""


@dataclass
class Interval:
    """What happened to the watched files between two markers."""

    marker: str
    written: list[str] = field(default_factory=list)
    synced: list[str] = field(default_factory=list)
    unflushed: set[str] = field(default_factory=set)  # files dirty when the marker came


def read_log(log: Path) -> list[Interval]:
    out: list[Interval] = []
    dirty: set[str] = set()
    current = Interval(marker="(start)")
    for line in log.read_text(encoding="utf-8").splitlines():
        op, _, rest = line.partition(" ")
        if op == "W":
            current.written.append(rest)
            dirty.add(rest)
        elif op == "S":
            current.synced.append(rest)
            dirty.discard(rest)
        elif op == "M":
            current.marker = rest
            current.unflushed = {p for p in dirty if not p.endswith("-shm")}
            out.append(current)
            current = Interval(marker="(after)")
    return out


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not sys.platform.startswith("linux"):
        pytest.skip("the LD_PRELOAD shim is Linux-only")
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found: scripts/bootstrap.sh installs it (apt-get install gcc)")
    out = tmp_path_factory.mktemp("shim") / "fsync_shim.so"
    command = [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(out)]
    subprocess.run([*command, str(SHIM_SOURCE), "-ldl"], check=True)
    return out


def run_filings(shim: Path, tmp_path: Path) -> tuple[Path, list[Interval]]:
    data = (tmp_path / "kiosk").resolve()
    data.mkdir()
    log = tmp_path / "io.log"
    log.touch()
    env = {
        **os.environ,
        "LD_PRELOAD": str(shim),
        "APS_IO_WATCH": f"{data}/",
        "APS_IO_LOG": str(log),
    }
    spool = tmp_path / "spool"  # not watched: the slip's own bytes need no fsync
    counts = [str(n) for n in (FILINGS, ADDS, PRINTS)]
    subprocess.run(
        [sys.executable, "-c", CHILD, str(data / "kiosk.db"), str(log), str(spool), *counts],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    return data / "kiosk.db", read_log(log)


def test_every_filing_is_on_disk_when_it_is_promised(shim: Path, tmp_path: Path) -> None:
    db, intervals = run_filings(shim, tmp_path)
    wal = f"{db}-wal"
    promises = [i for i in intervals if i.marker.startswith("promised")]
    markers = [i.marker for i in intervals]
    assert len(promises) == FILINGS + ADDS + PRINTS, markers
    assert sum("receipt printing" in m for m in markers) == PRINTS, markers
    for interval in promises:
        # The shim saw the commit itself (else this test could not fail) ...
        assert wal in interval.written, f"{interval.marker}: no write to the WAL was logged"
        # ... and when the promise was made, everything written had been flushed.
        assert not interval.unflushed, (
            f"{interval.marker}: came while {sorted(interval.unflushed)} held writes "
            "not yet flushed with fsync/fdatasync (lost in a power cut)"
        )
        assert wal in interval.synced
    for interval in intervals:
        assert not interval.unflushed, interval.marker
