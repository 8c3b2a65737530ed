"""Remote signing over the local API: the screen's calls, a real central and mock provider.

The stack is test_app_remote_signing's (mosquitto, central as installed, the mock
SmartCA provider, a KioskApp on the broker); the screen's side goes over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from edge_agent.api import ApiServer
from tests.test_app_remote_signing import (
    FORM,
    PHONE,
    POLL_BOUND_S,
    PROCEDURE,
    SigningStack,
    central_dossiers,
    kiosk_dossier_records,
    read_card,
    signing_stack,
)
from tests.waiting import wait_until

__all__ = ["signing_stack"]  # the fixture, used by name below
V1 = "/api/v1"


@pytest.fixture
def screen(signing_stack: SigningStack) -> Iterator[httpx.Client]:
    srv = ApiServer(signing_stack.app, "127.0.0.1:0")
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as client:
            yield client
    finally:
        srv.stop()


def poll(screen: httpx.Client, tx: str) -> dict[str, object]:
    deadline = time.monotonic() + POLL_BOUND_S
    while time.monotonic() < deadline:
        r = screen.get(f"{V1}/signing/{tx}")
        assert r.status_code == 200, r.text
        if r.json()["state"] != "pending":
            return dict(r.json())
        time.sleep(0.1)
    raise AssertionError(f"transaction {tx} still pending after {POLL_BOUND_S}s")


def test_the_screen_signs_remotely_and_files(
    signing_stack: SigningStack, screen: httpx.Client
) -> None:
    read_card(signing_stack.app)
    prepared = screen.post(
        f"{V1}/filings/prepare", json={"procedure": PROCEDURE, "form": FORM, "phone": PHONE}
    ).json()
    sha = prepared["document_sha256"]
    started = screen.post(f"{V1}/signing", json={"document_sha256": sha})
    assert started.status_code == 200, started.text
    tx = started.json()["transaction"]
    assert screen.get(f"{V1}/signing/{tx}").json()["state"] == "pending"

    # filing before the citizen approved is refused, nothing written
    early = screen.post(
        f"{V1}/filings",
        json={"document_sha256": sha, "signature": {"type": "remote", "transaction": tx}},
    )
    assert early.status_code == 422 and early.json()["error"]["field"] == "signature.transaction"
    assert kiosk_dossier_records(signing_stack.kiosk_db) == 0

    (waiting,) = signing_stack.provider.pending()
    signing_stack.provider.approve(waiting)
    assert poll(screen, tx)["state"] == "signed"

    filed = screen.post(
        f"{V1}/filings",
        json={"document_sha256": sha, "signature": {"type": "remote", "transaction": tx}},
    )
    assert filed.status_code == 200, filed.text
    code = filed.json()["code"]
    wait_until(
        lambda: any(d["code"] == code for d in central_dossiers(signing_stack.central_db)),
        60,
        "the dossier at central",
    )
    (dossier,) = central_dossiers(signing_stack.central_db)
    assert dossier["signature"]["method"] == "remote"
    assert dossier["signature"]["document_sha256"] == sha
    assert dossier["signature"]["transaction"] == tx


def test_a_rejection_reaches_the_screen(signing_stack: SigningStack, screen: httpx.Client) -> None:
    read_card(signing_stack.app)
    prepared = screen.post(
        f"{V1}/filings/prepare", json={"procedure": PROCEDURE, "form": FORM, "phone": PHONE}
    ).json()
    tx = screen.post(f"{V1}/signing", json={"document_sha256": prepared["document_sha256"]}).json()[
        "transaction"
    ]
    signing_stack.provider.reject()
    answer = poll(screen, tx)
    assert answer["state"] == "rejected"
    assert "từ chối" in str(answer["message_vi"])
    refused = screen.post(
        f"{V1}/filings",
        json={
            "document_sha256": prepared["document_sha256"],
            "signature": {"type": "remote", "transaction": tx},
        },
    )
    assert refused.status_code == 422
    assert kiosk_dossier_records(signing_stack.kiosk_db) == 0
