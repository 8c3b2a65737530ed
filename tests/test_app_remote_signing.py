"""Remote signing through the kiosk application, as the screen will drive it.

Everything real but the provider: a mosquitto started here, central as
installed (``python -m central.cli run``) with a ``[signing]`` section pointing
at the mock provider (``firmware_mocks/signing_provider.py``, SmartCA shape, on
loopback), and a :class:`edge_agent.app.KioskApp` connected to that broker.
The citizen's card is read (a device event), the filing is prepared, the
citizen approves or refuses in the provider's app (the mock's control API),
the screen polls ``app.signing`` until a final answer and files with it. What
counts is what central's records table and the kiosk's outbox hold.

Every wait is bounded; nothing here measures time.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from central.mosquitto import MosquittoProcess
from edge_agent.app import KioskApp
from edge_agent.devices import DeviceEvent
from edge_agent.inbox import Inbox
from edge_agent.services.filing import PreparedFiling
from edge_agent.services.remote_signing import (
    MSG_REJECTED,
    Pending,
    PollResult,
    Rejected,
    Signed,
    Transaction,
)
from edge_agent.signature import RemoteSignatureResult, SignatureError, document_sha256
from firmware_mocks.signing_provider import MockSigningProvider
from sync.signature_check import verify_hash_signature
from tests import stack
from tests.kiosk import KIOSK, app_config, card
from tests.waiting import wait_until

#: A procedure with a per-page fee (2 x 2.000 + 10 x 1.000 đồng for 12 pages, one copy).
PROCEDURE = "2.000815"
FORM = {"ten_giay_to": "Học bạ", "so_trang": 12, "so_ban": 1}
PHONE = "0912345678"
#: How long the screen keeps polling before the test gives up (a bound, not a measure).
POLL_BOUND_S = 90.0


@dataclass
class SigningStack:
    app: KioskApp
    provider: MockSigningProvider
    central_db: Path
    kiosk_db: Path


@pytest.fixture
def signing_stack(broker: MosquittoProcess, tmp_path: Path) -> Iterator[SigningStack]:
    with MockSigningProvider(key_type="rsa") as provider:
        central_db = tmp_path / "central.db"
        cfg = stack.write_central_config(
            tmp_path / "central.toml", central_db, broker.collector(), kiosks=(KIOSK,)
        )
        with cfg.open("a", encoding="utf-8") as fh:
            fh.write(
                f'\n[signing]\nprovider = "smartca"\nbase_url = "{provider.base_url}"\n'
                f'client_id = "{provider.client_id}"\nclient_secret = "{provider.client_secret}"\n'
            )
        log = tmp_path / "central.log"
        proc = stack.spawn("central.cli", cfg, log)
        app: KioskApp | None = None
        try:
            wait_until(central_db.exists, 60, "central's database")
            agent_cfg = app_config(tmp_path, broker.kiosk(KIOSK))
            app = KioskApp(agent_cfg)
            app.start()
            inbox = app.inbox
            assert isinstance(inbox, Inbox)
            # A state reply means central's downlink answers this kiosk: RPC will too.
            wait_until(lambda: inbox.last_reply_at() is not None, 60, "first state reply")
            yield SigningStack(
                app=app, provider=provider, central_db=central_db, kiosk_db=agent_cfg.agent.database
            )
        finally:
            if app is not None:
                app.stop()
            stack.stop(proc)
        assert proc.returncode == 0, log.read_text(encoding="utf-8")


# -- what the screen does -------------------------------------------------------------


def read_card(app: KioskApp) -> None:
    """The citizen's CCCD under the scanner: the app's own device-event path."""
    notice = app.handle_device_event(
        DeviceEvent(device="scanner", kind="identity", identity=card())
    )
    assert notice is not None and notice.kind == "identity", notice
    assert notice.data["full_name"] == "Nguyễn Thị Ngọc Hường"


def start_signing(app: KioskApp, prepared: PreparedFiling) -> Transaction:
    return app.signing.start(
        bytes.fromhex(prepared.document_sha256),
        document_name=prepared.procedure_name,
        id_number=prepared.applicant.id_number,
        phone=prepared.applicant.phone,
    )


def poll_until_final(app: KioskApp, tx: Transaction) -> PollResult:
    """Poll as the screen does until the answer is no longer Pending (bounded)."""
    deadline = time.monotonic() + POLL_BOUND_S
    while time.monotonic() < deadline:
        result = app.signing.poll(tx)
        if not isinstance(result, Pending):
            return result
        time.sleep(0.1)
    raise AssertionError(f"transaction {tx.id} still pending after {POLL_BOUND_S}s of polling")


# -- what the databases hold ---------------------------------------------------------------


def _read(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # no tables yet
        return []
    finally:
        conn.close()


def central_dossiers(db: Path) -> list[dict[str, Any]]:
    rows = _read(
        db, "SELECT body FROM records WHERE kind = 'dossier' AND kiosk = ? ORDER BY seq", (KIOSK,)
    )
    return [json.loads(r[0]) for r in rows]


def kiosk_counts(db: Path) -> dict[str, int]:
    """What a filing writes on the kiosk: outbox records, dossier rows, confirmations."""
    return {
        table: int(_read(db, f"SELECT count(*) FROM {table}")[0][0])
        for table in ("outbox", "dossiers", "filing_confirmations")
    }


def kiosk_dossier_records(db: Path) -> int:
    return int(_read(db, "SELECT count(*) FROM outbox WHERE kind = 'dossier'")[0][0])


# -- the tests ---------------------------------------------------------------------------------


def test_a_citizen_signs_remotely_and_central_holds_a_signature_over_the_dossier(
    signing_stack: SigningStack,
) -> None:
    app, provider = signing_stack.app, signing_stack.provider
    read_card(app)
    prepared = app.filing.prepare(PROCEDURE, FORM, phone=PHONE)
    assert prepared.fee["amount_vnd"] == 14000
    tx = start_signing(app, prepared)
    # The provider was asked to sign exactly this filing's hash, for this citizen.
    (waiting,) = provider.pending()
    sign_request = next(r for r in provider.requests if r.path == "/v1/signatures/sign")
    assert sign_request.body is not None
    assert sign_request.body["user_id"] == card().id_number
    assert sign_request.body["sign_files"][0]["data_to_be_signed"] == prepared.document_sha256
    assert isinstance(app.signing.poll(tx), Pending)
    provider.approve(waiting)
    signed = poll_until_final(app, tx)
    assert isinstance(signed, Signed), signed
    assert signed.digest.hex() == prepared.document_sha256

    result = app.filing.file(prepared, signature=RemoteSignatureResult.from_signed(signed))
    wait_until(
        lambda: any(d["code"] == result.code for d in central_dossiers(signing_stack.central_db)),
        60,
        "the dossier at central",
    )
    (dossier,) = central_dossiers(signing_stack.central_db)
    signature = dossier["signature"]
    assert signature["method"] == "remote"
    assert signature["document_sha256"] == prepared.document_sha256
    assert signature["provider"] == "smartca"
    assert signature["transaction"] == tx.id
    certificate = base64.b64decode(signature["certificate"])
    assert certificate == provider.certificate_of(card().id_number)
    verify_hash_signature(
        bytes.fromhex(signature["document_sha256"]),
        base64.b64decode(signature["value"]),
        certificate,
    )
    # The signed hash covers what central holds: recomputed from the record itself.
    agency = dossier["code"].rsplit("-", 2)[0]
    assert (
        document_sha256(
            agency=agency,
            procedure=dossier["procedure"],
            procedure_version=dossier.get("procedure_version"),
            applicant=dossier["applicant"],
            form=dossier["form"],
            fee=dossier["fee"],
        )
        == signature["document_sha256"]
    )
    assert dossier["fee"]["amount_vnd"] == 14000
    assert "strokes_att" not in signature and "image_att" not in signature


def test_a_citizen_who_rejects_in_the_app_is_told_so_and_nothing_is_filed(
    signing_stack: SigningStack,
) -> None:
    app, provider = signing_stack.app, signing_stack.provider
    read_card(app)
    before = kiosk_counts(signing_stack.kiosk_db)
    prepared = app.filing.prepare(PROCEDURE, FORM, phone=PHONE)
    tx = start_signing(app, prepared)
    provider.reject()
    answer = poll_until_final(app, tx)
    assert isinstance(answer, Rejected), answer
    assert answer.message == MSG_REJECTED
    assert "từ chối" in answer.message and "ký tay" in answer.message
    # Asking again gives the same final answer (central keeps it), still no signature.
    assert isinstance(app.signing.poll(tx), Rejected)
    assert kiosk_counts(signing_stack.kiosk_db) == before
    assert kiosk_dossier_records(signing_stack.kiosk_db) == 0
    assert central_dossiers(signing_stack.central_db) == []


def test_a_signature_over_another_document_is_refused_by_filing_and_nothing_is_committed(
    signing_stack: SigningStack,
) -> None:
    """The citizen signs, goes back and changes the page count (a new hash and fee),
    and the screen tries to file the changed filing with the first signature."""
    app, provider = signing_stack.app, signing_stack.provider
    read_card(app)
    first = app.filing.prepare(PROCEDURE, FORM, phone=PHONE)
    tx = start_signing(app, first)
    provider.approve()
    signed = poll_until_final(app, tx)
    assert isinstance(signed, Signed), signed
    changed = app.filing.prepare(PROCEDURE, {**FORM, "so_trang": 15}, phone=PHONE)
    assert changed.document_sha256 != first.document_sha256
    assert changed.fee["amount_vnd"] != first.fee["amount_vnd"]
    before = kiosk_counts(signing_stack.kiosk_db)
    with pytest.raises(SignatureError) as refused:
        app.filing.file(changed, signature=RemoteSignatureResult.from_signed(signed))
    assert "document_sha256" in str(refused.value)
    assert refused.value.message_vi == "Chữ ký số không khớp với hồ sơ này. Xin mời Ông/Bà ký lại."
    assert kiosk_counts(signing_stack.kiosk_db) == before
    # The same signature over the filing it was made for goes through: one more of each.
    result = app.filing.file(first, signature=RemoteSignatureResult.from_signed(signed))
    after = kiosk_counts(signing_stack.kiosk_db)
    assert after == {k: v + 1 for k, v in before.items()}
    wait_until(
        lambda: [d["code"] for d in central_dossiers(signing_stack.central_db)] == [result.code],
        60,
        "only the matching dossier at central",
    )
    (dossier,) = central_dossiers(signing_stack.central_db)
    assert dossier["signature"]["document_sha256"] == first.document_sha256
    assert dossier["form"]["so_trang"] == 12
