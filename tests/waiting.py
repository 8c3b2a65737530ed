"""Wait for a condition, with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    cond: Callable[[], object], timeout: float = 30.0, what: str = "condition", poll: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
