"""Read aloud: the screen's Vietnamese text rendered to WAV by espeak-ng, on the box.

Theory of operation
-------------------
:meth:`Speech.open` runs ``<binary> -v <voice> -w <file>`` with the text on its
standard input (never as an argument, so a text starting with ``-`` is not an
option) and returns the WAV file, opened. Nothing leaves the box: espeak-ng is a
local program with no network.

- The WAV goes to a file in a private temporary directory (0700), never into the
  agent's memory: a 1,500-character text is about 4 MB of 22 kHz WAV, and the
  agent must stay under 90 MB. The caller streams the opened file; an evicted or
  wiped file stays readable through that handle until it is closed.
- One rendering at a time (a lock; a second request waits up to the timeout,
  then is refused as busy), each bounded by ``timeout_s`` (the process is
  killed past it).
- A small LRU cache of those files by text: a screen read twice costs one
  process. It is bounded in entries and bytes, and :meth:`forget` empties it when
  the citizen's session ends (a review screen read aloud says their name).
- Every failure (program missing, non-zero exit, timeout, no WAV) is
  :class:`SpeechUnavailable`, which the API answers 503 (field ``speech``):
  never the input's fault.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("aps.api.speech")

#: Longest text the screen may ask to hear (characters).
MAX_TEXT_CHARS = 1500
UNAVAILABLE_VI = "Ki-ốt chưa đọc to được lúc này. Xin mời Ông/Bà đọc trên màn hình hoặc hỏi cán bộ."


class SpeechUnavailable(Exception):
    """espeak-ng is missing or failed; ``str()`` says which, for the log."""


class Speech:
    """espeak-ng behind a lock, a timeout and a bounded file cache; see the module docstring."""

    def __init__(
        self,
        *,
        binary: str = "espeak-ng",
        voice: str = "vi",
        timeout_s: float = 10.0,
        cache_entries: int = 16,
        cache_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.binary = binary
        self.voice = voice
        self.timeout_s = timeout_s
        self.cache_entries = cache_entries
        self.cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[Path, int]] = OrderedDict()
        self._cached_bytes = 0
        self._dir: Path | None = None

    def program(self) -> str | None:
        """The program's path, or None when it is not installed."""
        return shutil.which(self.binary)

    @property
    def available(self) -> bool:
        return self.program() is not None

    def open(self, text: str) -> tuple[BinaryIO, int]:
        """The WAV of ``text``, opened, and its size; :class:`SpeechUnavailable` if none."""
        program = self.program()
        if program is None:
            raise SpeechUnavailable(
                f"speech: {self.binary!r} is not installed (apt install espeak-ng)"
            )
        if not self._lock.acquire(timeout=self.timeout_s):
            raise SpeechUnavailable(f"speech: busy for over {self.timeout_s:g}s")
        try:
            key = hashlib.sha256(f"{self.voice}\0{text}".encode("utf-8", "replace")).hexdigest()
            cached = self._cache.get(key)
            if cached is not None:
                try:
                    handle = cached[0].open("rb")
                except OSError:  # removed behind our back (a temp cleaner): render again
                    self._cache.pop(key)
                    self._cached_bytes -= cached[1]
                else:
                    self._cache.move_to_end(key)
                    return handle, cached[1]
            path = self._directory() / f"{key}.wav"
            size = self._run(program, text, path)
            handle = path.open("rb")  # before any eviction can unlink it
            self._remember(key, path, size)
            return handle, size
        finally:
            self._lock.release()

    def render(self, text: str) -> bytes:
        """The WAV of ``text`` as bytes (tests and tools; the API streams :meth:`open`)."""
        handle, _ = self.open(text)
        with handle:
            return handle.read()

    def forget(self) -> None:
        """Drop every cached WAV (the citizen's session ended)."""
        with self._lock:
            for path, _ in self._cache.values():
                path.unlink(missing_ok=True)
            self._cache.clear()
            self._cached_bytes = 0

    def close(self) -> None:
        """Remove the cache and its directory (the agent stops)."""
        self.forget()
        with self._lock:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _directory(self) -> Path:
        if self._dir is None or not self._dir.is_dir():
            self._dir = Path(tempfile.mkdtemp(prefix="aps-speech-"))  # 0700
        return self._dir

    def _run(self, program: str, text: str, path: Path) -> int:
        try:
            done = subprocess.run(
                [program, "-v", self.voice, "-w", str(path)],
                input=text.encode("utf-8", errors="replace"),  # a lone surrogate from JSON
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            path.unlink(missing_ok=True)
            raise SpeechUnavailable(f"speech: {program} took over {self.timeout_s:g}s") from None
        except OSError as exc:
            raise SpeechUnavailable(f"speech: {program} did not run: {exc}") from None
        size = path.stat().st_size if path.exists() else 0
        head = b""
        if size:
            with path.open("rb") as f:
                head = f.read(4)
        if done.returncode != 0 or head != b"RIFF":
            path.unlink(missing_ok=True)
            err = done.stderr.decode("utf-8", errors="replace").strip()[:200]
            raise SpeechUnavailable(
                f"speech: {program} -v {self.voice} exited {done.returncode} "
                f"with {size} bytes of WAV: {err or 'no message'}"
            )
        return size

    def _remember(self, key: str, path: Path, size: int) -> None:
        self._cache[key] = (path, size)
        self._cached_bytes += size
        while len(self._cache) > self.cache_entries or self._cached_bytes > self.cache_bytes:
            _, (old, old_size) = self._cache.popitem(last=False)
            self._cached_bytes -= old_size
            with contextlib.suppress(OSError):
                old.unlink()
            if old == path:
                break  # one text larger than the whole cache: served, not kept


__all__ = ["MAX_TEXT_CHARS", "UNAVAILABLE_VI", "Speech", "SpeechUnavailable"]
