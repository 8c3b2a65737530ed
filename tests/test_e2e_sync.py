"""End to end on a real mosquitto: outbox -> sync client -> collector -> store -> ack.

Acked after commit, checked as it happens: a subscriber of our own hears every
ack central sends the kiosk and, the moment each one arrives, asks central's
database whether it holds every record that ack names (invariant 3). At the
end every record is at central once, in seq order without gaps, and marked
acked at the kiosk. tests/test_ack_after_commit.py holds the commit back to
make the ordering deterministic; this run checks it under normal flow.
"""

from __future__ import annotations

from pathlib import Path

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.envelope import Ack
from sync.outbox import Outbox
from tests import identity as keyring
from tests.ack_watch import AckWatch
from tests.waiting import wait_until

KIOSK = "k01"
N = 200


def _dossier(i: int) -> dict[str, object]:
    return {
        "code": f"000.00.14.H56-261126-{1000 + i:04d}",
        "procedure": "1.001193",
        "form": {"ho_ten": "Nguyễn Thị Ngọc Hường"},
        "applicant": {"full_name": "Nguyễn Thị Ngọc Hường", "id_number": "079123456789"},
    }


def test_records_reach_central_once_and_are_acked_after_commit(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk_db = tmp_path / "kiosk.db"
    central_db = tmp_path / "central.db"
    ob = Outbox(kiosk_db, KIOSK)
    ids = [ob.add("dossier", _dossier(i)).id for i in range(N)]
    ob.close()

    central = SQLiteStore(central_db)  # the test's own connection to central's database
    at_ack = SQLiteStore(central_db)  # the same, for the watch's thread

    def not_held_on_arrival(ack: Ack) -> set[str]:
        held = {r.id for r in at_ack.stored_records(KIOSK)}
        return set(ack.acked) - held

    watch = AckWatch(broker.observer(), KIOSK, not_held_on_arrival).start()
    collector = Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=broker.collector(),
        settings=CollectorSettings(),
        **keyring.CENTRAL,
    )
    collector.start()
    client = SyncClient(
        database=kiosk_db,
        kiosk=KIOSK,
        mqtt_settings=broker.kiosk(KIOSK),
        settings=SyncSettings(ack_timeout_s=5, tick_s=0.05),
        identity=keyring.kiosk_identity(),
    )
    client.start()
    check = Outbox(kiosk_db, KIOSK)
    try:
        wait_until(lambda: check.stats().queued == 0, 60, "all records acked")
        wait_until(lambda: set(watch.acked_ids()) >= set(ids), 30, "the watch heard every ack")
        seen = watch.results()
        assert seen, "no ack was observed"
        early = [sorted(missing) for _, missing in seen if missing]
        assert not early, f"{len(early)} acks named records central did not hold yet: {early[:3]}"
        assert set(watch.acked_ids()) == set(ids)  # central acked nothing else
        # The kiosk marked exactly those acked; central holds each once, gap-free.
        assert {r["id"] for r in check.records("acked")} == set(ids)
        held = central.stored_records(KIOSK)
        assert sorted(r.id for r in held) == sorted(ids)
        assert [r.seq for r in held] == list(range(1, N + 1))
        [stream] = central.streams(KIOSK)
        assert stream.contiguous_seq == N and stream.max_seq == N and stream.gaps == ()
    finally:
        client.stop()
        collector.stop()
        watch.stop()
        check.close()
        central.close()
        at_ack.close()
