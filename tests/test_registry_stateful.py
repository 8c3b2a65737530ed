"""The registry and its tokens against a simple model (hypothesis RuleBasedStateMachine).

Drives the real :class:`Enrolment` (tokens, redemption by new boxes with real CSRs, the
same box retrying, connect, revoke, time passing) over a real SQLite registry while a dict
model predicts every answer. After each step: the registry's states equal the model's, no
office slot has two live kiosks, every used token enrolled exactly one kiosk, and a revoked
kiosk never may send again.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from central.backoffice_db import PgTarget
from central.fleet import tokens
from central.fleet.ca import CertificateAuthority
from central.fleet.enrolment import BrokerAddress, Enrolment, EnrolRefused
from central.fleet.lifecycle import IllegalTransition, KioskState, TokenState
from central.fleet.registry import Registry, SlotHeld
from sync.identity_files import public_key_text
from tests.pg import PgDatabase

OFFICES = ("000.00.14.H56", "000.00.15.H57")
SLOTS = (0, 1, 2)
_CA_DIR = Path(tempfile.mkdtemp(prefix="aps-ca-"))
CA = CertificateAuthority.open(_CA_DIR / "ca")


def new_box() -> tuple[str, str]:
    """(CSR, public signing key) of a new box: its own TLS and signing keys."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "box")]))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    return csr, public_key_text(Ed25519PrivateKey.generate().public_key())


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="aps-reg-"))
        self.now = 1_800_000_000.0
        self.registry = self.open_registry()
        self.service = Enrolment(
            registry=self.registry,
            ca=CA,
            central_keys=[],
            broker=BrokerAddress("127.0.0.1"),
            central_url="https://central",
            offices=OFFICES,
            clock=lambda: self.now,
        )
        # model: token text -> [office, slot, state, expires_at]; kiosk -> [office, slot, state]
        self.tokens: dict[str, list[object]] = {}
        self.kiosks: dict[str, list[object]] = {}
        self.ever_revoked: set[str] = set()
        self.boxes: dict[str, tuple[str, str, str]] = {}  # used token -> (csr, key, kiosk)

    def open_registry(self) -> Registry:
        return Registry(self.dir / "central.db", cache_s=0)

    def teardown(self) -> None:
        self.registry.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model's view --------------------------------------------------------------

    def slot_held(self, office: str, slot: int) -> bool:
        if any(
            k[0] == office and k[1] == slot and k[2] != KioskState.REVOKED
            for k in self.kiosks.values()
        ):
            return True
        return any(
            t[0] == office and t[1] == slot and t[2] == TokenState.ISSUED and self.now < t[3]  # type: ignore[operator]
            for t in self.tokens.values()
        )

    # -- rules ---------------------------------------------------------------------------

    @rule(office=st.sampled_from(OFFICES), slot=st.sampled_from(SLOTS), minutes=st.integers(1, 90))
    def create_token(self, office: str, slot: int, minutes: int) -> None:
        held = self.slot_held(office, slot)
        try:
            issued = self.service.create_token(
                office=office, slot=slot, lifetime=timedelta(minutes=minutes)
            )
        except SlotHeld:
            assert held
            return
        assert not held
        self.tokens[issued.token] = [office, slot, TokenState.ISSUED, self.now + minutes * 60]

    @rule(minutes=st.integers(1, 60))
    def time_passes(self, minutes: int) -> None:
        self.now += minutes * 60

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def redeem(self, data: st.DataObject) -> None:
        token = data.draw(st.sampled_from(list(self.tokens)))
        office, slot, state, expires = self.tokens[token]
        csr, signing = new_box()
        body = {"token": token, "csr": csr, "signing_key": signing}
        try:
            answer = self.service.enrol(body)
        except EnrolRefused as exc:
            if state == TokenState.USED:
                assert exc.code == "token-used"
            elif state == TokenState.REVOKED:
                assert exc.code == "token-revoked"
            else:
                assert exc.code == "token-expired" and self.now >= expires  # type: ignore[operator]
                self.tokens[token][2] = TokenState.EXPIRED
            return
        except SlotHeld:
            # Only possible if a kiosk took the slot while this token was outstanding:
            # token creation refuses that, so it must never happen.
            raise AssertionError("a live token's slot was taken") from None
        assert state == TokenState.ISSUED and self.now < expires  # type: ignore[operator]
        self.tokens[token][2] = TokenState.USED
        assert answer["kiosk"] not in self.kiosks
        self.kiosks[answer["kiosk"]] = [office, slot, KioskState.PENDING]
        self.boxes[token] = (csr, signing, answer["kiosk"])

    @precondition(lambda self: self.boxes)
    @rule(data=st.data())
    def the_same_box_retries(self, data: st.DataObject) -> None:
        token = data.draw(st.sampled_from(list(self.boxes)))
        csr, signing, kiosk = self.boxes[token]
        try:
            answer = self.service.enrol({"token": token, "csr": csr, "signing_key": signing})
        except EnrolRefused as exc:
            assert exc.code == "token-used" and self.kiosks[kiosk][2] == KioskState.REVOKED
            return
        assert answer["kiosk"] == kiosk and self.kiosks[kiosk][2] != KioskState.REVOKED

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def revoke_token(self, data: st.DataObject) -> None:
        token = data.draw(st.sampled_from(list(self.tokens)))
        try:
            tokens.revoke(self.registry, token.split(".")[0])
        except IllegalTransition:
            assert self.tokens[token][2] != TokenState.ISSUED
            return
        assert self.tokens[token][2] == TokenState.ISSUED
        self.tokens[token][2] = TokenState.REVOKED

    @precondition(lambda self: self.kiosks)
    @rule(data=st.data())
    def connect(self, data: st.DataObject) -> None:
        kiosk = data.draw(st.sampled_from(sorted(self.kiosks)))
        try:
            self.registry.mark_connected(kiosk)
        except IllegalTransition:
            assert self.kiosks[kiosk][2] == KioskState.REVOKED
            return
        assert self.kiosks[kiosk][2] != KioskState.REVOKED
        self.kiosks[kiosk][2] = KioskState.ACTIVE

    @precondition(lambda self: self.kiosks)
    @rule(data=st.data())
    def revoke_kiosk(self, data: st.DataObject) -> None:
        kiosk = data.draw(st.sampled_from(sorted(self.kiosks)))
        try:
            self.registry.revoke(kiosk, reason="test")
        except IllegalTransition:
            assert self.kiosks[kiosk][2] == KioskState.REVOKED
            return
        assert self.kiosks[kiosk][2] != KioskState.REVOKED
        self.kiosks[kiosk][2] = KioskState.REVOKED
        self.ever_revoked.add(kiosk)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def states_match_the_model(self) -> None:
        got = {e.kiosk: [e.office, e.slot, e.state] for e in self.registry.list()}
        assert got == self.kiosks
        by_id = {t.token_id: t for t in tokens.list_tokens(self.registry)}
        for token, (_o, _s, state, _e) in self.tokens.items():
            assert by_id[token.split(".")[0]].state == state

    @invariant()
    def never_two_live_kiosks_on_one_slot(self) -> None:
        live = [(e.office, e.slot) for e in self.registry.list() if e.state != KioskState.REVOKED]
        assert len(live) == len(set(live))

    @invariant()
    def a_token_enrols_at_most_one_kiosk(self) -> None:
        used = [t for t in tokens.list_tokens(self.registry) if t.state is TokenState.USED]
        assert all(t.kiosk is not None for t in used)
        assert len({t.kiosk for t in used}) == len(used) == len(self.kiosks)

    @invariant()
    def a_revoked_kiosk_never_sends_again(self) -> None:
        for kiosk in self.ever_revoked:
            sender = self.registry.sender(kiosk)
            assert sender is not None and not sender.may_send


RegistryMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25)
TestRegistryMachine = RegistryMachine.TestCase


def test_the_model_holds_on_postgresql(pg: PgDatabase) -> None:
    """The same machine over central's PostgreSQL: each example in a schema of its own."""

    class PgRegistryMachine(RegistryMachine):
        def open_registry(self) -> Registry:
            return Registry(PgTarget(pg.schema_dsn(self.dir.name)), cache_s=0)

    run_state_machine_as_test(
        PgRegistryMachine,
        settings=settings(max_examples=25, stateful_step_count=25, deadline=None),
    )
