"""What the sans-I/O parsers of this package share."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["NEED_DATA", "NeedData"]


class NeedData(enum.Enum):
    """Type of :data:`NEED_DATA`."""

    NEED_DATA = "NEED_DATA"


#: Returned by a decoder's ``next_event()`` until more bytes arrive.
NEED_DATA: Final = NeedData.NEED_DATA
