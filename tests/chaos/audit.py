"""The audit at the end of a chaos run: both sides compared record by record.

:func:`audit` is a pure function over what was read (:func:`read_kiosk`,
:func:`read_central`), so a test can hand it a central side with a row deleted or
doubled and see it say so (tests/test_chaos_audit.py). It checks:

- every record in any kiosk's outbox is at central exactly once (``lost``,
  ``duplicated``; a ``(kiosk, stream, seq)`` held twice counts as a duplicate too),
  with the same body (``altered``);
- no record the kiosk shows ``acked`` is missing at central (``acked_missing``);
- no sequence gap per stream: the seqs central holds for a kiosk's stream are exactly
  1..N (N the kiosk's last seq), and central's own stream state (``store.streams``)
  says contiguous up to N with no gap range (``gaps``);
- every attachment a dossier names is at central in chunks whose bytes hash to the
  SHA-256 the kiosk stored, the kiosk's own chunks hash to it too, and central's
  store assembled it as ``complete`` with that hash (``hash_mismatch``);
- every filing the citizen was given a code for is in the kiosk's outbox
  (``filed_missing``), and nothing was accepted while the kiosk's disk was full
  (``accepted_while_full``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class KioskRecord:
    id: str
    seq: int
    kind: str
    state: str
    body: dict[str, Any]


@dataclass(frozen=True)
class KioskSide:
    kiosk: str
    stream: str
    records: tuple[KioskRecord, ...]
    actions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class CentralRecord:
    kiosk: str
    id: str
    stream: str
    seq: int
    kind: str
    body: dict[str, Any]


@dataclass(frozen=True)
class StreamView:
    kiosk: str
    stream: str
    contiguous_seq: int
    max_seq: int
    gaps: tuple[tuple[int, int], ...]


@dataclass
class KioskAudit:
    kiosk: str
    committed: int = 0
    acked: int = 0
    at_central: int = 0
    lost: int = 0
    duplicated: int = 0
    altered: int = 0
    acked_missing: int = 0
    gaps: int = 0
    attachments: int = 0
    hash_mismatch: int = 0
    filed: int = 0
    filed_missing: int = 0
    refused: int = 0  # every clean refusal the citizen saw (full disk, daily code limit, ...)
    refused_while_full: int = 0
    accepted_while_full: int = 0
    problems: list[str] = field(default_factory=list)


COLUMNS = (
    "committed", "acked", "at_central", "lost", "duplicated", "altered", "acked_missing",
    "gaps", "attachments", "hash_mismatch", "filed", "filed_missing", "refused",
    "refused_while_full", "accepted_while_full",
)  # fmt: skip
FAILING = (
    "lost", "duplicated", "altered", "acked_missing", "gaps", "hash_mismatch",
    "filed_missing", "accepted_while_full",
)  # fmt: skip


@dataclass
class Audit:
    kiosks: list[KioskAudit]
    unexpected: int = 0  # records at central for these kiosks that no outbox holds

    def total(self, column: str) -> int:
        return sum(int(getattr(k, column)) for k in self.kiosks)

    @property
    def ok(self) -> bool:
        return self.unexpected == 0 and all(self.total(c) == 0 for c in FAILING)

    def summary(self) -> dict[str, int]:
        return {c: self.total(c) for c in COLUMNS} | {"unexpected": self.unexpected}

    def table(self) -> str:
        heads = ("kiosk", *COLUMNS)
        rows = [[k.kiosk, *(str(getattr(k, c)) for c in COLUMNS)] for k in self.kiosks]
        rows.append(["TOTAL", *(str(self.total(c)) for c in COLUMNS)])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        for k in self.kiosks:
            lines += [f"{k.kiosk}: {p}" for p in k.problems[:20]]
        if self.unexpected:
            lines.append(f"{self.unexpected} record(s) at central that no kiosk's outbox holds")
        return "\n".join(lines)


def _file_sha(chunks: Iterable[dict[str, Any]]) -> tuple[str, int]:
    ordered = sorted(chunks, key=lambda b: int(b["index"]))
    data = b"".join(base64.b64decode(b["data"]) for b in ordered)
    return hashlib.sha256(data).hexdigest(), len(ordered)


def audit(
    kiosks: Sequence[KioskSide],
    central: Sequence[CentralRecord],
    streams: Sequence[StreamView],
    assembled: Mapping[tuple[str, str], tuple[str, str]] | None = None,
) -> Audit:
    """``assembled``: (kiosk, att) -> (status, sha256) as central's store assembled each
    file; when given, every attachment must be there, ``complete``, with the dossier's hash."""
    by_id: dict[tuple[str, str], list[CentralRecord]] = defaultdict(list)
    by_seq: Counter[tuple[str, str, int]] = Counter()
    chunks_at_central: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in central:
        by_id[(r.kiosk, r.id)].append(r)
        by_seq[(r.kiosk, r.stream, r.seq)] += 1
        if r.kind == "chunk":
            chunks_at_central[(r.kiosk, str(r.body.get("att")))].append(r.body)
    state = {(s.kiosk, s.stream): s for s in streams}
    out = Audit(kiosks=[])
    known: set[tuple[str, str]] = set()
    for side in kiosks:
        a = KioskAudit(side.kiosk)
        out.kiosks.append(a)
        own_chunks: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in side.records:
            known.add((side.kiosk, rec.id))
            a.committed += 1
            a.acked += rec.state == "acked"
            if rec.kind == "chunk":
                own_chunks[str(rec.body.get("att"))].append(rec.body)
            held = by_id.get((side.kiosk, rec.id), [])
            if not held:
                a.lost += 1
                a.problems.append(f"lost {rec.kind} {rec.id} (seq {rec.seq}, {rec.state})")
                if rec.state == "acked":
                    a.acked_missing += 1
                continue
            a.at_central += 1
            if len(held) > 1:
                a.duplicated += len(held) - 1
                a.problems.append(f"{rec.id} held {len(held)} times")
            if any(h.body != rec.body for h in held):
                a.altered += 1
                a.problems.append(f"{rec.id}: central's body differs from the kiosk's")
        doubled = [k for k, n in by_seq.items() if k[0] == side.kiosk and n > 1]
        a.duplicated += sum(by_seq[k] - 1 for k in doubled)
        a.problems += [f"stream {s} seq {q} held by several records" for _, s, q in doubled]
        # Gaps: the seqs central holds for the kiosk's stream, and central's own state.
        last = max((r.seq for r in side.records), default=0)
        held_seqs = {q for (k, s, q) in by_seq if k == side.kiosk and s == side.stream}
        missing = set(range(1, last + 1)) - held_seqs
        a.gaps += len(missing)
        if missing:
            a.problems.append(f"{len(missing)} seq(s) missing, first {min(missing)}")
        st = state.get((side.kiosk, side.stream))
        if last and (st is None or st.contiguous_seq < last or st.gaps):
            a.gaps += 1
            a.problems.append(f"central's stream state: {st}")
        # Attachments: central's chunks, and the kiosk's own, hash to what the dossier says.
        for rec in side.records:
            if rec.kind != "dossier":
                continue
            for meta in rec.body.get("attachments") or ():
                a.attachments += 1
                att = str(meta["att"])
                sha, n = _file_sha(chunks_at_central.get((side.kiosk, att), []))
                own, own_n = _file_sha(own_chunks.get(att, []))
                want = (meta["sha256"], meta["chunks"])
                verdict = None if assembled is None else assembled.get((side.kiosk, att))
                if assembled is not None and verdict != ("complete", meta["sha256"]):
                    a.hash_mismatch += 1
                    a.problems.append(f"attachment {att}: central assembled it as {verdict}")
                elif (sha, n) != want or (own, own_n) != want:
                    a.hash_mismatch += 1
                    a.problems.append(f"attachment {att}: {n}/{meta['chunks']} chunks, {sha}")
        # What the citizen was told, against what the kiosk holds.
        ids = {r.id for r in side.records}
        for act in side.actions:
            if "refused" in act:
                a.refused += 1
                a.refused_while_full += bool(act.get("full"))
                continue
            if act.get("full"):
                a.accepted_while_full += 1
                a.problems.append(f"accepted while the disk was full: {act}")
            if act.get("action") == "dossier":
                a.filed += 1
                if act.get("record_id") not in ids:
                    a.filed_missing += 1
                    a.problems.append(f"filed {act.get('code')} but not in the outbox")
    names = {s.kiosk for s in kiosks}
    out.unexpected = sum(1 for k in by_id if k[0] in names and k not in known)
    return out


# -- reading both sides --------------------------------------------------------------------
def read_actions(path: Path) -> tuple[dict[str, Any], ...]:
    if not path.exists():
        return ()
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line torn by kill -9
    return tuple(out)


def read_kiosk(db: Path, kiosk: str, actions: Path | None = None) -> KioskSide:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        stream = conn.execute("SELECT value FROM meta WHERE key = 'stream'").fetchone()[0]
        rows = conn.execute("SELECT id, seq, kind, state, payload FROM outbox ORDER BY seq")
        records = tuple(
            KioskRecord(i, int(q), k, s, json.loads(bytes(p))["body"]) for i, q, k, s, p in rows
        )
    finally:
        conn.close()
    return KioskSide(kiosk, str(stream), records, read_actions(actions) if actions else ())


def read_central(conn: Any, kiosks: Iterable[str]) -> list[CentralRecord]:
    """Every record central holds for ``kiosks`` (an sqlite3 or psycopg connection)."""
    names = set(kiosks)
    rows = conn.execute("SELECT kiosk, id, stream, seq, kind, body FROM records").fetchall()
    return [
        CentralRecord(k, i, s, int(q), kind, json.loads(b))
        for k, i, s, q, kind, b in rows
        if k in names
    ]


def dead_letter_count(conn: Any) -> int:
    """Messages dead-lettered (a row counts its repeats)."""
    return int(conn.execute("SELECT coalesce(sum(count), 0) FROM dead_letters").fetchone()[0])
