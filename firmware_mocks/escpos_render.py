"""An ESC/POS interpreter that draws what a receipt printer would print, as a PNG.

For humans (docs, the demo's ``demo-out/receipts/*.png``) and for tests that
check what was actually sent. Usage::

    python -m firmware_mocks.escpos_render receipt.bin receipt.png [--width 576]

Theory of operation
-------------------
:func:`render` walks the byte stream once. Printable bytes collect into a text
line (decoded with the selected code page, as the printer would; what it cannot
show becomes ``?``), which is drawn in a monospaced font at ``LF``. Images and
codes are drawn as horizontal bands stacked top to bottom:

* ``GS v 0`` raster bit images (what python-escpos's ``image()`` sends by default),
* ``GS ( L`` graphics (store + print), ``ESC *`` column bit images,
* ``GS ( k`` native QR codes (model, module size, error correction, store, print),
* ``GS V`` cuts, drawn as a dashed line with a scissors mark,
* ``ESC d`` / ``ESC J`` feeds, ``ESC a`` alignment, ``ESC E`` bold, ``GS !`` size,
  ``ESC t`` code page, ``ESC @`` reset.

Other commands are skipped by their documented length; a byte sequence the
interpreter does not know is recorded in :attr:`RenderResult.unknown` and
skipped, never guessed at. Real-time ``DLE EOT`` / ``DLE DC4`` requests print
nothing. Everything decoded is kept in the :class:`RenderResult` (raster images
with their position, text lines, native QR payloads, cuts) so tests can compare
what was printed with what was meant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
LINE_HEIGHT = 30  # default line spacing, dots
CHAR_WIDTH = 12  # font A: 12 x 24 dots
CODE_PAGES: dict[int, str] = {
    0: "cp437",
    2: "cp850",
    3: "cp860",
    4: "cp863",
    5: "cp865",
    16: "cp1252",
    17: "cp866",
    18: "cp852",
    19: "cp858",
}


@dataclass(frozen=True)
class RasterImage:
    """A bit image as received: ``width`` x ``height`` dots, rows MSB-first, 1 = printed."""

    width: int
    height: int
    data: bytes
    command: str
    y: int = 0  # top of the image on the rendered receipt

    def to_image(self) -> Image.Image:
        """As a 1-bit Pillow image: printed dot = black (0), paper = white (1)."""
        row_bytes = (self.width + 7) // 8
        packed = bytes(b ^ 0xFF for b in self.data[: row_bytes * self.height])
        packed = packed.ljust(row_bytes * self.height, b"\xff")
        return Image.frombytes("1", (self.width, self.height), packed)


@dataclass
class RenderResult:
    """The drawn receipt and everything that was decoded from the bytes."""

    image: Image.Image
    rasters: list[RasterImage] = field(default_factory=list)
    text_lines: list[str] = field(default_factory=list)
    qr_codes: list[str] = field(default_factory=list)
    cuts: int = 0
    unknown: list[str] = field(default_factory=list)

    @property
    def printed_text(self) -> str:
        """All text printed as characters (not as images), lines joined by newlines."""
        return "\n".join(self.text_lines)


@dataclass
class _State:
    align: int = 0
    bold: bool = False
    width_mul: int = 1
    height_mul: int = 1
    code_page: int = 0
    line_height: int = LINE_HEIGHT


class _Renderer:
    def __init__(self, width_px: int) -> None:
        self.width = width_px
        self.bands: list[Image.Image] = []
        self.y = 0
        self.state = _State()
        self.text = bytearray()
        self.line_has_graphic = False
        self.result = RenderResult(image=Image.new("1", (width_px, 1), 255))
        self.qr_model = 2
        self.qr_size = 3
        self.qr_ec = 48
        self.qr_data = b""
        self.graphics: RasterImage | None = None
        self.graphics_mul = (1, 1)

    # --- bands -------------------------------------------------------------------
    def add_band(self, band: Image.Image) -> None:
        if band.width > self.width:
            band = band.crop((0, 0, self.width, band.height))
        if band.width < self.width:
            full = Image.new("1", (self.width, band.height), 255)
            x = {0: 0, 1: (self.width - band.width) // 2, 2: self.width - band.width}.get(
                self.state.align, 0
            )
            full.paste(band, (x, 0))
            band = full
        self.bands.append(band)
        self.y += band.height

    def feed(self, dots: int) -> None:
        if dots > 0:
            self.add_band(Image.new("1", (self.width, dots), 255))

    def flush_line(self, newline: bool) -> None:
        if self.text:
            encoding = CODE_PAGES.get(self.state.code_page)
            if encoding is None:  # a code page we cannot draw: show its upper half as "?"
                encoding = "ascii"
                note = f"code page {self.state.code_page} drawn as ASCII"
                if note not in self.result.unknown:
                    self.result.unknown.append(note)
            line = bytes(self.text).decode(encoding, errors="replace").replace("\ufffd", "?")
            self.text.clear()
            self.result.text_lines.append(line)
            self.draw_text(line)
        elif newline and not self.line_has_graphic:
            self.feed(self.state.line_height)
        self.line_has_graphic = False

    def draw_text(self, line: str) -> None:
        name = "DejaVuSansMono-Bold.ttf" if self.state.bold else "DejaVuSansMono.ttf"
        size = 20 * self.state.height_mul
        try:
            font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(
                str(FONT_DIR / name), size
            )
        except OSError:
            font = ImageFont.load_default()
        char_w = CHAR_WIDTH * self.state.width_mul
        height = max(self.state.line_height, 24 * self.state.height_mul + 6)
        band = Image.new("1", (min(self.width, char_w * max(1, len(line))), height), 255)
        draw = ImageDraw.Draw(band)
        for i, ch in enumerate(line):
            draw.text((i * char_w, 3), ch, font=font, fill=0)
        self.add_band(band)

    def add_raster(self, raster: RasterImage, x_mul: int = 1, y_mul: int = 1) -> None:
        placed = RasterImage(raster.width, raster.height, raster.data, raster.command, self.y)
        self.result.rasters.append(placed)
        image = placed.to_image()
        if x_mul != 1 or y_mul != 1:
            image = image.resize((image.width * x_mul, image.height * y_mul))
        self.add_band(image)
        self.line_has_graphic = True

    def cut(self) -> None:
        self.flush_line(newline=False)
        self.result.cuts += 1
        band = Image.new("1", (self.width, 24), 255)
        draw = ImageDraw.Draw(band)
        for x in range(0, self.width, 12):
            draw.line((x, 12, x + 6, 12), fill=0, width=2)
        try:
            font = ImageFont.truetype(str(FONT_DIR / "DejaVuSans.ttf"), 16)
            draw.rectangle((0, 2, 56, 22), fill=255)
            draw.text((2, 3), "✂ cut", font=font, fill=0)
        except OSError:
            pass
        self.add_band(band)

    def print_qr(self) -> None:
        payload = self.qr_data.decode("utf-8", errors="replace")
        self.result.qr_codes.append(payload)
        ec = {48: "L", 49: "M", 50: "Q", 51: "H"}.get(self.qr_ec, "L")
        code = qrcode.QRCode(
            version=None,
            error_correction=getattr(qrcode.constants, f"ERROR_CORRECT_{ec}"),
            box_size=max(1, self.qr_size),
            border=0,
        )
        code.add_data(payload)
        try:
            code.make(fit=True)
        except Exception:  # data too long for any QR version: the printer prints nothing
            self.result.unknown.append("GS ( k: QR data too long")
            return
        image = code.make_image().get_image().convert("1")
        self.flush_line(newline=False)
        self.add_band(image)
        self.line_has_graphic = True


def _u16(data: bytes, pos: int) -> int:
    return data[pos] | (data[pos + 1] << 8) if pos + 1 < len(data) else 0


_ESC_ARGS = {  # ESC c -> number of parameter bytes we skip
    b"!": 1, b"-": 1, b"2": 0, b"3": 1, b"=": 1, b"?": 1, b"G": 1, b"M": 1, b"R": 1,
    b"S": 0, b"T": 1, b"U": 1, b"V": 1, b"{": 1, b" ": 1, b"$": 2, b"\\": 2, b"%": 1,
    b"c": 2, b"p": 3, b"B": 2, b"i": 0, b"m": 0, b"L": 0, b"r": 1, b"<": 0, b"e": 1,
}  # fmt: skip
_GS_ARGS = {
    b"B": 1, b"b": 1, b"H": 1, b"f": 1, b"h": 1, b"w": 1, b"L": 2, b"W": 2, b"P": 2,
    b"a": 1, b"I": 1, b"r": 1, b"x": 1, b"$": 2, b"\\": 2, b"^": 3, b":": 0, b"E": 1,
}  # fmt: skip


def render(data: bytes, *, width_px: int = 576) -> RenderResult:
    """Interpret ``data`` (ESC/POS) and draw the receipt ``width_px`` dots wide."""
    r = _Renderer(width_px)
    n = len(data)
    i = 0
    while i < n:
        b = data[i]
        if b == 0x0A:
            r.flush_line(newline=True)
            i += 1
        elif b == 0x0D:
            i += 1
        elif b == 0x09:
            r.text += b"    "
            i += 1
        elif b == 0x10:  # DLE: real-time commands print nothing
            i += 5 if data[i + 1 : i + 2] == b"\x14" else 3
        elif b == 0x1B:
            i = _esc(r, data, i)
        elif b == 0x1D:
            i = _gs(r, data, i)
        elif b < 0x20:
            i += 1
        else:
            r.text.append(b)
            i += 1
    r.flush_line(newline=False)
    height = max(1, r.y)
    canvas = Image.new("1", (width_px, height), 255)
    y = 0
    for band in r.bands:
        canvas.paste(band, (0, y))
        y += band.height
    r.result.image = canvas
    return r.result


def _esc(r: _Renderer, data: bytes, i: int) -> int:
    cmd = data[i + 1 : i + 2]
    arg = data[i + 2] if i + 2 < len(data) else 0
    if cmd == b"@":
        r.flush_line(newline=False)
        r.state = _State()
        return i + 2
    if cmd == b"a":
        r.flush_line(newline=False)
        r.state.align = arg % 48 if arg >= 48 else arg
        return i + 3
    if cmd == b"E":
        r.state.bold = bool(arg & 1)
        return i + 3
    if cmd == b"t":
        r.state.code_page = arg
        return i + 3
    if cmd == b"d":
        r.flush_line(newline=True)
        r.feed(r.state.line_height * max(0, arg - 1))
        return i + 3
    if cmd == b"J":
        r.flush_line(newline=False)
        r.feed(arg)
        return i + 3
    if cmd == b"2":
        r.state.line_height = LINE_HEIGHT
        return i + 2
    if cmd == b"3":
        r.state.line_height = arg
        return i + 3
    if cmd == b"*":  # column bit image
        m, count = arg, _u16(data, i + 3)
        rows = 3 if m in (32, 33) else 1
        start = i + 5
        column_data = data[start : start + count * rows]
        end = start + count * rows
        count = len(column_data) // rows  # truncated data: draw what arrived
        height = 8 * rows
        image = Image.new("1", (count, height), 255)
        for x in range(count):
            for k in range(rows):
                byte = column_data[x * rows + k] if x * rows + k < len(column_data) else 0
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        image.putpixel((x, k * 8 + bit), 0)
        raster = RasterImage(count, height, _pack(image), "ESC *")
        r.flush_line(newline=False)
        if count:
            r.add_raster(raster)
        return end
    if cmd in _ESC_ARGS:
        return i + 2 + _ESC_ARGS[cmd]
    r.result.unknown.append(f"ESC {cmd!r} at {i}")
    return i + 2


def _pack(image: Image.Image) -> bytes:
    """Pillow "1" image (black = 0) to raster bytes (1 = printed)."""
    return bytes(b ^ 0xFF for b in image.tobytes())


def _gs(r: _Renderer, data: bytes, i: int) -> int:
    cmd = data[i + 1 : i + 2]
    if cmd == b"v" and data[i + 2 : i + 3] == b"0":
        mode = data[i + 3] if i + 3 < len(data) else 0
        x_bytes, height = _u16(data, i + 4), _u16(data, i + 6)
        start = i + 8
        end = start + x_bytes * height
        rows = min(height, len(data[start:end]) // x_bytes) if x_bytes else 0
        if rows:  # a truncated image is drawn as far as its data goes
            raster = RasterImage(x_bytes * 8, rows, data[start : start + x_bytes * rows], "GS v 0")
            r.flush_line(newline=False)
            r.add_raster(raster, x_mul=2 if mode & 1 else 1, y_mul=2 if mode & 2 else 1)
        return end
    if cmd == b"(":
        kind = data[i + 2 : i + 3]
        length = _u16(data, i + 3)
        body = data[i + 5 : i + 5 + length]
        end = i + 5 + length
        if kind == b"k" and len(body) >= 2 and body[0] == 49:
            _qr(r, body)
        elif kind == b"L" and len(body) >= 2:
            _graphics(r, body)
        return end
    if cmd == b"V":
        m = data[i + 2] if i + 2 < len(data) else 0
        if m in (65, 66):
            r.flush_line(newline=False)
            r.feed(data[i + 3] if i + 3 < len(data) else 0)
            r.cut()
            return i + 4
        r.cut()
        return i + 3
    if cmd == b"!":
        arg = data[i + 2] if i + 2 < len(data) else 0
        r.state.width_mul = (arg >> 4) + 1
        r.state.height_mul = (arg & 0x0F) + 1
        return i + 3
    if cmd == b"k":  # barcode: skip it
        m = data[i + 2] if i + 2 < len(data) else 0
        if m <= 6:
            end = data.find(b"\x00", i + 3)
            return len(data) if end < 0 else end + 1
        return i + 4 + (data[i + 3] if i + 3 < len(data) else 0)
    if cmd in _GS_ARGS:
        return i + 2 + _GS_ARGS[cmd]
    r.result.unknown.append(f"GS {cmd!r} at {i}")
    return i + 2


def _qr(r: _Renderer, body: bytes) -> None:
    fn = body[1]
    if fn == 65 and len(body) >= 3:
        r.qr_model = body[2] - 48
    elif fn == 67 and len(body) >= 3:
        r.qr_size = body[2]
    elif fn == 69 and len(body) >= 3:
        r.qr_ec = body[2]
    elif fn == 80:
        r.qr_data = body[3:]
    elif fn == 81:
        r.print_qr()


def _graphics(r: _Renderer, body: bytes) -> None:
    fn = body[1]
    if fn == 112 and len(body) >= 10:  # store: a bx by c xL xH yL yH data
        width, height = _u16(body, 6), _u16(body, 8)
        x_mul, y_mul = min(body[3], 2), min(body[4], 2)
        row_bytes = (width + 7) // 8
        height = min(height, len(body[10:]) // row_bytes) if row_bytes else 0
        if not height:
            return
        raster = RasterImage(width, height, body[10 : 10 + row_bytes * height], "GS ( L")
        r.graphics = raster
        r.graphics_mul = (x_mul, y_mul)
    elif fn in (50, 2) and r.graphics is not None:
        x_mul, y_mul = r.graphics_mul
        r.flush_line(newline=False)
        r.add_raster(r.graphics, x_mul=max(1, x_mul), y_mul=max(1, y_mul))


def extract_qr_matrix(image: Image.Image) -> list[list[bool]] | None:
    """Read the module grid of the one QR code drawn in ``image`` (black = 0).

    Finds the bounding box of the printed dots, takes the module size from the
    top-left finder pattern (7 modules wide) and samples each module's centre.
    Returns None when no plausible QR code is there.
    """
    bw = image.convert("1")
    dark = Image.eval(bw.convert("L"), lambda v: 255 - v)
    bbox = dark.getbbox()
    if bbox is None:
        return None
    left, top, right, bottom = bbox
    run = 0
    while left + run < right and bw.getpixel((left + run, top)) == 0:
        run += 1
    if run < 7 or run % 7:
        return None
    module = run // 7
    size_x, size_y = (right - left) // module, (bottom - top) // module
    if size_x != size_y or size_x < 21 or (size_x - 17) % 4:
        return None
    return [
        [
            bw.getpixel((left + c * module + module // 2, top + row * module + module // 2)) == 0
            for c in range(size_x)
        ]
        for row in range(size_y)
    ]


def save_receipt(data: bytes, directory: Path, name: str, *, width_px: int = 576) -> Path:
    """Write ``name.bin`` (the bytes) and ``name.png`` (their drawing) into ``directory``.

    What the demo keeps under ``demo-out/receipts/``; returns the PNG's path.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.bin").write_bytes(data)
    png = directory / f"{name}.png"
    render(data, width_px=width_px).image.save(png, optimize=True)
    return png


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m firmware_mocks.escpos_render IN.bin OUT.png [--width N]``."""
    parser = argparse.ArgumentParser(description="Draw ESC/POS bytes as a PNG receipt.")
    parser.add_argument("input", type=Path, help="captured ESC/POS bytes (.bin)")
    parser.add_argument("output", type=Path, help="PNG to write")
    parser.add_argument("--width", type=int, default=576, help="paper width in dots (576/384)")
    args = parser.parse_args(argv)
    result = render(args.input.read_bytes(), width_px=args.width)
    result.image.save(args.output)
    for item in result.unknown:
        print(f"skipped unknown command: {item}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
