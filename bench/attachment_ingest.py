"""Cost of one batch of chunk records at central as an attachment's chunks pile up.

Ours: ``SQLiteStore.ingest`` of a batch of ``--batch`` chunk records of one big
attachment (``--chunks`` chunks of ``--chunk-kib`` KiB), timed at several
numbers of chunks already held, and the last batch (which assembles and
hashes the whole file) on its own.
Baseline, same run, same disk, same records: the earlier central, which
after each batch re-read and re-parsed every stored chunk of the attachment
(``assemble_if_complete`` before issue 6), on a database holding the same
chunk records. The two are timed alternately at each checkpoint.
Last line: {"bench", "value", "unit", "baseline", "ratio", "growth",
"cpu_growth"}: wall ms per batch with the most chunks held, ours and the
baseline; growth = ours at the most chunks held / ours at the fewest (wall
time, which includes fsync on a shared disk; cpu_growth the same in process
CPU time, which does not).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from central.attachments import AttachmentLimits
from central.ingest import Accept
from central.store import SQLiteStore
from sync.attachments import chunk_bodies
from sync.envelope import Record, records_topic
from sync.ids import new_stream_id, new_ulid
from tests import identity as keyring

KIOSK = "bench-att-k01"

OLD_SCHEMA = """
CREATE TABLE records (kiosk TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (kiosk, id));
CREATE INDEX records_chunk_att ON records (kiosk, json_extract(body, '$.att'))
    WHERE kind = 'chunk';
"""


def old_assemble_cost(conn: sqlite3.Connection, att: str) -> None:
    """What the earlier central did after every batch that added a chunk."""
    rows = conn.execute(
        "SELECT json_extract(body, '$.index'), json_extract(body, '$.total'),"
        " json_extract(body, '$.data'), json_extract(body, '$.file_sha256'),"
        " json_extract(body, '$.file_size')"
        " FROM records WHERE kind = 'chunk' AND kiosk = ? AND json_extract(body, '$.att') = ?"
        " ORDER BY json_extract(body, '$.index')",
        (KIOSK, att),
    ).fetchall()
    if len({r[0] for r in rows}) < rows[0][1]:
        return
    data = b"".join(base64.b64decode(r[2]) for r in rows)
    hashlib.sha256(data).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=7000)
    # 7,000 x 139 KiB stays under SQLite's 10^9-byte blob limit for the assembled file.
    ap.add_argument("--chunk-kib", type=int, default=139)
    ap.add_argument("--batch", type=int, default=16, help="chunk records per batch")
    ap.add_argument("--reps", type=int, default=3, help="timed batches per checkpoint")
    args = ap.parse_args()
    n, chunk = args.chunks, args.chunk_kib * 1024
    # Each checkpoint takes 2 x reps batches (ours, then the earlier central's); the
    # next one must start after them, and the last must leave chunks for the final batch.
    span = args.batch * args.reps * 2
    checkpoints: list[int] = []
    for held in sorted({100, n // 10, n // 2, n - 1 - span}):
        if held >= 0 and held + span < n and all(held >= c + span for c in checkpoints):
            checkpoints.append(held)
    if not checkpoints:
        raise SystemExit(
            f"--chunks {n}: too few for one checkpoint of {span} timed chunks "
            f"(--batch {args.batch} x --reps {args.reps} x 2); raise --chunks"
        )
    att, stream = new_ulid(), new_stream_id()
    data = os.urandom(n * chunk)
    bodies = chunk_bodies(att, data, chunk)
    del data
    envelopes = []
    for i, body in enumerate(bodies):
        rec = Record(
            kind="chunk",
            kiosk=KIOSK,
            stream=stream,
            seq=i + 1,
            id=new_ulid(),
            created="2026-12-01T09:00:00+07:00",
            body=body,
        )
        envelopes.append(rec)
    limits = AttachmentLimits(max_bytes=n * chunk, max_chunks=n)
    with tempfile.TemporaryDirectory(prefix="aps-bench-att-") as tmp:
        ours = SQLiteStore(Path(tmp) / "ours.db", attachment_limits=limits)
        old = sqlite3.connect(str(Path(tmp) / "old.db"), isolation_level=None)
        old.execute("PRAGMA journal_mode=WAL")
        old.execute("PRAGMA synchronous=FULL")
        old.executescript(OLD_SCHEMA)
        topic = records_topic(KIOSK)

        def items(recs: list[Record]) -> list[Accept]:
            out = []
            for r in recs:
                item = keyring.classify(topic, r.encode())  # signed, verified
                if not isinstance(item, Accept):
                    raise SystemExit(f"bench record refused: {item}")
                out.append(item)
            return out

        def old_insert(recs: list[Record]) -> None:
            old.execute("BEGIN IMMEDIATE")
            old.executemany(
                "INSERT INTO records (kiosk, id, kind, body) VALUES (?, ?, 'chunk', ?)",
                [(r.kiosk, r.id, json.dumps(r.body, separators=(",", ":"))) for r in recs],
            )
            old.execute("COMMIT")

        done = 0
        figures: dict[int, tuple[float, float]] = {}
        cpu: dict[int, tuple[float, float]] = {}
        for held in checkpoints:
            while done < held:  # fill both, untimed
                part = envelopes[done : min(held, done + 200)]
                ours.ingest(items(part))
                old_insert(part)
                done += len(part)
            ours_ms, old_ms, ours_cpu, old_cpu = [], [], [], []
            for _ in range(args.reps):
                first = envelopes[done : done + args.batch]
                prepared = items(first)
                t0, c0 = time.perf_counter(), time.process_time()
                ours.ingest(prepared)
                ours_ms.append((time.perf_counter() - t0) * 1000)
                ours_cpu.append((time.process_time() - c0) * 1000)
                done += len(first)
                second = envelopes[done : done + args.batch]
                t0, c0 = time.perf_counter(), time.process_time()
                old_insert(second)
                old_assemble_cost(old, att)
                old_ms.append((time.perf_counter() - t0) * 1000)
                old_cpu.append((time.process_time() - c0) * 1000)
                # the same records reach both stores
                ours.ingest(items(second))
                old_insert(first)
                done += len(second)
            figures[held] = (statistics.median(ours_ms), statistics.median(old_ms))
            cpu[held] = (statistics.median(ours_cpu), statistics.median(old_cpu))
            print(
                f"chunks held {held:>6}: ours {figures[held][0]:9.2f} ms/batch"
                f" (CPU {cpu[held][0]:8.2f})   earlier central {figures[held][1]:10.2f} ms/batch"
                f" (CPU {cpu[held][1]:9.2f})"
            )
        rest = envelopes[done:]
        prepared = items(rest)
        t0, c0 = time.perf_counter(), time.process_time()
        out = ours.ingest(prepared)
        last_ms = (time.perf_counter() - t0) * 1000
        last_cpu = (time.process_time() - c0) * 1000
        if out.attachments["complete"] != 1:
            raise SystemExit(f"attachment did not complete: {out}")
        print(
            f"last batch ({len(rest)} chunks) assembling and hashing {n * chunk / 2**20:.0f} MiB:"
            f" {last_ms:.0f} ms (CPU {last_cpu:.0f} ms)"
        )
        ours.close()
        old.close()
    few, most = min(figures), max(figures)
    print(
        json.dumps(
            {
                "bench": "attachment_ingest",
                "value": round(figures[most][0], 2),
                "unit": f"ms per batch of {args.batch} chunks at {most} held",
                "baseline": round(figures[most][1], 2),
                "ratio": round(figures[most][0] / figures[most][1], 4),
                "growth": round(figures[most][0] / figures[few][0], 2),
                "cpu_growth": round(cpu[most][0] / cpu[few][0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
