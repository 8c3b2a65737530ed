"""A loopback TCP proxy for plain MQTT that can make a connection deaf.

:meth:`DeafeningProxy.deafen` marks every connection open at that moment:
from then on the broker's PUBLISH packets to the kiosk are parsed out of the
stream (MQTT fixed header: type in the high nibble of byte 0, then the
"remaining length" varint) and dropped, while everything else (CONNACK,
SUBACK, PUBACK, PINGRESP) still flows, as does everything the kiosk sends.
The broker sees a healthy client; the kiosk hears nothing but keep-alives:
"connected and deaf" (docs/chaos.md). A connection made afterwards is healthy.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

PUBLISH = 3


class _Pair:
    def __init__(self, kiosk: socket.socket, broker: socket.socket) -> None:
        self.kiosk = kiosk
        self.broker = broker
        self.deaf = False
        self.buffer = b""  # broker -> kiosk bytes not yet a whole packet


def _packet_end(buf: bytes) -> int | None:
    """The length of the first whole packet in ``buf``, or None if it is not all there."""
    length, shift, i = 0, 0, 1
    while True:
        if i >= len(buf):
            return None
        byte = buf[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ValueError("malformed remaining length")
    end = i + length
    return end if end <= len(buf) else None


class DeafeningProxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self.dropped_publishes = 0
        self.passed_while_deaf: list[int] = []  # packet types let through to a deaf kiosk
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def deafen(self) -> None:
        """Drop the broker's PUBLISHes on every connection open now, until it closes."""
        with self._lock:
            for pair in self._pairs:
                pair.deaf = True

    def _accept_loop(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                kiosk, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                broker = socket.create_connection(self.target, timeout=2)
            except OSError:
                kiosk.close()
                continue
            pair = _Pair(kiosk, broker)
            with self._lock:
                self._pairs.append(pair)
                self.connections += 1
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _to_kiosk(self, pair: _Pair, data: bytes) -> bytes:
        # Always parsed, deaf or not, so packet boundaries are known when deafen() comes.
        pair.buffer += data
        out = b""
        while (end := _packet_end(pair.buffer)) is not None:
            packet, pair.buffer = pair.buffer[:end], pair.buffer[end:]
            kind = packet[0] >> 4
            if pair.deaf and kind == PUBLISH:
                self.dropped_publishes += 1
                continue
            if pair.deaf:
                self.passed_while_deaf.append(kind)
            out += packet
        return out

    def _pump(self, pair: _Pair) -> None:
        sel = selectors.DefaultSelector()
        sel.register(pair.kiosk, selectors.EVENT_READ)
        sel.register(pair.broker, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    src = key.fileobj
                    data = src.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if src is pair.broker:
                        pair.kiosk.sendall(self._to_kiosk(pair, data))
                    else:
                        pair.broker.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            with self._lock:
                if pair in self._pairs:
                    self._pairs.remove(pair)
            for s in (pair.kiosk, pair.broker):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            for s in (pair.kiosk, pair.broker):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(2)
