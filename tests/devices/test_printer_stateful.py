"""Stateful: random faults, prints, reprints and polls against a simple model of the printer."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from drivers.printer import PrinterFault, PrinterState, ReceiptPrinter
from drivers.receipt import ReceiptData, encode_receipt
from firmware_mocks.usb_printer import EmulatedUsbPrinter

BASE = ReceiptData(
    office_name="UBND phường Đặng Quốc Việt",
    procedure_name="Chứng thực chữ ký",
    dossier_code="X",
    citizen_name="Nguyễn Thị Ngọc Hường",
    id_number="001234567890",
    filed_at=datetime(2026, 11, 26, 9, 0),
    due=None,
    fee_vnd=0,
    tracking_url_or_code="X",
    payment=None,
    hotline="1900 1234",
)
CODES = ["D-1", "D-2", "D-3"]
RECEIPTS = {c: replace(BASE, dossier_code=c, tracking_url_or_code=c) for c in CODES}
BYTES = {c: encode_receipt(r) for c, r in RECEIPTS.items()}
SWITCHES = ["paper_end", "paper_near_end", "cover_open", "silent"]


class PrinterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.device = EmulatedUsbPrinter()
        self.printer = ReceiptPrinter(
            "usb://04b8:0e15", spool_dir=self.dir, usb_backend=self.device
        )
        self.switches = dict.fromkeys(SWITCHES, False)
        self.plugged = True
        self.pending: set[str] = set()
        self.stored: set[str] = set()
        self.printed = b""

    def expected(self) -> PrinterState:
        if not self.plugged:
            return PrinterState.UNPLUGGED
        if self.switches["silent"]:
            return PrinterState.OFFLINE
        if self.switches["cover_open"]:
            return PrinterState.COVER_OPEN
        if self.switches["paper_end"]:
            return PrinterState.PAPER_OUT
        if self.switches["paper_near_end"]:
            return PrinterState.PAPER_NEAR_END
        return PrinterState.OK

    @rule(switch=st.sampled_from(SWITCHES), on=st.booleans())
    def flip(self, switch: str, on: bool) -> None:
        setattr(self.device, switch, on)
        self.switches[switch] = on

    @rule()
    def unplug(self) -> None:
        self.device.unplug()
        self.plugged = False

    @rule()
    def plug(self) -> None:
        self.device.plug()
        self.plugged = True

    @rule()
    def poll(self) -> None:
        assert self.printer.poll_status().state is self.expected()

    def _outcome(self, code: str, action: str) -> None:
        before = len(self.device.received)
        try:
            status = (
                self.printer.print_receipt(RECEIPTS[code])
                if action == "print"
                else self.printer.reprint(code)
            )
        except PrinterFault as fault:
            assert not self.expected().can_print
            assert fault.status.state is self.expected()
            assert len(self.device.received) == before  # nothing sent
            self.pending.add(code)
        else:
            assert self.expected().can_print and status.state is self.expected()
            self.printed += BYTES[code]
            self.pending.discard(code)

    @rule(code=st.sampled_from(CODES))
    def print_receipt(self, code: str) -> None:
        self.stored.add(code)
        self._outcome(code, "print")

    @precondition(lambda self: bool(self.stored))
    @rule(data=st.data())
    def reprint(self, data: st.DataObject) -> None:
        self._outcome(data.draw(st.sampled_from(sorted(self.stored))), "reprint")

    @invariant()
    def model_matches(self) -> None:
        assert set(self.printer.unprinted()) == self.pending
        assert bytes(self.device.received) == self.printed

    def teardown(self) -> None:
        self.printer.close()
        shutil.rmtree(self.dir, ignore_errors=True)


PrinterMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
TestPrinterMachine = PrinterMachine.TestCase
