"""Central's signing service as a state machine, against the mock provider on loopback.

Hypothesis drives kiosks starting and polling (their own transactions and each
other's), the citizen approving, refusing or ignoring in the app, and central's
clock moving on. A model says what each poll must answer; invariants hold after
every step: no kiosk is over its quota, a final answer never changes, another
kiosk's id is never found, a signature always verifies over its hash.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from central.signing import SigningService, SigningSettings, build_provider
from firmware_mocks.signing_provider import MockSigningProvider
from sync.signature_check import verify_hash_signature

KIOSKS = ["kiosk-a", "kiosk-b", "kiosk-c"]
QUOTA = 2
TTL = 100.0
KEEP = 600.0


@dataclass
class ModelTx:
    tx: str
    kiosk: str
    ref: str  # the provider's id
    digest: bytes
    started: float
    provider_state: str = "pending"  # what the citizen did in the app
    final: dict[str, Any] | None = None
    finished_at: float | None = None


class SigningMachine(RuleBasedStateMachine):
    shape = "smartca"
    txs = Bundle("txs")

    def __init__(self) -> None:
        super().__init__()
        self.mock = MockSigningProvider(key_type="ec").start()
        self.now = 1_800_000_000.0
        s = SigningSettings(
            provider=self.shape,  # type: ignore[arg-type]
            base_url=self.mock.base_url,
            client_id=self.mock.client_id,
            client_secret=self.mock.client_secret,
            request_timeout_s=5.0,
            transaction_ttl_s=TTL,
            max_outstanding_per_kiosk=QUOTA,
            keep_finished_s=KEEP,
        )
        self.service = SigningService(build_provider(s), s, clock=lambda: self.now)
        self.model: dict[str, ModelTx] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.service.close()
        self.mock.stop()

    def open_of(self, kiosk: str) -> int:
        return sum(
            1
            for m in self.model.values()
            if m.kiosk == kiosk and m.final is None and self.now < m.started + TTL
        )

    @rule(target=txs, kiosk=st.sampled_from(KIOSKS))
    def start(self, kiosk: str) -> Any:
        self.counter += 1
        digest = hashlib.sha256(f"dossier {self.counter}".encode()).digest()
        before = set(self.mock._txs)
        reply = self.service.start(
            kiosk,
            {
                "hash_sha256": digest.hex(),
                "document_name": "Hồ sơ",
                "signer": {"id_number": "001099012345"},
            },
        )
        if self.open_of(kiosk) >= QUOTA:
            assert reply.get("error") == "too-many", reply
            return None
        assert "transaction" in reply, reply
        (ref,) = set(self.mock._txs) - before
        m = ModelTx(tx=reply["transaction"], kiosk=kiosk, ref=ref, digest=digest, started=self.now)
        self.model[m.tx] = m
        return m.tx

    @rule(tx=txs, decision=st.sampled_from(["approve", "reject", "expire"]))
    def citizen(self, tx: str | None, decision: str) -> None:
        m = self.model.get(tx) if tx else None
        if m is None or m.provider_state != "pending":
            return
        getattr(self.mock, decision)(m.ref)
        m.provider_state = {"approve": "approved", "reject": "rejected", "expire": "expired"}[
            decision
        ]

    @rule(seconds=st.sampled_from([1.0, 30.0, TTL, KEEP]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(tx=txs, stranger=st.sampled_from([None, None, *KIOSKS]))
    def poll(self, tx: str | None, stranger: str | None) -> None:
        """The owner polls (stranger None), or some kiosk tries this id."""
        m = self.model.get(tx) if tx else None
        if m is None:
            return
        kiosk = stranger or m.kiosk
        reply = self.service.poll(kiosk, {"transaction": m.tx})
        if kiosk != m.kiosk:
            assert reply.get("error") == "not-found" and set(reply) == {"error", "detail"}, reply
            return
        if m.final is not None:
            if self.now - (m.finished_at or 0) >= KEEP:
                assert reply.get("error") == "not-found", reply
            else:
                assert reply == m.final, (reply, m.final)
            return
        if self.now >= m.started + TTL + KEEP and reply.get("error") == "not-found":
            return  # expired at central unpolled, and forgotten KEEP seconds later
        expected = (
            "expired"
            if self.now >= m.started + TTL
            else {"pending": "pending", "approved": "signed"}.get(
                m.provider_state, m.provider_state
            )
        )
        assert reply.get("state") == expected, (reply, expected, m)
        if expected == "signed":
            verify_hash_signature(
                m.digest,
                base64.b64decode(reply["value_b64"]),
                base64.b64decode(reply["certificate_b64"]),
            )
        if expected != "pending":
            m.final, m.finished_at = reply, self.now

    @rule(tx=consumes(txs))
    def forget(self, tx: str | None) -> None:
        """The kiosk walks away from a transaction (the citizen left)."""

    @invariant()
    def quotas_hold(self) -> None:
        for kiosk in KIOSKS:
            assert self.service.outstanding(kiosk) <= QUOTA


SigningMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestSmartCaSigning = SigningMachine.TestCase


class CscSigningMachine(SigningMachine):
    shape = "csc"


CscSigningMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None
)
TestCscSigning = CscSigningMachine.TestCase
