"""The fee's VietQR code as an SVG image for the screen (the same payload the slip prints).

``qrcode``'s path image with a white background and the standard four-module quiet zone:
one ``<rect>`` and one ``<path>`` with ``fill`` attributes, no ``style`` (the page's
content security policy allows no inline styles). The screen sizes it with CSS.
"""

from __future__ import annotations

import qrcode
import qrcode.constants
from qrcode.image.svg import SvgPathFillImage


def payment_svg(payload: str) -> bytes:
    """The SVG document of ``payload`` (a VietQR EMVCo string), error correction M."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(payload)
    code.make(fit=True)
    image = code.make_image(image_factory=SvgPathFillImage)
    data: bytes = image.to_string(encoding="unicode").encode("utf-8")
    return data


__all__ = ["payment_svg"]
