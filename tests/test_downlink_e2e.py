"""Downstream state through the real broker and central (docs/protocol.md, "Downlink").

Every wait is bounded; none of these tests measures time. Kiosks here have
``ack_timeout_s`` 600 and a state reply timeout of 5 s or more, so a state
that arrives only through a retry shows up as a count, not as a slow pass.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from central import backoffice_db, downlink_log
from central.broker_identities import DynsecAdmin, kiosk_role
from central.downlink import DownlinkSettings, RpcFailure
from central.mosquitto import MosquittoProcess
from sync.client import RpcError, RpcTimeout
from sync.downlink import Item, StateReply, decode_state_reply, down_topic, up_topic
from sync.envelope import topic
from sync.ids import new_ulid
from sync.wire_signing import sign_downlink
from tests import identity as keyring
from tests import stack
from tests.downlink_stack import (
    OFFICE,
    OTHER_OFFICE,
    Listener,
    answer_body,
    news_body,
    start_central,
    start_kiosk,
    status_body,
)
from tests.waiting import wait_until

K = "k-down-01"


def _code(n: int, agency: str = OFFICE) -> str:
    return f"{agency}-261201-{n:04d}"


def test_a_kiosk_offline_through_many_changes_ends_with_exactly_the_newest_of_each(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    central = start_central(broker, tmp_path / "central.db")
    kiosk_db = tmp_path / "kiosk.db"
    kiosk = start_kiosk(broker, kiosk_db, K, state_page_limit=7)
    try:
        wait_until(lambda: kiosk.inbox.last_reply_at() is not None, 60, "first state reply")
        kiosk.stop()
        # Offline "for days": catalogue versions, status changes, answers, and other
        # offices' and kiosks' items that must never arrive here.
        for v in range(1, 13):
            central.append("*", "catalogue", "catalogue", {"version": v, "procedures": [v]})
        states = ["submitted", "received", "processing", "result-ready", "result-returned"]
        for n in range(1, 9):
            for s in states[: 1 + n % 5]:
                central.append(
                    f"office:{OFFICE}", "dossier-status", _code(n), status_body(_code(n), s)
                )
        for n in range(1, 4):
            for rev in range(3):
                code = f"HT-261201-{1000 + n}"
                central.append(
                    f"office:{OFFICE}", "answer", code, answer_body(code, f"Trả lời {rev}")
                )
        central.append(
            f"office:{OTHER_OFFICE}",
            "dossier-status",
            _code(1, OTHER_OFFICE),
            status_body(_code(1, OTHER_OFFICE), "received"),
        )
        central.append("kiosk:k-down-99", "news", "n-foreign", news_body("n-foreign", "Khác"))
        newest = central.latest()
        kiosk = start_kiosk(broker, kiosk_db, K, state_page_limit=7)
        wait_until(lambda: kiosk.inbox.cursor() == newest, 60, "the kiosk caught up")
        inbox = kiosk.inbox
        catalogue = inbox.get("catalogue", "catalogue")
        assert catalogue is not None and catalogue.body["version"] == 12
        for n in range(1, 9):
            got = inbox.get("dossier-status", _code(n))
            assert got is not None and got.body["state"] == states[n % 5], n
        for n in range(1, 4):
            got = inbox.get("answer", f"HT-261201-{1000 + n}")
            assert got is not None and got.body["answer"] == "Trả lời 2"
        assert inbox.get("dossier-status", _code(1, OTHER_OFFICE)) is None
        assert inbox.get("news", "n-foreign") is None
        # 1 catalogue + 8 statuses + 3 answers, superseded versions never sent.
        assert central.downlink.counters.items_sent == 12
        state = kiosk.client.state
        assert state is not None
        # paged, 7 at a time; the last page's count is taken just after its transaction
        # (which moved the cursor waited for above), so wait for it rather than race it
        wait_until(lambda: state.counters.pages_applied >= 2, 10, "the second page counted")
        assert state.counters.timeouts == 0
    finally:
        kiosk.stop()
        central.stop()


def test_an_online_kiosk_gets_a_new_item_through_a_nudge(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    central = start_central(broker, tmp_path / "central.db")
    kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K, state_reply_timeout_s=600)
    try:
        wait_until(lambda: kiosk.inbox.last_reply_at() is not None, 60, "first state reply")
        state = kiosk.client.state
        assert state is not None
        requests_before = state.counters.requests
        central.append(
            f"office:{OFFICE}", "dossier-status", _code(7), status_body(_code(7), "result-ready")
        )
        wait_until(lambda: kiosk.inbox.get("dossier-status", _code(7)) is not None, 60, "nudged")
        assert kiosk.client.counters.connects == 1  # no reconnect was needed
        assert state.counters.nudges >= 1
        assert state.counters.requests == requests_before + 1
    finally:
        kiosk.stop()
        central.stop()


def test_state_arrives_through_a_broker_that_kept_no_retained_messages(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    central = start_central(broker, tmp_path / "central.db")
    kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K)
    try:
        wait_until(lambda: kiosk.inbox.last_reply_at() is not None, 60, "first state reply")
        broker.kill()  # SIGKILL: no autosave, and its persistence file goes too
        (broker.data / "mosquitto.db").unlink(missing_ok=True)
        central.append("*", "catalogue", "catalogue", {"version": 4, "procedures": []})
        central.append(
            f"office:{OFFICE}", "answer", "HT-261201-1001", answer_body("HT-261201-1001", "Có")
        )
        newest = central.latest()
        broker.start()
        wait_until(lambda: kiosk.inbox.cursor() == newest, 60, "state after the broker restart")
        got = kiosk.inbox.get("catalogue", "catalogue")
        assert got is not None and got.body["version"] == 4
        assert kiosk.client.counters.connects >= 2
    finally:
        kiosk.stop()
        central.stop()


def test_replayed_and_foreign_state_replies_are_ignored(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    central = start_central(broker, tmp_path / "central.db")
    watch = Listener(broker.observer(), "aps-observer", [down_topic(K, "state")])
    intruder = Listener(broker.collector("aps-collector-2"), "aps-collector-2", [])
    kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K)
    try:
        assert watch.subscribed.wait(10)
        central.append(
            f"office:{OFFICE}", "answer", "HT-261201-1001", answer_body("HT-261201-1001", "Một")
        )
        wait_until(lambda: kiosk.inbox.get("answer", "HT-261201-1001") is not None, 60, "answer")
        wait_until(lambda: watch.on("/down/state"), 10, "observer saw a reply")
        genuine = watch.on("/down/state")[-1]
        state = kiosk.client.state
        assert state is not None
        ignored = state.counters.ignored_replies
        cursor = kiosk.inbox.cursor()
        # A replay of the genuine reply, and a reply to a request this kiosk never made
        # (another kiosk's request id) carrying a newer-looking answer.
        intruder.publish(down_topic(K, "state"), genuine)
        forged = StateReply(
            request=new_ulid(),
            items=(
                Item(
                    cursor=10**9,
                    kind="answer",
                    key="HT-261201-1001",
                    body=answer_body("HT-261201-1001", "Giả mạo"),
                ),
            ),
            next_cursor=10**9,
            more=False,
        )
        intruder.publish(down_topic(K, "state"), forged.encode())  # unsigned: refused unread
        # Signed by central but answering no request of this kiosk's: the machine ignores it.
        intruder.publish(
            down_topic(K, "state"), sign_downlink(forged.encode(), keyring.CENTRAL_KEY)
        )
        wait_until(lambda: state.counters.ignored_replies >= ignored + 2, 30, "both ignored")
        assert kiosk.client.counters.downlink_refused == 1
        assert decode_state_reply(genuine).request != forged.request
        got = kiosk.inbox.get("answer", "HT-261201-1001")
        assert got is not None and got.body["answer"] == "Một"
        assert kiosk.inbox.cursor() == cursor
    finally:
        kiosk.stop()
        watch.close()
        intruder.close()
        central.stop()


def test_a_kiosk_claiming_another_office_is_refused(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    central = start_central(broker, tmp_path / "central.db")
    conn = backoffice_db.connect(central.db)
    with backoffice_db.transaction(conn):
        downlink_log.assign_office(conn, K, OFFICE)
    conn.close()
    code = _code(3, OTHER_OFFICE)
    central.append(f"office:{OTHER_OFFICE}", "dossier-status", code, status_body(code, "received"))
    kiosk = start_kiosk(
        broker,
        tmp_path / "kiosk.db",
        K,
        office=OTHER_OFFICE,
        state_reply_timeout_s=0.5,
        state_max_attempts=2,
    )
    try:
        wait_until(lambda: central.downlink.counters.office_conflicts >= 2, 60, "refusals")
        state = kiosk.client.state
        assert state is not None
        wait_until(lambda: state.counters.gave_up >= 1, 60, "the kiosk stops asking for now")
        assert kiosk.inbox.get("dossier-status", code) is None
        assert kiosk.inbox.last_reply_at() is None
        conn = backoffice_db.connect(central.db)
        assert downlink_log.office_of(conn, K) == OFFICE  # the claim changed nothing
        conn.close()
    finally:
        kiosk.stop()
        central.stop()


def test_a_refused_subscription_is_counted_and_reported_in_the_heartbeat(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    settings = broker.kiosk(K)
    DynsecAdmin(broker.admin()).run(
        [
            {
                "command": "removeRoleACL",
                "rolename": kiosk_role(K),
                "acltype": "subscribePattern",
                "topic": "aps/v1/fleet/down/#",
            }
        ]
    )
    watch = Listener(broker.observer(), "aps-observer", [up_topic(K, "heartbeat")])
    kiosk = start_kiosk(
        broker, tmp_path / "kiosk.db", K, mqtt_settings=settings, heartbeat_interval_s=0.2
    )
    try:
        # Two fleet topics refused: central's presence and its key set.
        wait_until(lambda: kiosk.client.counters.subscribe_failures == 2, 60, "SUBACK failure")
        wait_until(lambda: watch.on("/up/heartbeat"), 60, "a heartbeat")
        beat = json.loads(watch.on("/up/heartbeat")[-1])
        assert beat["subscribe_failures"] == 2
        assert kiosk.client.counters.connects == 1  # the session still started
    finally:
        kiosk.stop()
        watch.close()


def test_a_second_subscription_does_not_resend_the_window(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "kiosk.db"
    stack.fill_outbox(db, 10, kiosk=K)
    kiosk = start_kiosk(broker, db, K)  # no collector: nothing is acked
    try:
        wait_until(lambda: kiosk.client.counters.published == 10, 60, "window published")
        kiosk.client.network.client.subscribe(topic(K, "down", "extra"), 1)
        wait_until(lambda: kiosk.client.counters.other_subacks == 1, 60, "second SUBACK")
        # A later SUBACK on the same connection is not a new session.
        assert kiosk.client.counters.connects == 1
        assert kiosk.client.counters.published == 10
        assert kiosk.client.counters.retransmitted == 0
    finally:
        kiosk.stop()


def test_remote_calls_answer_fail_and_time_out(broker: MosquittoProcess, tmp_path: Path) -> None:
    central = start_central(broker, tmp_path / "central.db")
    release = threading.Event()

    def start(kiosk: str, params: dict[str, object]) -> dict[str, object]:
        return {"transaction": f"tx-{kiosk}", "hash": params["hash"]}

    def refuse(kiosk: str, params: dict[str, object]) -> dict[str, object]:
        raise RpcFailure("rejected", "Người dân đã từ chối ký")

    def hang(kiosk: str, params: dict[str, object]) -> dict[str, object]:
        release.wait(30)
        return {}

    central.downlink.register_rpc("sign.start", start)
    central.downlink.register_rpc("sign.poll", refuse)
    central.downlink.register_rpc("test.hang", hang)
    kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K, rpc_max_outstanding=1)
    try:
        wait_until(lambda: kiosk.client.network.connected.is_set(), 60, "connected")
        wait_until(lambda: kiosk.inbox.last_reply_at() is not None, 60, "first state reply")
        result = kiosk.client.call("sign.start", {"hash": "ab" * 32}, timeout_s=30)
        assert result == {"transaction": f"tx-{K}", "hash": "ab" * 32}
        with pytest.raises(RpcError) as refused:
            kiosk.client.call("sign.poll", {}, timeout_s=30)
        assert refused.value.code == "rejected"
        assert refused.value.message == "Người dân đã từ chối ký"
        with pytest.raises(RpcError) as unknown:
            kiosk.client.call("sign.nothing", {}, timeout_s=30)
        assert unknown.value.code == "unknown-method"
        with pytest.raises(RpcTimeout):
            kiosk.client.call("test.hang", {}, timeout_s=0.5)
        # One call waiting at most (rpc_max_outstanding=1): a second one is refused.
        errors: list[BaseException] = []
        waiter = threading.Thread(
            target=lambda: _catch(errors, lambda: kiosk.client.call("test.hang", {}, timeout_s=30))
        )
        waiter.start()
        wait_until(lambda: len(kiosk.client._rpc_waiting) == 1, 10, "one call waiting")
        with pytest.raises(RpcError) as busy:
            kiosk.client.call("sign.start", {"hash": "cd"}, timeout_s=30)
        assert busy.value.code == "busy"
        release.set()
        waiter.join(30)
        assert not waiter.is_alive() and not errors
        # The reply to the call that timed out came later and was ignored.
        wait_until(lambda: kiosk.client.counters.rpc_ignored_replies >= 1, 30, "late reply")
    finally:
        release.set()
        kiosk.stop()
        central.stop()


def _catch(errors: list[BaseException], fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except BaseException as exc:
        errors.append(exc)


def test_a_flooding_kiosk_is_throttled_and_another_kiosk_is_served(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    central = start_central(
        broker,
        tmp_path / "central.db",
        DownlinkSettings(requests_per_s=1.0, burst=5, nudge_interval_s=0.1),
    )
    flooder_id = "k-down-66"
    flooder = Listener(broker.kiosk(flooder_id), flooder_id, [])
    kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K)
    try:
        assert flooder.subscribed.wait(10)
        wait_until(lambda: kiosk.inbox.last_reply_at() is not None, 60, "first state reply")
        for _ in range(200):
            req = {
                "v": 1,
                "type": "state-request",
                "kiosk": flooder_id,
                "request": new_ulid(),
                "cursor": 0,
                "office": OFFICE,
                "limit": 100,
            }
            flooder.client.publish(up_topic(flooder_id, "state-request"), json.dumps(req), qos=0)
        wait_until(lambda: central.downlink.counters.throttled >= 150, 60, "flood throttled")
        assert central.downlink.counters.per_kiosk_throttled.get(K, 0) == 0
        code = _code(5)
        central.append(f"office:{OFFICE}", "dossier-status", code, status_body(code, "processing"))
        wait_until(lambda: kiosk.inbox.get("dossier-status", code) is not None, 60, "served")
    finally:
        kiosk.stop()
        flooder.close()
        central.stop()


def test_items_appended_while_central_was_down_arrive_when_its_collector_is_back(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    """No nudge covers them (the new nudger starts from the newest cursor): the
    collector's live "online" makes the kiosk ask again, without reconnecting."""
    central = start_central(broker, tmp_path / "central.db")
    kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K, state_reply_timeout_s=600)
    try:
        wait_until(lambda: kiosk.inbox.last_reply_at() is not None, 60, "first state reply")
        central.stop()
        code = _code(8)
        central.append(f"office:{OFFICE}", "dossier-status", code, status_body(code, "rejected"))
        central = start_central(broker, tmp_path / "central.db")
        wait_until(lambda: kiosk.inbox.get("dossier-status", code) is not None, 60, "after restart")
        assert kiosk.client.counters.connects == 1
        assert kiosk.client.counters.central_restarts >= 1
        assert central.downlink.counters.nudges == 0  # it came through the poke
    finally:
        kiosk.stop()
        central.stop()


def test_a_remote_call_while_offline_fails_at_once(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K)
    try:
        wait_until(lambda: kiosk.client.session_up.is_set(), 60, "session up")
        broker.stop()
        wait_until(lambda: not kiosk.client.session_up.is_set(), 60, "link down")
        with pytest.raises(RpcError) as offline:
            kiosk.client.call("sign.start", {}, timeout_s=30)
        assert offline.value.code == "offline"
        with pytest.raises(RpcError) as bad:
            kiosk.client.call("Sign Start", {}, timeout_s=30)
        assert bad.value.code == "bad-request"
        with pytest.raises(RpcError) as big:
            kiosk.client.call("sign.start", {"x": "a" * 70_000}, timeout_s=30)
        assert big.value.code == "bad-request"
    finally:
        kiosk.stop()


def test_with_two_collectors_in_a_share_group_each_request_is_answered_once(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "central.db"
    one = start_central(broker, db, name="aps-collector-1", shared_group="aps-collectors")
    two = start_central(broker, db, name="aps-collector-2", shared_group="aps-collectors")
    wait_until(lambda: one.collector.online.is_set() and two.collector.online.is_set(), 60, "up")
    kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K, state_page_limit=1)
    try:
        for n in range(1, 7):
            code = _code(n)
            one.append(f"office:{OFFICE}", "dossier-status", code, status_body(code, "received"))
        newest = one.latest()
        wait_until(lambda: kiosk.inbox.cursor() == newest, 60, "caught up")
        state = kiosk.client.state
        assert state is not None
        wait_until(lambda: state.outstanding is None, 30, "no request outstanding")

        def answered() -> int:
            return one.downlink.counters.state_replies + two.downlink.counters.state_replies

        # Twice-answered requests would leave answered() above requests for good.
        wait_until(lambda: answered() == state.counters.requests, 30, "one reply per request")
        assert state.counters.ignored_replies == 0
        assert one.downlink.counters.state_replies and two.downlink.counters.state_replies
    finally:
        kiosk.stop()
        one.stop()
        two.stop()


def test_aps_central_run_serves_state_and_nudges(broker: MosquittoProcess, tmp_path: Path) -> None:
    """The service as installed: ``python -m central.cli run`` with a shipped-style config."""
    db = tmp_path / "central.db"
    cfg = stack.write_central_config(tmp_path / "central.toml", db, broker.collector())
    proc = stack.spawn("central.cli", cfg, tmp_path / "central.log")
    kiosk = None
    try:
        wait_until(db.exists, 60, "central created its database")
        kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K, state_reply_timeout_s=600)
        wait_until(lambda: kiosk.inbox.last_reply_at() is not None, 60, "first state reply")
        conn = backoffice_db.connect(db)
        code = _code(9)
        with backoffice_db.transaction(conn):
            downlink_log.append(
                conn, f"office:{OFFICE}", "dossier-status", code, status_body(code, "result-ready")
            )
        conn.close()
        wait_until(lambda: kiosk.inbox.get("dossier-status", code) is not None, 60, "nudged")
        assert kiosk.client.counters.connects == 1
    finally:
        if kiosk is not None:
            kiosk.stop()
        stack.stop(proc)
    assert proc.returncode == 0, (tmp_path / "central.log").read_text()


def _kiosk_item(db: Path, kind: str, key: str) -> dict[str, object] | None:
    if not db.exists():
        return None
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT body FROM downlink_items WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
    except sqlite3.OperationalError:  # no tables yet
        return None
    finally:
        conn.close()
    return None if row is None else dict(json.loads(row[0]))


def test_both_services_as_installed_a_killed_agent_catches_up_when_it_comes_back(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    """``aps-central run`` and ``aps-agent run`` as processes; the agent SIGKILLed meanwhile."""
    central_db, kiosk_db = tmp_path / "central.db", tmp_path / "kiosk.db"
    central_cfg = stack.write_central_config(tmp_path / "c.toml", central_db, broker.collector())
    agent_cfg = stack.write_agent_config(
        tmp_path / "a.toml", kiosk_db, broker.kiosk(stack.KIOSK), state_reply_timeout_s=600
    )
    central = stack.spawn("central.cli", central_cfg, tmp_path / "central.log")
    agent = stack.spawn("edge_agent.cli", agent_cfg, tmp_path / "agent.log")
    try:
        first = _code(1)
        wait_until(central_db.exists, 60, "central's database")
        conn = backoffice_db.connect(central_db)
        with backoffice_db.transaction(conn):
            downlink_log.append(
                conn, f"office:{OFFICE}", "dossier-status", first, status_body(first, "received")
            )
        wait_until(lambda: _kiosk_item(kiosk_db, "dossier-status", first), 60, "online: nudged")
        stack.kill9(agent)
        later = _code(2)
        with backoffice_db.transaction(conn):
            downlink_log.append(
                conn, f"office:{OFFICE}", "dossier-status", first, status_body(first, "rejected")
            )
            downlink_log.append(
                conn, f"office:{OFFICE}", "dossier-status", later, status_body(later, "processing")
            )
        conn.close()
        agent = stack.spawn("edge_agent.cli", agent_cfg, tmp_path / "agent.log")
        wait_until(lambda: _kiosk_item(kiosk_db, "dossier-status", later), 60, "caught up")
        got = _kiosk_item(kiosk_db, "dossier-status", first)
        assert got is not None and got["state"] == "rejected"
    finally:
        stack.stop(agent)
        stack.stop(central)


def test_remote_signing_round_trip_over_mqtt_through_aps_central_run(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    """The kiosk's RemoteSigner on SyncClient.call; central's signing service as wired
    by ``aps-central run``; the mock provider (SmartCA shape) on loopback."""
    import hashlib

    from edge_agent.services.remote_signing import Pending, RemoteSigner, Signed
    from firmware_mocks.signing_provider import MockSigningProvider
    from sync.signature_check import verify_hash_signature

    with MockSigningProvider(key_type="rsa") as provider:
        db = tmp_path / "central.db"
        cfg = stack.write_central_config(tmp_path / "central.toml", db, broker.collector())
        with cfg.open("a", encoding="utf-8") as fh:
            fh.write(
                f'\n[signing]\nprovider = "smartca"\nbase_url = "{provider.base_url}"\n'
                f'client_id = "{provider.client_id}"\nclient_secret = "{provider.client_secret}"\n'
            )
        proc = stack.spawn("central.cli", cfg, tmp_path / "central.log")
        kiosk = None
        try:
            wait_until(db.exists, 60, "central's database")
            kiosk = start_kiosk(broker, tmp_path / "kiosk.db", K)
            wait_until(lambda: kiosk.inbox.last_reply_at() is not None, 60, "first state reply")
            signer = RemoteSigner(kiosk.client.call)
            digest = hashlib.sha256(b"dossier 000.00.14.H56-261201-1001").digest()
            tx = signer.start(digest, document_name="Tờ khai khai sinh", id_number="001099012345")
            assert isinstance(signer.poll(tx), Pending)
            provider.approve()
            result = signer.poll(tx)
            assert isinstance(result, Signed), result
            verify_hash_signature(digest, result.value, result.certificate)
        finally:
            if kiosk is not None:
                kiosk.stop()
            stack.stop(proc)
        assert proc.returncode == 0, (tmp_path / "central.log").read_text()
