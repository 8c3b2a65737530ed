"""Failure isolation for a batch: one poison message must not cost the others.

Theory of operation
-------------------
The collector commits a batch in one transaction. If that commit raises, the
cause is either the store (disk full, I/O error, locked, closed: every
message would fail the same way) or something about one message (a value
SQLite cannot hold, a constraint, a bug one body triggers). The first kind is
told apart by the error itself (:func:`store_is_down`): the batch is not
touched, nothing is dead-lettered, the error goes up and the kiosks resend.

For the second kind the batch is split in halves and each half committed on
its own, recursively, down to single messages: ``k`` culprits among ``n``
messages cost about ``2k log2(n/k)`` extra transactions, and everything else
commits. Each culprit is dead-lettered (through the store, so the dead letter
commits before any ack names it) with the error as its reason and the
topic's kiosk as its sender; a record culprit is also rejected, so its kiosk
parks it instead of resending it forever (a retained message comes back after
every reconnect and is dead-lettered again, never blocking the batch).

If every message of the batch failed and they came from more than one kiosk,
the store is failing for everyone (most likely a bug in central, not poison):
the first error is raised and nothing is dead-lettered.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from central.ingest import PAYLOAD_HEAD_BYTES, Accept, DeadLetter, FleetUpdate
from central.store import IngestOutcome, Store
from sync.envelope import kiosk_of_topic

log = logging.getLogger("aps.collector")

MAX_REASON_CHARS = 300

# SQLite result codes (primary part of ``sqlite_errorname``) that mean the
# store itself cannot take writes right now, whatever the message.
STORE_DOWN_CODES = frozenset(
    {
        "SQLITE_FULL",
        "SQLITE_IOERR",
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
        "SQLITE_READONLY",
        "SQLITE_CANTOPEN",
        "SQLITE_CORRUPT",
        "SQLITE_NOTADB",
        "SQLITE_NOMEM",
        "SQLITE_PROTOCOL",
        "SQLITE_PERM",
        "SQLITE_INTERRUPT",
        "SQLITE_ABORT",
        "SQLITE_AUTH",
        "SQLITE_NOLFS",
    }
)


@dataclass(frozen=True, kw_only=True)
class Message:
    """One message of a batch: what arrived and what classification made of it."""

    topic: str
    payload: bytes
    item: Accept | DeadLetter | FleetUpdate


def store_is_down(exc: BaseException) -> bool:
    """True when ``exc`` says the store fails for every message, not for this one."""
    if isinstance(exc, (MemoryError, OSError)):
        return True
    if _postgres_down(exc):
        return True
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        if isinstance(name, str):
            return "_".join(name.split("_")[:2]) in STORE_DOWN_CODES
        # No result code: a closed connection (ProgrammingError), an
        # interface error, or an operational error raised by the module itself.
        return not isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError))
    return False


def _postgres_down(exc: BaseException) -> bool:
    """PostgreSQL unreachable, connection lost or closed, server shutting down, disk full."""
    try:
        import psycopg
    except ImportError:  # only a PostgreSQL store raises its errors
        return False
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    return isinstance(exc, psycopg.errors.DiskFull)


def commit_isolating(
    store: Store, messages: list[Message]
) -> tuple[IngestOutcome, list[DeadLetter]]:
    """Commit ``messages``; isolate and dead-letter culprits. Returns after every commit."""
    outcomes: list[IngestOutcome] = []
    culprits: list[tuple[Message, Exception]] = []
    _commit_halves(store, messages, outcomes, culprits)
    if not culprits:
        return outcomes[0] if len(outcomes) == 1 else _merged(outcomes), []
    senders = {kiosk_of_topic(m.topic) for m, _ in culprits}
    if not outcomes and len(culprits) > 1 and len(senders) > 1:
        log.error(
            "every message of a batch of %d from %d kiosks failed to commit: "
            "treating the store as down, nothing dead-lettered or acked",
            len(messages),
            len(senders),
        )
        raise culprits[0][1]
    poisoned = [_poison_letter(m, exc) for m, exc in culprits]
    outcomes.append(_dead_letter(store, poisoned))
    for letter in poisoned:
        log.warning(
            "poison message from kiosk %s on %s (record %s): %s; dead-lettered%s, "
            "the rest of the batch committed",
            letter.topic_kiosk,
            letter.topic,
            letter.record_id,
            letter.reason,
            " and rejected" if letter.reject else "",
        )
    return _merged(outcomes), poisoned


def _commit_halves(
    store: Store,
    messages: list[Message],
    outcomes: list[IngestOutcome],
    culprits: list[tuple[Message, Exception]],
) -> None:
    try:
        outcomes.append(store.ingest([m.item for m in messages]))
        return
    except Exception as exc:
        if store_is_down(exc):
            raise
        if len(messages) == 1:
            culprits.append((messages[0], exc))
            return
    middle = len(messages) // 2
    _commit_halves(store, messages[:middle], outcomes, culprits)
    _commit_halves(store, messages[middle:], outcomes, culprits)


def _poison_letter(message: Message, exc: Exception) -> DeadLetter:
    reason = f"store-error: {type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
    topic_kiosk = kiosk_of_topic(message.topic)
    record = message.item.record if isinstance(message.item, Accept) else None
    own = record is not None and record.kiosk == topic_kiosk
    return DeadLetter(
        topic=message.topic,
        topic_kiosk=topic_kiosk,
        reason=reason,
        payload_len=len(message.payload),
        payload_head=message.payload[:PAYLOAD_HEAD_BYTES],
        record_id=record.id if record is not None else None,
        reject=own,
        stream=record.stream if own and record is not None else None,
        seq=record.seq if own and record is not None else None,
    )


def _dead_letter(store: Store, letters: list[DeadLetter]) -> IngestOutcome:
    try:
        return store.ingest(letters)
    except Exception as exc:
        if store_is_down(exc):
            raise
        # The culprit's own fields may be what fails: keep only the topic,
        # the reason and the payload head (the record is then not rejected).
        log.exception("dead-lettering %d poison messages failed; retrying bare", len(letters))
        bare = [
            DeadLetter(
                topic=d.topic,
                topic_kiosk=d.topic_kiosk,
                reason=d.reason,
                payload_len=d.payload_len,
                payload_head=d.payload_head,
            )
            for d in letters
        ]
        return store.ingest(bare)


def _merged(outcomes: list[IngestOutcome]) -> IngestOutcome:
    total = IngestOutcome()
    for outcome in outcomes:
        total.absorb(outcome)
    return total
