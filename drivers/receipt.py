"""Appointment-slip receipts: the data, its sanitised layout, its raster rendering.

Theory of operation
-------------------
Three pure steps, then one call into python-escpos:

1. :class:`ReceiptData` is what the agent knows about a filed dossier. It is
   frozen and validated when built (limits, paper width, fee vs payment QR).
2. :func:`layout_receipt` turns it into a :class:`ReceiptLayout`: a tuple of
   blocks (:class:`TextBlock`, :class:`Rule`, :class:`QrBlock`) holding only
   sanitised text. Every string that came from a citizen or the network goes
   through :func:`sanitize_text`, which drops every control and format
   character (ESC, GS, DLE, NUL, C1 controls, bidi overrides, zero-width
   characters), so nothing the citizen typed can act as a printer command.
   The ID number is masked here (last 4 digits shown).
3. :func:`render_block` draws one block into a 1-bit Pillow image exactly as
   wide as the paper (576 dots for 80 mm, 384 for 58 mm) with DejaVu Sans,
   which has every Vietnamese glyph. Most receipt printers have no usable
   Vietnamese code page (python-escpos silently prints ``?`` for several
   letters), so the Vietnamese text reaches the printer only as pixels, and
   so do the QR codes: no byte of citizen text is ever sent as text.
4. :func:`emit_receipt` sends the blocks through any python-escpos printer
   object (``Dummy``, ``Usb``, ``Serial``, ``Network``) with ``image()``
   (``GS v 0`` raster) and finishes with ``cut()``. :func:`encode_receipt`
   does it on a ``Dummy`` and returns the bytes, which the printer driver
   stores for reprinting and sends in one go.

No I/O happens here besides reading the two font files (once, cached).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import qrcode
from PIL import Image, ImageDraw, ImageFont

from drivers import DeviceError
from drivers.identity import mask_id
from drivers.vietqr import VietQRError, parse_payload

#: Printable dots per line for each supported paper width (203 dpi heads).
PAPER_WIDTH_PX: dict[int, int] = {80: 576, 58: 384}
#: Where Debian's fonts-dejavu-core puts the fonts.
DEFAULT_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
#: python-escpos printer profile used when the caller names none: 576 dots, full cut.
DEFAULT_PROFILE = "TM-T20II"

# Text limits (characters after sanitising). Longer display text is shortened
# with an ellipsis; codes that must stay exact are refused instead.
LIMITS: dict[str, int] = {
    "office_name": 120,
    "procedure_name": 200,
    "citizen_name": 100,
    "id_number": 20,
    "dossier_code": 40,
    "tracking_url_or_code": 300,
    "payment": 512,
    "hotline": 40,
    "payment_beneficiary": 100,
}

# Citizen-facing labels, exactly as printed.
TITLE = "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ"
LABEL_PROCEDURE = "Thủ tục"
LABEL_DOSSIER = "Mã hồ sơ"
LABEL_CITIZEN = "Người nộp"
LABEL_ID = "Số định danh"
LABEL_FILED = "Thời gian nhận"
LABEL_DUE = "Ngày hẹn trả"
LABEL_FEE = "Lệ phí"
LABEL_HOTLINE = "Đường dây hỗ trợ"
CAPTION_TRACKING = "Quét mã để tra cứu"
CAPTION_PAYMENT = "Quét mã để thanh toán"
LABEL_BENEFICIARY = "Người thụ hưởng"
SAME_DAY = "Trả kết quả trong ngày"
FREE = "Miễn phí"
PAY_AT_COUNTER = "Vui lòng nộp lệ phí tại quầy tiếp nhận"

_WHITESPACE = re.compile(r"\s+")
_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ReceiptError(DeviceError, ValueError):
    """Receipt data that cannot be printed as given; the message names the field and fix."""


def _is_space(ch: str) -> bool:
    # Not str.isspace(): that also counts the separators FS/GS/RS/US and NEL.
    return ch in "\t\n\r\v\f" or unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def sanitize_text(value: str, *, field: str, limit: int) -> str:
    """Make untrusted text safe and printable.

    NFC-normalises (so decomposed tone marks compose), turns tabs, line breaks
    and Unicode spaces into one space, removes every character of Unicode
    category C* (controls such as ESC/GS/DLE/NUL, C1 controls, format characters
    such as bidi overrides and zero-width joiners, surrogates, private use,
    unassigned) and shortens the
    result to ``limit`` characters with a trailing ellipsis.
    """
    if not isinstance(value, str):
        raise ReceiptError(f"receipt field {field} must be text, got {type(value).__name__}")
    text = unicodedata.normalize("NFC", value)
    text = "".join(
        " " if _is_space(ch) else ch
        for ch in text
        if _is_space(ch) or not unicodedata.category(ch).startswith("C")
    )
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def mask_id_number(id_number: str) -> str:
    """Show only the last 4 characters of an ID number, after dropping stray characters."""
    return mask_id("".join(ch for ch in id_number if ch.isascii() and ch.isalnum()))


def format_vnd(amount: int) -> str:
    """``8000`` -> ``'8.000 đồng'`` (Vietnamese thousands separator)."""
    return f"{amount:,}".replace(",", ".") + " đồng"


#: Vietnam's time zone (UTC+7 all year, no daylight saving).
VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")


def format_time(moment: datetime) -> str:
    """``14:05 ngày 26/11/2026``; aware times are shown in Vietnam time, naive ones as given."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(VIETNAM_TZ)
    return f"{moment:%H:%M} ngày {moment:%d/%m/%Y}"


@dataclass(frozen=True, kw_only=True)
class ReceiptData:
    """What goes on an appointment slip (giấy tiếp nhận hồ sơ và hẹn trả kết quả).

    ``due`` None means the result is returned the same day. ``payment`` is a
    VietQR payload whose amount must equal ``fee_vnd``; it must be None when
    there is no fee, and may be None with a fee (paid at the counter).
    """

    office_name: str
    procedure_name: str
    dossier_code: str
    citizen_name: str
    id_number: str
    filed_at: datetime
    due: datetime | None
    fee_vnd: int
    tracking_url_or_code: str
    payment: str | None
    hotline: str
    paper_width_mm: Literal[80, 58] = 80
    #: Account holder printed beside the payment QR (from ``[payment] beneficiary``).
    payment_beneficiary: str = ""

    def __post_init__(self) -> None:
        if self.paper_width_mm not in PAPER_WIDTH_PX:
            raise ReceiptError(
                f"receipt paper_width_mm is {self.paper_width_mm!r}; supported: 80 or 58"
            )
        if not isinstance(self.fee_vnd, int) or isinstance(self.fee_vnd, bool):
            raise ReceiptError("receipt fee_vnd must be a whole number of VND")
        if self.fee_vnd < 0:
            raise ReceiptError(f"receipt fee_vnd is {self.fee_vnd}; it cannot be negative")
        for name in ("filed_at", "due"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, datetime):
                raise ReceiptError(f"receipt {name} must be a datetime")
        if (
            not _CODE_RE.fullmatch(self.dossier_code)
            or len(self.dossier_code) > LIMITS["dossier_code"]
        ):
            raise ReceiptError(
                f"receipt dossier_code {self.dossier_code!r} must be 1-{LIMITS['dossier_code']} "
                "letters, digits, '.', '-' or '_' (national shape: 000.00.14.H56-200203-0118)"
            )
        for name in (
            "office_name",
            "procedure_name",
            "citizen_name",
            "id_number",
            "hotline",
            "payment_beneficiary",
        ):
            if not isinstance(getattr(self, name), str):
                raise ReceiptError(f"receipt {name} must be text")
        tracking = sanitize_text(
            self.tracking_url_or_code, field="tracking_url_or_code", limit=10_000
        )
        if not tracking or len(tracking) > LIMITS["tracking_url_or_code"]:
            raise ReceiptError(
                "receipt tracking_url_or_code must be 1-"
                f"{LIMITS['tracking_url_or_code']} printable characters "
                f"(got {len(tracking)}); a QR code cannot be shortened"
            )
        if self.payment is not None:
            if self.fee_vnd == 0:
                raise ReceiptError(
                    "receipt payment QR given but fee_vnd is 0: pass payment=None for free "
                    "procedures"
                )
            try:
                parsed = parse_payload(self.payment)
            except VietQRError as exc:
                raise ReceiptError(
                    f"receipt payment is not a valid VietQR payload: {exc}"
                ) from None
            if parsed.amount_vnd != self.fee_vnd:
                raise ReceiptError(
                    f"receipt payment QR asks for {parsed.amount_vnd} VND but fee_vnd is "
                    f"{self.fee_vnd}: build the VietQR payload with the fee as its amount"
                )

    @property
    def width_px(self) -> int:
        """Printable width of this receipt in dots."""
        return PAPER_WIDTH_PX[self.paper_width_mm]


# --- layout (pure) ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TextBlock:
    """A paragraph: optional ``label`` (regular) followed by ``value``; wrapped to the width."""

    value: str
    label: str | None = None
    style: Literal["title", "heading", "field", "note"] = "field"


@dataclass(frozen=True, kw_only=True)
class Rule:
    """A horizontal separator line."""


@dataclass(frozen=True, kw_only=True)
class QrBlock:
    """A QR code printed as an image, centred."""

    payload: str


Block = TextBlock | Rule | QrBlock


@dataclass(frozen=True, kw_only=True)
class ReceiptLayout:
    """Sanitised content of one receipt, top to bottom."""

    width_px: int
    blocks: tuple[Block, ...]


def layout_receipt(data: ReceiptData) -> ReceiptLayout:
    """The sanitised blocks of ``data`` (no fonts, no pixels)."""

    def clean(name: str) -> str:
        return sanitize_text(getattr(data, name), field=name, limit=LIMITS[name])

    due = format_time(data.due) if data.due is not None else SAME_DAY
    fee = format_vnd(data.fee_vnd) if data.fee_vnd else FREE
    tracking = sanitize_text(
        data.tracking_url_or_code,
        field="tracking_url_or_code",
        limit=LIMITS["tracking_url_or_code"],
    )
    blocks: list[Block] = [
        TextBlock(value=clean("office_name"), style="heading"),
        TextBlock(value=TITLE, style="title"),
        Rule(),
        TextBlock(label=LABEL_PROCEDURE, value=clean("procedure_name")),
        TextBlock(label=LABEL_DOSSIER, value=data.dossier_code),
        TextBlock(label=LABEL_CITIZEN, value=clean("citizen_name")),
        TextBlock(label=LABEL_ID, value=mask_id_number(clean("id_number"))),
        TextBlock(label=LABEL_FILED, value=format_time(data.filed_at)),
        TextBlock(label=LABEL_DUE, value=due),
        TextBlock(label=LABEL_FEE, value=fee),
        Rule(),
        TextBlock(value=CAPTION_TRACKING, style="heading"),
        QrBlock(payload=tracking),
        TextBlock(value=tracking, style="note"),
    ]
    if data.fee_vnd:
        if data.payment is not None:
            blocks += [
                TextBlock(value=CAPTION_PAYMENT, style="heading"),
                QrBlock(payload=sanitize_text(data.payment, field="payment", limit=10_000)),
                TextBlock(value=fee, style="note"),
            ]
            if data.payment_beneficiary.strip():
                blocks.append(
                    TextBlock(label=LABEL_BENEFICIARY, value=clean("payment_beneficiary"))
                )
        else:
            blocks.append(TextBlock(value=PAY_AT_COUNTER, style="note"))
    blocks += [Rule(), TextBlock(label=LABEL_HOTLINE, value=clean("hotline"))]
    return ReceiptLayout(width_px=data.width_px, blocks=tuple(blocks))


# --- rendering (pure apart from reading the fonts) ----------------------------------------

_Font = ImageFont.FreeTypeFont


@dataclass(frozen=True, kw_only=True)
class ReceiptFonts:
    """TrueType fonts for the receipt; both must have every Vietnamese glyph."""

    regular: Path
    bold: Path

    @classmethod
    def from_dir(cls, font_dir: Path = DEFAULT_FONT_DIR) -> ReceiptFonts:
        """DejaVu Sans and DejaVu Sans Bold from ``font_dir``; clear error when missing."""
        fonts = cls(regular=font_dir / "DejaVuSans.ttf", bold=font_dir / "DejaVuSans-Bold.ttf")
        for path in (fonts.regular, fonts.bold):
            if not path.is_file():
                raise ReceiptError(
                    f"receipt font {path} is missing: install the Debian package "
                    "fonts-dejavu-core (scripts/bootstrap does) or pass another font_dir"
                )
        return fonts


@functools.lru_cache(maxsize=32)
def _font(path: Path, size: int) -> _Font:
    return ImageFont.truetype(str(path), size)


def _sizes(width_px: int) -> dict[str, int]:
    if width_px >= 576:
        return {"title": 26, "heading": 24, "field": 24, "note": 20}
    return {"title": 20, "heading": 19, "field": 19, "note": 16}


def _wrap(
    tokens: Sequence[tuple[str, _Font]], width: int, space: float
) -> list[list[tuple[str, _Font]]]:
    """Greedy word wrap of styled words; over-long words are split by character."""
    lines: list[list[tuple[str, _Font]]] = [[]]
    used = 0.0
    for word, font in tokens:
        pieces = [word]
        if font.getlength(word) > width:
            pieces, current = [], ""
            for ch in word:
                if current and font.getlength(current + ch) > width:
                    pieces.append(current)
                    current = ""
                current += ch
            pieces.append(current)
        for piece in pieces:
            w = font.getlength(piece)
            needed = w if not lines[-1] else used + space + w
            if lines[-1] and needed > width:
                lines.append([])
                needed = w
            lines[-1].append((piece, font))
            used = needed
    return lines


def render_block(block: Block, width_px: int, fonts: ReceiptFonts | None = None) -> Image.Image:
    """One block as a 1-bit image ``width_px`` wide (black = 0 = printed dot)."""
    if isinstance(block, Rule):
        image = Image.new("1", (width_px, 12), 255)
        ImageDraw.Draw(image).rectangle((0, 5, width_px - 1, 6), fill=0)
        return image
    if isinstance(block, QrBlock):
        return _render_qr(block.payload, width_px)
    fonts = fonts or ReceiptFonts.from_dir()
    size = _sizes(width_px)[block.style]
    regular = _font(fonts.regular, size)
    bold = _font(fonts.bold, size)
    value_font = regular if block.style == "note" else bold
    tokens: list[tuple[str, _Font]] = []
    if block.label is not None:
        label_words = (block.label + ":").split(" ")
        tokens += [(w, regular) for w in label_words]
    tokens += [(w, value_font) for w in block.value.split(" ") if w]
    space = regular.getlength(" ")
    margin = 4
    lines = _wrap(tokens, width_px - 2 * margin, space)
    ascent, descent = regular.getmetrics()
    pad_top = size // 4  # room for stacked marks above capitals (Ẫ, Ể)
    line_height = pad_top + ascent + descent + 2
    image = Image.new("1", (width_px, line_height * len(lines) + 4), 255)
    draw = ImageDraw.Draw(image)
    centred = block.style in ("title", "heading") or (block.style == "note" and block.label is None)
    for row, line in enumerate(lines):
        line_width = sum(f.getlength(w) for w, f in line) + space * (len(line) - 1)
        x = (width_px - line_width) / 2 if centred else float(margin)
        y = row * line_height + pad_top + 2
        for word, font in line:
            draw.text((x, y), word, font=font, fill=0, anchor="la")
            x += font.getlength(word) + space
    return image


def qr_matrix(payload: str) -> list[list[bool]]:
    """The module matrix (no quiet zone) of the QR code printed for ``payload``."""
    code = qrcode.QRCode(version=None, error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    code.add_data(payload)
    code.make(fit=True)
    return [list(row) for row in code.get_matrix()]


def _render_qr(payload: str, width_px: int) -> Image.Image:
    matrix = qr_matrix(payload)
    n = len(matrix)
    target = min(width_px * 2 // 3, 320)
    module = max(2, target // n)
    if n * module > width_px - 16:
        raise ReceiptError(
            f"QR payload of {len(payload)} characters needs {n}x{n} modules, too many for "
            f"{width_px} dots: shorten the tracking URL or use a code"
        )
    quiet = 4 * module
    side = n * module
    image = Image.new("1", (width_px, side + 2 * quiet), 255)
    draw = ImageDraw.Draw(image)
    left = (width_px - side) // 2
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                x, y = left + c * module, quiet + r * module
                draw.rectangle((x, y, x + module - 1, y + module - 1), fill=0)
    return image


# --- ESC/POS through python-escpos ---------------------------------------------------------


def emit_receipt(printer: Any, data: ReceiptData, fonts: ReceiptFonts | None = None) -> None:
    """Print ``data`` through a python-escpos printer object (Dummy, Usb, Serial, Network).

    Every block goes out as a ``GS v 0`` raster image, then the paper is fed and cut.
    """
    layout = layout_receipt(data)
    fonts = fonts or ReceiptFonts.from_dir()
    printer.hw("INIT")
    for block in layout.blocks:
        printer.image(render_block(block, layout.width_px, fonts), impl="bitImageRaster")
    printer.cut()


def encode_receipt(
    data: ReceiptData, *, profile: str | None = None, fonts: ReceiptFonts | None = None
) -> bytes:
    """The exact ESC/POS bytes :func:`emit_receipt` produces for a printer ``profile``."""
    from escpos.printer import Dummy

    dummy = Dummy(profile=profile or DEFAULT_PROFILE)
    emit_receipt(dummy, data, fonts)
    return bytes(dummy.output)
