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
import sys
from collections.abc import Mapping
from typing import TextIO

__all__ = ["LOG_FORMAT", "JournalFormatter", "journal_priority", "setup_logging"]

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
