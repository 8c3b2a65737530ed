"""Read aloud: the screen's Vietnamese text rendered to WAV by espeak-ng, on the box.

Theory of operation
-------------------
:meth:`Speech.render` runs ``<binary> -v <voice> --stdout`` with the text on its
standard input (never as an argument, so a text starting with ``-`` is not an
option) and returns the WAV it writes. Nothing leaves the box: espeak-ng is a
local program with no network.

- One rendering at a time (a lock; a second request waits up to the timeout,
  then is refused as busy), each bounded by ``timeout_s`` (the process is
  killed past it).
- A small LRU cache by (voice, text): a screen read twice costs one process.
  It is bounded in entries and in bytes (a 1,500-character text is about 4 MB
  of 22 kHz WAV), so it never costs the agent more than ``cache_bytes``.
- Every failure (program missing, non-zero exit, timeout, no WAV) is
  :class:`SpeechUnavailable`, which the API answers 503 (field ``speech``):
  never the input's fault.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from collections import OrderedDict

log = logging.getLogger("aps.api.speech")

#: Longest text the screen may ask to hear (characters).
MAX_TEXT_CHARS = 1500
UNAVAILABLE_VI = "Ki-ốt chưa đọc to được lúc này. Xin mời Ông/Bà đọc trên màn hình hoặc hỏi cán bộ."


class SpeechUnavailable(Exception):
    """espeak-ng is missing or failed; ``str()`` says which, for the log."""


class Speech:
    """espeak-ng behind a lock, a timeout and a bounded cache; see the module docstring."""

    def __init__(
        self,
        *,
        binary: str = "espeak-ng",
        voice: str = "vi",
        timeout_s: float = 10.0,
        cache_entries: int = 8,
        cache_bytes: int = 6 * 1024 * 1024,
    ) -> None:
        self.binary = binary
        self.voice = voice
        self.timeout_s = timeout_s
        self.cache_entries = cache_entries
        self.cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached_bytes = 0

    def program(self) -> str | None:
        """The program's path, or None when it is not installed."""
        return shutil.which(self.binary)

    @property
    def available(self) -> bool:
        return self.program() is not None

    def render(self, text: str) -> bytes:
        """The WAV of ``text`` (cached); :class:`SpeechUnavailable` when it cannot be made."""
        with self._lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        program = self.program()
        if program is None:
            raise SpeechUnavailable(
                f"speech: {self.binary!r} is not installed (apt install espeak-ng)"
            )
        if not self._lock.acquire(timeout=self.timeout_s):
            raise SpeechUnavailable(f"speech: busy for over {self.timeout_s:g}s")
        try:
            wav = self._run(program, text)
            self._remember(text, wav)
            return wav
        finally:
            self._lock.release()

    def _run(self, program: str, text: str) -> bytes:
        try:
            done = subprocess.run(
                [program, "-v", self.voice, "--stdout"],
                input=text.encode("utf-8", errors="replace"),  # a lone surrogate from JSON
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SpeechUnavailable(f"speech: {program} took over {self.timeout_s:g}s") from None
        except OSError as exc:
            raise SpeechUnavailable(f"speech: {program} did not run: {exc}") from None
        wav = done.stdout
        if done.returncode != 0 or not wav.startswith(b"RIFF"):
            err = done.stderr.decode("utf-8", errors="replace").strip()[:200]
            raise SpeechUnavailable(
                f"speech: {program} -v {self.voice} exited {done.returncode} "
                f"with {len(wav)} bytes of output: {err or 'no message'}"
            )
        return wav

    def _remember(self, text: str, wav: bytes) -> None:
        if len(wav) > self.cache_bytes // 2:
            return  # one long text must not push out every short one
        self._cache[text] = wav
        self._cached_bytes += len(wav)
        while len(self._cache) > self.cache_entries or self._cached_bytes > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= len(old)


__all__ = ["MAX_TEXT_CHARS", "UNAVAILABLE_VI", "Speech", "SpeechUnavailable"]
