"""Logging set-up shared by the kiosk agent and central: stderr, journald-aware.

Theory of operation
-------------------
Both services log to stderr. python-escpos calls ``logging.basicConfig()`` when
it is imported, so a later ``basicConfig()`` of ours would do nothing (no
timestamps, the configured level ignored). :func:`setup_logging` therefore
replaces whatever handlers the root logger has, as ``basicConfig(force=True)``
does, with one handler of its own.

Under systemd, stderr is a stream socket to journald and the service manager
sets ``JOURNAL_STREAM`` to ``<device>:<inode>`` of that socket (systemd.exec(5)).
When stderr is that very stream, each line starts with an sd-daemon(3) priority
prefix (``<4>`` = ``SD_WARNING``, ``<3>`` = ``SD_ERR``, ...) so that
``journalctl -p warning`` finds warnings; journald stamps the time itself, so
the line carries none. Every line of a multi-line message (a traceback) gets
the prefix, since journald reads each line as its own entry. Anywhere else
(a terminal, a file, a test) lines are plain, with a timestamp.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

__all__ = [
    "LAST_ERROR_CHARS",
    "LOG_FORMAT",
    "JournalFormatter",
    "LastErrorHandler",
    "journal_priority",
    "mask_id_numbers",
    "setup_logging",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"

#: Python level -> sd-daemon(3) priority (SD_CRIT 2, SD_ERR 3, SD_WARNING 4, SD_INFO 6, SD_DEBUG 7).
_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG_PRIORITY = 7


def journal_priority(levelno: int) -> int:
    """The sd-daemon priority of a Python log level (levels in between round down)."""
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return priority
    return _DEBUG_PRIORITY


class JournalFormatter(logging.Formatter):
    """Formats records for journald's stdout/stderr stream: ``<N>`` before every line."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{journal_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def stream_is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journald stream named by ``JOURNAL_STREAM``."""
    value = environ.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no file descriptor behind it
        return False
    return (str(st.st_dev), str(st.st_ino)) == (device, inode)


def setup_logging(
    level: str, *, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr); see the module doc.

    Replaces the root logger's handlers (python-escpos installs one at import).
    Returns the handler it installed.
    """
    levels = logging.getLevelNamesMapping()
    if level not in levels:
        raise ValueError(
            f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR; fix log_level "
            "in the configuration file"
        )
    target = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(target)
    if stream_is_journal(target, os.environ if environ is None else environ):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(levels[level])
    return handler


# -- the last error, for the heartbeat (docs/fleet.md) -----------------------------------
#: A run of 9 to 12 digits standing alone: a CCCD (12) or CMND (9) number, or anything
#: shaped like one (a phone number is masked too: better one masked too many).
_ID_RUN = re.compile(r"(?<![0-9])[0-9]{9,12}(?![0-9])")
#: The heartbeat's ``last_error`` is at most this long (sync.schemas ErrorText allows more).
LAST_ERROR_CHARS = 300


def mask_id_numbers(text: str) -> str:
    """Every 9-to-12-digit run with all but its last 4 digits as ``*`` (invariant 8).

    ``mask_id_numbers("card 001234561234 refused") == "card ********1234 refused"``.
    """
    return _ID_RUN.sub(lambda m: "*" * (len(m[0]) - 4) + m[0][-4:], text)


class LastErrorHandler(logging.Handler):
    """Keeps the last ERROR (or worse) line logged, as one masked, bounded line.

    Only the message's first line is kept (a traceback's frames stay in the journal), with
    the logger's name, ID numbers masked and cut at :data:`LAST_ERROR_CHARS`. Thread-safe:
    :attr:`line` may be read from any thread.
    """

    def __init__(self, max_chars: int = LAST_ERROR_CHARS) -> None:
        super().__init__(logging.ERROR)
        self.max_chars = max_chars
        self._line: str | None = None
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < self.level:  # handle() called directly skips the level check
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not raise into the caller
            message = str(record.msg)
        lines = message.splitlines()
        first = lines[0] if lines else ""
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = f"{first}: {type(exc).__name__}: {exc}".splitlines()[0]
        text = mask_id_numbers(f"{record.levelname} {record.name}: {first}".strip())
        if len(text) > self.max_chars:
            text = text[: self.max_chars - 1] + "…"
        with self._guard:
            self._line = text

    @property
    def line(self) -> str | None:
        with self._guard:
            return self._line
