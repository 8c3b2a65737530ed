"""What the fleet benches share: simulated kiosks, their records, and the processes around them.

bench/central_ingest.py, bench/fleet_heartbeats.py and bench/reconnect_storm.py all stand a
fleet of kiosks up against central. The pieces here are the same in each:

* identities: kiosk names, and the dossier record a kiosk files (one body, Vietnamese text
  with diacritics, about the size of a real one), signed as a kiosk signs it;
* light kiosks: raw MQTT 3.1.1 packets (CONNECT, PUBLISH at QoS 0 or 1) written from an
  asyncio loop, so one process holds thousands of connections where paho would need a thread
  each; :class:`KioskProcesses` runs a bench's own ``--kiosk-proc`` entry in a few processes
  and speaks to them a line at a time;
* around them: a private anonymous mosquitto on a loopback port (:class:`Broker`), the file
  descriptor limit a fleet needs, and :class:`ScriptProcess`, a Python snippet in a process
  of its own (central's collector, a bare subscriber) sampled over its stdin and stdout.

A bench keeps what it alone measures; nothing here times anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.mosquitto import find_mosquitto, free_port
from sync.envelope import Record
from sync.ids import new_stream_id, new_ulid
from sync.wire_signing import sign_record

ROOT = Path(__file__).resolve().parent.parent

# -- identities and what they file --------------------------------------------------------


def kiosk_names(n: int, prefix: str = "bench-k", digits: int = 3) -> list[str]:
    return [f"{prefix}{k:0{digits}d}" for k in range(n)]


AGENCY = "000.00.14.H56"


def dossier_code(i: int, agency: str = AGENCY) -> str:
    """The ``i``-th national dossier code of ``agency``: 10,000 a day from 2026-11-26."""
    day = date(2026, 11, 26) + timedelta(days=i // 10_000)
    return f"{agency}-{day:%y%m%d}-{i % 10_000:04d}"


def kiosk_agency(kiosk: str) -> str:
    """An agency code of the kiosk's own, so no two bench kiosks file the same dossier code
    (central logs a code filed twice, once per record: not what a bench should measure)."""
    return f"{AGENCY}.{''.join(c for c in kiosk if c.isalnum())[:26]}"


def dossier_body(i: int, agency: str = AGENCY) -> dict[str, object]:
    """The body of the ``i``-th dossier a kiosk of ``agency`` files (its code is unique)."""
    return {
        "code": dossier_code(i, agency),
        "procedure": "1.004873",
        "form": {"muc_dich": "Đăng ký kết hôn", "tinh_trang": "Chưa kết hôn"},
        "applicant": {
            "full_name": "Nguyễn Thị Ngọc Hường",
            "id_number": "087205000123",
            "phone": "0912345678",
            "address": "Phường 1, TP. Sa Đéc, Đồng Tháp",
        },
        "fee_vnd": 15000,
        "received_at": "2026-11-26T09:00:00+07:00",
        "due": "2026-12-01T16:00+07:00",
        "attachments": [],
    }


def dossier_record(kiosk: str, stream: str, seq: int) -> Record:
    return Record(
        kind="dossier",
        kiosk=kiosk,
        stream=stream,
        seq=seq,
        id=new_ulid(),
        created="2026-11-26T09:15:02.123+07:00",
        body=dossier_body(seq, kiosk_agency(kiosk)),
    )


def signed_backlog(kiosk: str, n: int, key: Ed25519PrivateKey) -> list[bytes]:
    """``n`` dossier records of a new stream, signed as the kiosk signs them."""
    stream = new_stream_id()
    return [
        sign_record(dossier_record(kiosk, stream, seq).encode(), key) for seq in range(1, n + 1)
    ]


# -- light kiosks: raw MQTT 3.1.1 -----------------------------------------------------------


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def mqtt_connect(client_id: str) -> bytes:
    """CONNECT, clean session, no keepalive, no login."""
    body = _str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _str(client_id)
    return b"\x10" + _remaining(len(body)) + body


def mqtt_publish(topic: str, payload: bytes, packet_id: int | None = None) -> bytes:
    """PUBLISH at QoS 0, or at QoS 1 with ``packet_id`` (the broker then PUBACKs it)."""
    if packet_id is None:
        head, body = b"\x30", _str(topic) + payload
    else:
        head, body = b"\x32", _str(topic) + struct.pack("!H", packet_id) + payload
    return head + _remaining(len(body)) + body


async def mqtt_open(
    port: int, kiosk: str, timeout: float = 30
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """One kiosk's connection, CONNACKed; ConnectionError when the broker refuses it."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    writer.write(mqtt_connect(kiosk))
    await writer.drain()
    ack = await asyncio.wait_for(reader.readexactly(4), timeout)
    if ack[0] != 0x20 or ack[3] != 0:
        writer.close()
        raise ConnectionError(f"CONNACK {ack!r} for {kiosk}")
    return reader, writer


class KioskProcesses:
    """A bench's ``--kiosk-proc`` entry run once per conf, each printing ``ready`` when its
    kiosks are connected; then lines both ways (the bench's own little protocol)."""

    def __init__(self, bench: str, confs: Iterable[dict[str, Any]]) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        try:
            for conf in confs:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, bench, "--kiosk-proc", json.dumps(conf)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                    )
                )
            if [self.readline(p) for p in self.procs] != ["ready"] * len(self.procs):
                raise SystemExit("a kiosk process failed to connect")
        except BaseException:
            self.kill()
            raise

    @staticmethod
    def readline(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        return proc.stdout.readline().strip()

    def tell(self, line: str) -> None:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write(line + "\n")
            p.stdin.flush()

    def wait(self, timeout: float = 30) -> None:
        for p in self.procs:
            p.wait(timeout)

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# -- around the kiosks ----------------------------------------------------------------------


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < needed:
        raise SystemExit(
            f"ulimit -n is {soft}, the bench needs about {needed} file descriptors "
            f"(one per kiosk in the broker and in the kiosk processes): raise the hard limit "
            "(e.g. `ulimit -Hn 65536` as root) or give fewer --kiosks"
        )
    return soft


class Broker:
    """A private mosquitto on one loopback port, open to anyone there, no connection limit.

    ``persistent``: sessions saved to ``work`` when it stops (SIGTERM) and back when it starts
    again on the same port (a broker restart); inflight window 100. Otherwise nothing is kept.
    """

    def __init__(self, work: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.conf = work / "mosquitto.conf"
        if persistent:
            keep = (
                "max_queued_bytes 0\nmax_inflight_messages 100\n"
                f"persistence true\npersistence_location {work}/\nautosave_interval 0\n"
                # Started as root, mosquitto would switch to the "mosquitto" user and then
                # fail to save the sessions into our directory.
                f"log_dest none\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"
            )
        else:
            keep = "persistence false\nlog_dest none\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n"
            f"max_queued_messages 1000000\n{keep}",
            encoding="utf-8",
        )
        self.binary = find_mosquitto()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; the wall-clock time it first accepted a connection."""
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return time.time()
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ScriptProcess:
    """``python -c script <conf as JSON>`` in a process of its own, this checkout importable.

    The script prints one JSON line when it is ready, then answers every line it reads on
    stdin with one JSON line (a sample of its counters).
    """

    def __init__(self, script: str, conf: dict[str, Any], what: str = "a bench process") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(conf)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.out, self.inp = self.proc.stdout, self.proc.stdin
        line = self.out.readline()
        if not line:
            self.stop()
            raise SystemExit(f"{what} did not start")
        json.loads(line)

    def ask(self) -> dict[str, float]:
        self.inp.write("\n")
        self.inp.flush()
        return dict(json.loads(self.out.readline()))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
