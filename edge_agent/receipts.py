"""Receipts after filing: the appointment slip of a filed dossier, printed only then.

Invariant 1 (durable before promised) is kept by the order of calls, and the
types make it hard to get wrong: a receipt is built from a
:class:`edge_agent.dossiers.Filed`, which only :meth:`DossierDesk.file` returns,
and only after the dossier's transaction committed with ``synchronous=FULL``.
:func:`file_and_print` does both steps in that order.

A printer fault never costs the dossier: it is already committed. The driver
keeps the receipt's bytes in its spool as unprinted
(:meth:`drivers.printer.ReceiptPrinter.unprinted`, ``reprint(code)``), and the
citizen reads on screen, in Vietnamese, that the dossier is safe, its code, and
where to get the slip. :class:`ReceiptOutcome.screen_text` is that message.

What goes on the slip: office name and hotline from ``[kiosk]``; procedure,
dossier code, citizen name, ID number (the layout masks it: last 4 digits),
time received; the due time, or nothing when ``filed.same_day`` (the layout then
prints "Trả kết quả trong ngày"); the fee; a tracking QR holding
``[kiosk] tracking_url`` + the code (or the bare code); and, when a fee is due
and ``[payment] payment_qr`` is on, a VietQR payment code for exactly the fee
to ``[payment]``'s bank account, with the dossier code as the transfer note
and the beneficiary printed beside it. While ``[payment]`` is still the
shipped placeholder (970415/0000000000) no payment code is printed: the slip
says to pay at the counter (and the agent warns at start and in check-config).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from drivers.printer import PrinterFault, ReceiptPrinter
from drivers.receipt import ReceiptData
from drivers.vietqr import VietQRError, build_payload
from edge_agent.config import AgentConfig, KioskSection, PaymentSection
from edge_agent.dossiers import Applicant, DossierDesk, Filed

__all__ = [
    "ReceiptOutcome",
    "build_receipt",
    "file_and_print",
    "print_after_filing",
    "tracking_payload",
]

log = logging.getLogger("aps.receipts")

SCREEN_PRINTED = (
    "Hồ sơ của Ông/Bà đã được tiếp nhận. Mã hồ sơ: {code}. Xin mời nhận giấy hẹn ở khe máy in."
)
SCREEN_NOT_PRINTED = (
    "Hồ sơ của Ông/Bà đã được tiếp nhận và lưu an toàn. Mã hồ sơ: {code}. "
    "Máy in đang gặp sự cố nên chưa in được giấy hẹn. Xin vui lòng ghi lại mã hồ sơ "
    "và đến quầy Một cửa để được in lại giấy hẹn."
)
SCREEN_NO_PRINTER = (
    "Hồ sơ của Ông/Bà đã được tiếp nhận. Mã hồ sơ: {code}. "
    "Xin vui lòng ghi lại mã hồ sơ để tra cứu kết quả."
)


@dataclass(frozen=True, kw_only=True)
class ReceiptOutcome:
    """What happened to a filed dossier's receipt, and what the screen says about it.

    ``reprintable``: the receipt is kept in the printer's spool for ``reprint(code)``.
    """

    dossier_code: str
    printed: bool
    reprintable: bool
    screen_text: str
    printer_state: str | None


def tracking_payload(code: str, tracking_url: str) -> str:
    """The tracking QR's content: ``tracking_url`` + ``code``, or ``code`` alone."""
    return f"{tracking_url}{code}" if tracking_url else code


def build_receipt(
    filed: Filed,
    kiosk: KioskSection,
    payment: PaymentSection,
    *,
    paper_width_mm: Literal[80, 58] = 80,
) -> ReceiptData:
    """The appointment slip of ``filed`` (pure: no I/O)."""
    payment_qr: str | None = None
    if filed.fee_vnd > 0 and payment.payment_qr and payment.is_placeholder:
        # Never a code that sends a citizen's money to the shipped placeholder account.
        log.warning(
            "receipt %s: no payment QR: [payment] is still the placeholder account %s/%s; "
            "the slip says to pay at the counter",
            filed.code,
            payment.bank_bin,
            payment.account,
        )
    elif filed.fee_vnd > 0 and payment.payment_qr:
        try:
            payment_qr = build_payload(
                payment.bank_bin, payment.account, filed.fee_vnd, f"HS {filed.code}"
            )
        except VietQRError as exc:  # e.g. a code too long for the transfer note
            log.warning("receipt %s: no payment QR (%s); pay at the counter", filed.code, exc)
    return ReceiptData(
        office_name=kiosk.office_name,
        procedure_name=filed.procedure_name,
        dossier_code=filed.code,
        citizen_name=filed.applicant.full_name,
        id_number=filed.applicant.id_number,  # masked by the layout, never printed whole
        filed_at=filed.filed_at,
        due=None if filed.same_day else filed.due,
        fee_vnd=filed.fee_vnd,
        tracking_url_or_code=tracking_payload(filed.code, kiosk.tracking_url),
        payment=payment_qr,
        hotline=kiosk.hotline,
        paper_width_mm=paper_width_mm,
        payment_beneficiary=payment.beneficiary if payment_qr is not None else "",
    )


def print_after_filing(
    filed: Filed, data: ReceiptData, printer: ReceiptPrinter | None
) -> ReceiptOutcome:
    """Print ``data``, the receipt of the already committed ``filed``.

    Raises only ``ValueError`` when ``data`` is another dossier's receipt. Any
    printing failure leaves the dossier as it is (committed) and gives the
    citizen the code and a clear message; a receipt the driver could spool
    stays reprintable.
    """
    code = filed.code
    if data.dossier_code != code:
        raise ValueError(f"receipt for {data.dossier_code} given with dossier {code}")
    if printer is None:
        return ReceiptOutcome(
            dossier_code=code,
            printed=False,
            reprintable=False,
            screen_text=SCREEN_NO_PRINTER.format(code=code),
            printer_state=None,
        )
    try:
        status = printer.print_receipt(data)
    except PrinterFault as fault:
        log.warning("receipt %s not printed: %s", code, fault)
        state: str | None = fault.status.state.value
    except Exception as exc:  # bad data or a full disk: the dossier is safe all the same
        log.error("receipt %s not printed: %s: %s", code, type(exc).__name__, exc)
        state = printer.status().state.value
    else:
        return ReceiptOutcome(
            dossier_code=code,
            printed=True,
            reprintable=True,
            screen_text=SCREEN_PRINTED.format(code=code),
            printer_state=status.state.value,
        )
    try:
        reprintable = code in printer.unprinted()
    except OSError:
        reprintable = False
    return ReceiptOutcome(
        dossier_code=code,
        printed=False,
        reprintable=reprintable,
        screen_text=SCREEN_NOT_PRINTED.format(code=code),
        printer_state=state,
    )


def file_and_print(
    desk: DossierDesk,
    printer: ReceiptPrinter | None,
    cfg: AgentConfig,
    procedure_code: str,
    applicant: Applicant,
    form: dict[str, Any],
    *,
    now: datetime | None = None,
) -> tuple[Filed, ReceiptOutcome]:
    """File the dossier (committed durably), then, and only then, print its receipt.

    :class:`edge_agent.CitizenError` from filing propagates (nothing was filed,
    nothing is printed); printing never raises.
    """
    filed = desk.file(procedure_code, applicant, form, now=now)
    try:
        data = build_receipt(
            filed, cfg.kiosk, cfg.payment, paper_width_mm=cfg.devices.paper_width_mm
        )
    except Exception as exc:  # e.g. a config the layout refuses: the dossier is safe
        log.error("receipt %s cannot be built: %s: %s", filed.code, type(exc).__name__, exc)
        return filed, ReceiptOutcome(
            dossier_code=filed.code,
            printed=False,
            reprintable=False,
            screen_text=SCREEN_NOT_PRINTED.format(code=filed.code),
            printer_state=None if printer is None else printer.status().state.value,
        )
    return filed, print_after_filing(filed, data, printer)
