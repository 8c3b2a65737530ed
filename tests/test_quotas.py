"""Per-kiosk limits at central, without a broker (issue 6, item 5): token buckets,
records quota, dead-letter cap, dead letters deduplicated and expired, the report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from central.attachments import AttachmentLimits
from central.cli import main as central_cli
from central.quotas import Quotas, QuotaSettings, expire_dead_letters, housekeep, report
from central.store import SQLiteStore
from sync.envelope import records_topic
from sync.ids import new_stream_id, new_ulid
from tests import identity as keyring
from tests.records import envelope

GOOD, BAD = "k-good-01", "k-flood-01"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_per_kiosk_messages_and_bytes() -> None:
    clock = Clock()
    q = Quotas(
        QuotaSettings(
            messages_per_s=10, burst_messages=5, bytes_per_s=1000, burst_bytes=3000, pace_messages=0
        ),
        clock=clock,
    )
    bad, good = records_topic(BAD), records_topic(GOOD)
    assert [q.admit(bad, b"x" * 10) for _ in range(7)] == [True] * 5 + [False] * 2
    assert q.admit(good, b"x" * 10)  # another kiosk has its own bucket
    clock.t += 0.1  # one message's worth of tokens
    assert q.admit(bad, b"x" * 10) and not q.admit(bad, b"x" * 10)
    clock.t += 100
    assert q.admit(bad, b"x" * 2500) and not q.admit(bad, b"x" * 600)  # bytes run out first
    clock.t += 0.5  # 500 more bytes
    assert q.admit(bad, b"x" * 1000)
    assert q.count(BAD, "rate") == 4 and q.count(GOOD, "rate") == 0
    assert q.pace() == []  # no pacing room: what did not pass was dropped


def test_over_the_rate_messages_wait_in_a_small_room_and_pass_in_order() -> None:
    clock = Clock()
    q = Quotas(
        QuotaSettings(messages_per_s=10, burst_messages=2, pace_messages=3, pace_bytes=10**6),
        clock=clock,
    )
    bad = records_topic(BAD)
    sent = [f"m{i}".encode() for i in range(7)]
    assert [q.admit(bad, m) for m in sent] == [True, True] + [False] * 5
    assert q.count(BAD, "paced") == 3 and q.count(BAD, "rate") == 2  # room for 3, 2 dropped
    assert q.pace() == []  # no tokens yet
    clock.t += 0.1
    assert q.pace() == [(bad, b"m2")]
    assert not q.admit(bad, b"late")  # behind the held-back ones, never ahead of them
    clock.t += 1  # the bucket holds at most its burst (2)
    assert [p for _, p in q.pace()] == [b"m3", b"m4"]
    clock.t += 0.1
    assert [p for _, p in q.pace()] == [b"late"]
    assert q.held_back() == 0 and q.admitted[BAD] == 6


def test_buckets_tracked_are_bounded() -> None:
    q = Quotas(QuotaSettings(max_tracked_kiosks=100), clock=Clock())
    for i in range(1000):
        assert q.admit(records_topic(f"k-{i:04d}"), b"x" * 10)
    assert len(q._buckets) == 100


def test_a_kiosk_at_its_records_quota_is_left_unacked_not_dead_lettered(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    q = Quotas(QuotaSettings(max_records_bytes=2000))
    s_bad, s_good = new_stream_id(), new_stream_id()
    seq = {BAD: 0, GOOD: 0}

    def batch(kiosk: str, stream: str, n: int) -> list[tuple[str, bytes]]:
        out = []
        for _ in range(n):
            seq[kiosk] += 1
            out.append((records_topic(kiosk), envelope(kiosk, seq[kiosk], stream)))
        return out

    # Fill the flooding kiosk past its quota (one batch may overshoot).
    first = batch(BAD, s_bad, 20)
    r = keyring.process_batch(store, first, quotas=q)
    assert r.outcome.stored == 20
    held = store.quota_usage([BAD])[BAD].records_bytes
    assert held >= 2000
    more = batch(BAD, s_bad, 5)
    r = keyring.process_batch(store, more + batch(GOOD, s_good, 5), quotas=q)
    assert r.outcome.acked.get(BAD) is None and not r.outcome.rejected.get(BAD)
    assert len(r.outcome.acked[GOOD]) == 5  # the other kiosk is not held back
    assert store.dead_letters() == []  # valid records are never dead-lettered for a quota
    assert q.count(BAD, "records_quota") == 5
    assert store.quota_usage([BAD])[BAD].records_bytes == held
    # A resend of what central already holds is still acked (its first ack may be lost).
    r = keyring.process_batch(store, first[:3], quotas=q)
    assert len(r.outcome.acked[BAD]) == 3 and r.outcome.duplicates == 3
    # The operator raises the quota: the same records, resent, go in.
    q2 = Quotas(QuotaSettings(max_records_bytes=10**9))
    r = keyring.process_batch(store, more, quotas=q2)
    assert len(r.outcome.acked[BAD]) == 5
    # Visible: the counters reach the database and the report, with an alert.
    housekeep(store.conn, q, q.settings, AttachmentLimits())
    rep = report(store.conn, q.settings)
    [k] = [k for k in rep["kiosks"] if k["kiosk"] == BAD]
    assert k["limited"]["records_quota"]["count"] == 5
    assert any(f"kiosk {BAD}" in a and "quota" in a for a in rep["alerts"])
    store.close()


def test_dead_letters_of_one_kiosk_are_capped(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    q = Quotas(QuotaSettings(max_dead_letters=10))
    garbage = [(records_topic(BAD), f"not json {i}".encode()) for i in range(30)]
    good = [(records_topic(GOOD), f"not json either {i}".encode()) for i in range(3)]
    for i in range(0, 30, 5):  # several batches: the cap is read at each batch's start
        keyring.process_batch(store, garbage[i : i + 5], quotas=q)
    keyring.process_batch(store, good, quotas=q)
    usage = store.quota_usage([BAD, GOOD])
    assert 10 <= usage[BAD].dead_letters < 15
    assert usage[GOOD].dead_letters == 3
    assert q.count(BAD, "dead_letter_quota") == 30 - usage[BAD].dead_letters
    store.close()


def test_the_same_dead_letter_again_is_one_row_with_a_count(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    stream = new_stream_id()
    # A kiosk on a protocol version central does not know resends its window forever.
    future = [envelope(BAD, i, stream, v=2) for i in range(1, 11)]
    for _ in range(50):
        r = keyring.process_batch(store, [(records_topic(BAD), p) for p in future])
        assert r.acks == []  # unknown versions are never acked
    rows = store.dead_letters()
    assert len(rows) == 10
    assert all(row["count"] == 50 and row["last_at"] >= row["at"] for row in rows)
    assert all(row["reason"] == "unknown-version: 2" for row in rows)
    # Another kiosk sending the same bytes is another row; so is another reason.
    keyring.process_batch(store, [(records_topic(GOOD), future[0])])
    assert len(store.dead_letters()) == 11
    assert store.quota_usage([BAD])[BAD].dead_letters == 10
    store.close()


def test_dead_letters_expire_after_their_retention(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    keyring.process_batch(
        store, [(records_topic(BAD), b"garbage one"), (records_topic(BAD), b"two")]
    )
    keyring.process_batch(
        store, [(records_topic(BAD), b"garbage one")]
    )  # seen again: last_at moves
    rows = {r["n"]: r for r in store.dead_letters()}
    one = next(r for r in rows.values() if r["count"] == 2)
    two = next(r for r in rows.values() if r["count"] == 1)
    now = max(one["last_at"], two["last_at"]) + 100
    assert expire_dead_letters(store.conn, retention_s=1000, now=now) == 0
    assert expire_dead_letters(store.conn, retention_s=1, now=now, limit=1) == 2
    assert store.dead_letters() == []
    assert store.quota_usage([BAD])[BAD].dead_letters == 0
    store.close()


def test_usage_is_counted_for_a_database_that_predates_it(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    store = SQLiteStore(db)
    keyring.process_batch(store, [(records_topic(GOOD), envelope(GOOD, 1, new_stream_id()))])
    keyring.process_batch(store, [(records_topic(GOOD), b"junk")])
    before = store.quota_usage([GOOD])[GOOD]
    store.conn.execute("DROP TABLE kiosk_usage")
    store.close()
    store = SQLiteStore(db)
    assert store.quota_usage([GOOD])[GOOD] == before
    assert before.records == 1 and before.dead_letters == 1 and before.records_bytes > 100
    store.close()


def test_status_shows_quotas(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    cfg = tmp_path / "central.toml"
    cfg.write_text(
        f'[central]\ndatabase = "{db}"\n\n[quotas]\nmax_records_mb_per_kiosk = 1\n',
        encoding="utf-8",
    )
    store = SQLiteStore(db)
    q = Quotas(QuotaSettings(messages_per_s=1, burst_messages=1, pace_messages=0))
    assert q.admit(records_topic(BAD), b"x" * 10)
    assert not q.admit(records_topic(BAD), b"x" * 10)
    housekeep(store.conn, q, q.settings, AttachmentLimits())
    store.close()
    res = CliRunner().invoke(central_cli, ["status", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    quotas = json.loads(res.output)["quotas"]
    assert quotas["limits"]["max_records_bytes_per_kiosk"] == 1024 * 1024
    [k] = quotas["kiosks"]
    assert k["kiosk"] == BAD and k["limited"]["rate"]["count"] == 1
    assert any("rate limit" in a for a in quotas["alerts"])


def test_counters_of_a_spray_of_kiosk_ids_stay_bounded() -> None:
    q = Quotas(
        QuotaSettings(burst_messages=1, messages_per_s=1e-9, max_tracked_kiosks=50, pace_messages=0)
    )
    for i in range(500):
        topic = records_topic(f"k-spray-{i:04d}")
        assert q.admit(topic, b"x") and not q.admit(topic, b"x")
    assert len(q._buckets) <= 50 and len(q.admitted) <= 51 and len(q.totals) <= 51
    assert q.admitted["k-spray-0000"] == 1 and q.admitted["(untracked)"] == 450
    assert sum(q.totals.values()) == 500


def test_the_service_housekeeps_with_its_configuration(tmp_path: Path) -> None:
    from central.config import load_central_config
    from central.service import CentralService
    from sync.attachments import chunk_bodies

    db = tmp_path / "c.db"
    cfg_path = tmp_path / "central.toml"
    cfg_path.write_text(
        f'[central]\ndatabase = "{db}"\n\n[quotas]\ndead_letter_retention_days = 1\n\n'
        "[attachments]\nexpire_incomplete_after_h = 2\nmax_chunks = 3\n\n"
        + keyring.write_keys(tmp_path / "keys").central_toml(),
        encoding="utf-8",
    )
    service = CentralService(load_central_config(cfg_path))
    assert service.collector.quotas is not None
    store = SQLiteStore(db, attachment_limits=service.cfg.attachments.limits())
    keyring.process_batch(store, [(records_topic(BAD), b"junk")])
    stream, att = new_stream_id(), new_ulid()
    chunks = chunk_bodies(att, b"0123456789", 5)
    env = json.loads(envelope(GOOD, 1, stream))
    env.update(kind="chunk", body=chunks[0])
    keyring.process_batch(store, [(records_topic(GOOD), json.dumps(env).encode())])
    assert service.collector.quotas.admit(records_topic(BAD), b"x")
    now = time.time()
    done = service.housekeep(store, now=now + 3 * 3600)
    assert done is not None
    assert (done.dead_letters_expired, done.attachments_expired) == (0, 1)
    done = service.housekeep(store, now=now + 2 * 86400)
    assert done is not None and done.dead_letters_expired == 1
    assert store.attachments(GOOD)[0]["status"] == "expired"
    store.close()
