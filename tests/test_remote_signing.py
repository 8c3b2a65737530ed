"""Remote signing end to end: kiosk port -> central's service -> adapter -> mock provider.

The provider is firmware_mocks.signing_provider on a real loopback port; the
kiosk's ``call`` goes straight to central's RPC handlers (the MQTT RPC transport
is tested on its own). Signatures are real: RSA or EC keys made by the mock.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import TypeAdapter

from central.signing import SigningService, SigningSettings, build_provider
from edge_agent.services.remote_signing import (
    MSG_EXPIRED,
    Expired,
    Pending,
    Rejected,
    RemoteSigner,
    RemoteSigningError,
    Signed,
)
from firmware_mocks.signing_provider import MockSigningProvider
from sync.schemas import SignatureSchema
from sync.signature_check import verify_hash_signature

ID = "001099012345"
DIGEST = hashlib.sha256(b"dossier 000.00.14.H56-261201-1001").digest()
SHAPES = ["smartca", "csc"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["rsa", "ec"])
def mock(request: pytest.FixtureRequest) -> Iterator[MockSigningProvider]:
    with MockSigningProvider(key_type=request.param) as m:
        yield m


@pytest.fixture
def rsa_mock() -> Iterator[MockSigningProvider]:
    with MockSigningProvider(key_type="rsa") as m:
        yield m


def settings_for(mock: MockSigningProvider, shape: str, **kw: Any) -> SigningSettings:
    base: dict[str, Any] = {
        "provider": shape,
        "base_url": mock.base_url,
        "client_id": mock.client_id,
        "client_secret": mock.client_secret,
        "connect_timeout_s": 2.0,
        "request_timeout_s": 5.0,
    }
    base.update(kw)
    return SigningSettings(**base)


def wire(
    service: SigningService, kiosk: str = "kiosk-1", clock: Clock | None = None
) -> RemoteSigner:
    handlers = service.rpc_handlers()

    def call(method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return handlers[method](kiosk, params)

    return RemoteSigner(call, clock=clock or Clock())


def make(
    mock: MockSigningProvider, shape: str, clock: Clock | None = None, **kw: Any
) -> SigningService:
    settings = settings_for(mock, shape, **kw)
    return SigningService(build_provider(settings), settings, clock=clock or Clock())


def start(signer: RemoteSigner, digest: bytes = DIGEST, id_number: str = ID) -> Any:
    return signer.start(digest, document_name="Đơn đăng ký khai sinh", id_number=id_number)


@pytest.mark.parametrize("shape", SHAPES)
def test_approved_signature_verifies_and_fits_the_dossier_schema(
    mock: MockSigningProvider, shape: str
) -> None:
    service = make(mock, shape)
    signer = wire(service)
    tx = start(signer)
    assert mock.pending() and len(mock.pending()) == 1
    assert isinstance(signer.poll(tx), Pending)
    assert isinstance(signer.poll(tx), Pending)
    mock.approve()
    result = signer.poll(tx)
    assert isinstance(result, Signed), result
    assert result.certificate == mock.certificate_of(ID)
    verify_hash_signature(DIGEST, result.value, result.certificate)
    fields = result.signature_fields()
    TypeAdapter(SignatureSchema).validate_python(fields, strict=True)
    assert fields["document_sha256"] == DIGEST.hex()
    assert fields["provider"] == shape
    # the kiosk saw central's id, not the provider's
    assert tx.id not in mock.requests[-1].path and tx.id != mock.requests[-1].body
    # a repeated poll answers the same, without asking the provider again
    asked = len(mock.requests)
    again = signer.poll(tx)
    assert isinstance(again, Signed) and again.value == result.value
    assert len(mock.requests) == asked
    assert service.outstanding() == 0


@pytest.mark.parametrize("shape", SHAPES)
def test_rejected_in_the_app(rsa_mock: MockSigningProvider, shape: str) -> None:
    signer = wire(make(rsa_mock, shape))
    tx = start(signer)
    rsa_mock.reject()
    result = signer.poll(tx)
    assert isinstance(result, Rejected)
    assert "từ chối" in result.message


@pytest.mark.parametrize("shape", SHAPES)
def test_expired_at_the_provider(rsa_mock: MockSigningProvider, shape: str) -> None:
    signer = wire(make(rsa_mock, shape))
    tx = start(signer)
    rsa_mock.expire()
    result = signer.poll(tx)
    assert isinstance(result, Expired)
    assert result.message == MSG_EXPIRED
    assert result.message.startswith("Chưa nhận được xác nhận ký số trên ứng dụng")


@pytest.mark.parametrize("shape", SHAPES)
def test_central_expires_a_transaction_the_provider_never_closes(
    rsa_mock: MockSigningProvider, shape: str
) -> None:
    clock = Clock()
    service = make(rsa_mock, shape, clock=clock, transaction_ttl_s=60.0)
    signer = wire(service)
    tx = start(signer)
    assert isinstance(signer.poll(tx), Pending)
    clock.now += 61
    asked = len(rsa_mock.requests)
    assert isinstance(signer.poll(tx), Expired)
    assert len(rsa_mock.requests) == asked  # decided at central
    rsa_mock.approve()  # too late: the answer stays
    assert isinstance(signer.poll(tx), Expired)


@pytest.mark.parametrize("shape", SHAPES)
def test_another_kiosks_transaction_is_not_found(rsa_mock: MockSigningProvider, shape: str) -> None:
    service = make(rsa_mock, shape)
    mine, theirs = wire(service, "kiosk-1"), wire(service, "kiosk-2")
    tx = start(mine)
    rsa_mock.approve()
    with pytest.raises(RemoteSigningError) as err:
        theirs.poll(tx)
    assert err.value.code == "not-found"
    assert "Không tìm thấy" in err.value.citizen_message
    assert isinstance(mine.poll(tx), Signed)  # the owner is unaffected
    with pytest.raises(RemoteSigningError):
        theirs.poll(tx)  # not even once it is signed


@pytest.mark.parametrize("shape", SHAPES)
def test_provider_down(rsa_mock: MockSigningProvider, shape: str) -> None:
    service = make(rsa_mock, shape)
    signer = wire(service)
    tx = start(signer)
    rsa_mock.stop()
    with pytest.raises(RemoteSigningError) as err:
        signer.poll(tx)
    assert err.value.code == "unavailable"
    assert "không phản hồi" in err.value.citizen_message
    with pytest.raises(RemoteSigningError) as err:
        start(signer, hashlib.sha256(b"other").digest())
    assert err.value.code == "unavailable"
    assert service.outstanding("kiosk-1") == 1  # the failed start holds no slot


@pytest.mark.parametrize("shape", SHAPES)
def test_slow_provider_times_out_then_recovers(rsa_mock: MockSigningProvider, shape: str) -> None:
    service = make(rsa_mock, shape, request_timeout_s=0.3)
    signer = wire(service)
    tx = start(signer)
    rsa_mock.delay_s = 5.0
    with pytest.raises(RemoteSigningError) as err:
        signer.poll(tx)
    assert err.value.code == "unavailable"
    assert "timeout" in err.value.detail
    rsa_mock.delay_s = 0.0
    rsa_mock.approve()
    assert isinstance(signer.poll(tx), Signed)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("mode", "code"),
    [("not-json", "protocol"), ("wrong-shape", "protocol"), ("http-500", "unavailable")],
)
def test_garbage_at_start(rsa_mock: MockSigningProvider, shape: str, mode: Any, code: str) -> None:
    service = make(rsa_mock, shape)
    signer = wire(service)
    rsa_mock.misbehave = mode
    with pytest.raises(RemoteSigningError) as err:
        start(signer)
    assert err.value.code == code
    assert service.outstanding() == 0


@pytest.mark.parametrize("shape", SHAPES)
def test_garbage_while_polling_ends_the_transaction(
    rsa_mock: MockSigningProvider, shape: str
) -> None:
    signer = wire(make(rsa_mock, shape))
    tx = start(signer)
    rsa_mock.approve()
    rsa_mock.misbehave = "wrong-shape"
    with pytest.raises(RemoteSigningError) as err:
        signer.poll(tx)
    assert err.value.code == "protocol"
    rsa_mock.misbehave = None
    with pytest.raises(RemoteSigningError) as err:
        signer.poll(tx)  # finished: the same answer, no half-trusted retry
    assert err.value.code == "protocol"


@pytest.mark.parametrize("shape", SHAPES)
def test_a_provider_signature_over_another_hash_is_refused_at_central(
    mock: MockSigningProvider, shape: str
) -> None:
    signer = wire(make(mock, shape))
    tx = start(signer)
    mock.misbehave = "bad-signature"
    mock.approve()
    with pytest.raises(RemoteSigningError) as err:
        signer.poll(tx)
    assert err.value.code == "protocol"
    assert "not valid" in err.value.detail


def test_the_kiosk_refuses_a_bad_signature_even_if_central_passes_it(
    rsa_mock: MockSigningProvider,
) -> None:
    service = make(rsa_mock, "smartca")
    handlers = service.rpc_handlers()

    def tampering(method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        reply = handlers[method]("kiosk-1", params)
        if reply.get("state") == "signed":
            value = bytearray(base64.b64decode(reply["value_b64"]))
            value[10] ^= 1
            reply = {**reply, "value_b64": base64.b64encode(bytes(value)).decode()}
        return reply

    signer = RemoteSigner(tampering, clock=Clock())
    tx = start(signer)
    rsa_mock.approve()
    with pytest.raises(RemoteSigningError) as err:
        signer.poll(tx)
    assert err.value.code == "bad-signature"
    assert "không hợp lệ" in err.value.citizen_message


def test_the_kiosk_refuses_a_signature_over_another_transactions_hash(
    rsa_mock: MockSigningProvider,
) -> None:
    """A reply for transaction B presented as A's: it verifies, but not over A's hash."""
    service = make(rsa_mock, "smartca")
    signer = wire(service)
    a = start(signer, DIGEST)
    b = start(signer, hashlib.sha256(b"another dossier").digest())
    rsa_mock.approve(rsa_mock.pending()[1])
    swapped = type(a)(id=b.id, digest=a.digest, expires_at=a.expires_at, deadline=a.deadline)
    with pytest.raises(RemoteSigningError) as err:
        signer.poll(swapped)
    assert err.value.code == "bad-signature"


@pytest.mark.parametrize("shape", SHAPES)
def test_outstanding_transactions_are_bounded_per_kiosk(
    rsa_mock: MockSigningProvider, shape: str
) -> None:
    service = make(rsa_mock, shape, max_outstanding_per_kiosk=2)
    one, other = wire(service, "kiosk-1"), wire(service, "kiosk-2")
    txs = [start(one, hashlib.sha256(bytes([i])).digest()) for i in range(2)]
    with pytest.raises(RemoteSigningError) as err:
        start(one, hashlib.sha256(b"third").digest())
    assert err.value.code == "too-many"
    start(other)  # another kiosk is not held back by this one
    rsa_mock.reject(rsa_mock.pending()[0])
    assert isinstance(one.poll(txs[0]), Rejected)
    start(one, hashlib.sha256(b"third").digest())  # a finished one frees its slot


def test_central_holds_a_bounded_number_of_transactions(rsa_mock: MockSigningProvider) -> None:
    service = make(rsa_mock, "smartca", max_transactions=3, max_outstanding_per_kiosk=5)
    kiosks = [wire(service, f"kiosk-{i}") for i in range(4)]
    for k in kiosks[:3]:
        start(k)
    with pytest.raises(RemoteSigningError) as err:
        start(kiosks[3])
    assert err.value.code == "unavailable"
    assert service.outstanding() == 3


@pytest.mark.parametrize("shape", SHAPES)
def test_wrong_client_secret(rsa_mock: MockSigningProvider, shape: str) -> None:
    signer = wire(make(rsa_mock, shape, client_secret="wrong"))
    with pytest.raises(RemoteSigningError) as err:
        start(signer)
    assert err.value.code == "protocol"
    assert "refused" in err.value.detail


@pytest.mark.parametrize("shape", SHAPES)
def test_citizen_without_an_account(rsa_mock: MockSigningProvider, shape: str) -> None:
    rsa_mock.known_users = {"079088001122"}
    signer = wire(make(rsa_mock, shape))
    with pytest.raises(RemoteSigningError) as err:
        start(signer)
    assert err.value.code == "no-account"
    assert "chưa đăng ký" in err.value.citizen_message
    start(signer, id_number="079088001122")


def test_csc_logs_in_again_when_the_token_is_revoked(rsa_mock: MockSigningProvider) -> None:
    signer = wire(make(rsa_mock, "csc"))
    tx = start(signer)
    logins = sum(r.path.endswith("auth/login") for r in rsa_mock.requests)
    rsa_mock._tokens.clear()
    rsa_mock.approve()
    assert isinstance(signer.poll(tx), Signed)
    assert sum(r.path.endswith("auth/login") for r in rsa_mock.requests) == logins + 1
    assert sum(r.path.endswith("signHash") for r in rsa_mock.requests) == 1


def test_secrets_go_to_the_provider_only(rsa_mock: MockSigningProvider) -> None:
    service = make(rsa_mock, "smartca")
    signer = wire(service)
    seen: list[Any] = []
    handlers = service.rpc_handlers()

    def recording(method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        reply = handlers[method]("kiosk-1", params)
        seen.append((params, reply))
        return reply

    signer = RemoteSigner(recording, clock=Clock())
    tx = start(signer)
    rsa_mock.approve()
    signer.poll(tx)
    assert rsa_mock.client_secret not in repr(seen)
    assert any(
        r.body and r.body.get("sp_password") == rsa_mock.client_secret for r in rsa_mock.requests
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (
            {"hash_sha256": "AB" * 32, "document_name": "x", "signer": {"id_number": ID}},
            "hash_sha256",
        ),
        (
            {"hash_sha256": "ab" * 31, "document_name": "x", "signer": {"id_number": ID}},
            "hash_sha256",
        ),
        (
            {"hash_sha256": "ab" * 32, "document_name": "", "signer": {"id_number": ID}},
            "document_name",
        ),
        (
            {"hash_sha256": "ab" * 32, "document_name": "a\x00b", "signer": {"id_number": ID}},
            "document_name",
        ),
        (
            {"hash_sha256": "ab" * 32, "document_name": "x" * 201, "signer": {"id_number": ID}},
            "document_name",
        ),
        (
            {"hash_sha256": "ab" * 32, "document_name": "x", "signer": {"id_number": "12345"}},
            "signer.id_number",
        ),
        (
            {
                "hash_sha256": "ab" * 32,
                "document_name": "x",
                "signer": {"id_number": ID, "phone": "call me"},
            },
            "signer.phone",
        ),
        ({"hash_sha256": "ab" * 32, "document_name": "x"}, "signer"),
    ],
)
def test_bad_start_params_name_the_field(
    rsa_mock: MockSigningProvider, params: dict[str, Any], field: str
) -> None:
    service = make(rsa_mock, "smartca")
    reply = service.start("kiosk-1", params)
    assert reply["error"] == "invalid-params"
    assert reply["field"] == field
    assert reply["detail"]
    assert rsa_mock.requests == []


@pytest.mark.parametrize("tx", [None, 7, "", "x" * 65, "../../etc", "a b" * 8])
def test_bad_poll_params(rsa_mock: MockSigningProvider, tx: Any) -> None:
    service = make(rsa_mock, "smartca")
    reply = service.poll("kiosk-1", {"transaction": tx})
    assert reply["error"] == "invalid-params"
    assert reply["field"] == "transaction"


def test_signing_off_says_disabled() -> None:
    service = SigningService(None, SigningSettings())
    signer = wire(service)
    with pytest.raises(RemoteSigningError) as err:
        start(signer)
    assert err.value.code == "disabled"
    assert "ký tay" in err.value.citizen_message


def test_central_unreachable_then_the_kiosk_gives_up_by_itself() -> None:
    clock = Clock()
    calls = {"n": 0}

    def flaky(method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        calls["n"] += 1
        if method == "sign.start":
            return {
                "transaction": "T" * 24,
                "expires_at": "2027-01-15T10:05:00+00:00",
                "expires_in_s": 60,
            }
        raise TimeoutError("no reply from central")

    signer = RemoteSigner(flaky, clock=clock)
    tx = start(signer)
    with pytest.raises(RemoteSigningError) as err:
        signer.poll(tx)
    assert err.value.code == "unavailable"
    clock.now += 60 + 31
    assert isinstance(signer.poll(tx), Expired)


def test_the_kiosk_refuses_a_wrong_size_hash() -> None:
    signer = RemoteSigner(lambda m, p, t: {}, clock=Clock())
    with pytest.raises(ValueError, match="32-byte"):
        signer.start(b"short", document_name="x", id_number=ID)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_flood_of_starts_from_one_kiosk_gets_exactly_its_quota(
    rsa_mock: MockSigningProvider, shape: str
) -> None:
    service = make(rsa_mock, shape, max_outstanding_per_kiosk=2)
    handlers = service.rpc_handlers()
    params = {"hash_sha256": DIGEST.hex(), "document_name": "x", "signer": {"id_number": ID}}
    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(lambda _: handlers["sign.start"]("kiosk-1", params), range(40)))
    ok = [r for r in replies if "transaction" in r]
    assert len(ok) == 2
    assert {r["error"] for r in replies if "error" in r} == {"too-many"}
    assert len(rsa_mock.pending()) == 2


def test_concurrent_polls_sign_once(rsa_mock: MockSigningProvider) -> None:
    """CSC: a SAD signs once; polls racing each other must not both reach signHash."""
    service = make(rsa_mock, "csc")
    handlers = service.rpc_handlers()
    signer = wire(service)
    tx = start(signer)
    rsa_mock.approve()
    rsa_mock.delay_s = 0.2  # keep the first poll at the provider while the others arrive
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(
            pool.map(lambda _: handlers["sign.poll"]("kiosk-1", {"transaction": tx.id}), range(8))
        )
    rsa_mock.delay_s = 0.0
    assert {r.get("state") for r in replies} <= {"pending", "signed"}, replies
    assert isinstance(signer.poll(tx), Signed)
    assert sum(r.path.endswith("signHash") for r in rsa_mock.requests) == 1


class BrokenProvider:
    """An adapter with a bug: every call raises something that is not a SigningError."""

    name = "broken"

    def start(self, digest: bytes, document_name: str, signer: Any) -> Any:
        raise RuntimeError("adapter bug in start")

    def poll(self, ticket: Any) -> Any:
        raise RuntimeError("adapter bug in poll")

    def close(self) -> None:
        pass


def test_an_adapter_bug_leaks_no_quota_and_no_stuck_poll(rsa_mock: MockSigningProvider) -> None:
    settings = settings_for(rsa_mock, "smartca", max_outstanding_per_kiosk=1)
    broken = SigningService(BrokenProvider(), settings, clock=Clock())
    params = {"hash_sha256": DIGEST.hex(), "document_name": "x", "signer": {"id_number": ID}}
    for _ in range(3):
        with pytest.raises(RuntimeError, match="in start"):
            broken.start("kiosk-1", params)
    assert broken.outstanding() == 0

    # a working start, then the adapter breaks while polling: the next poll tries again
    service = make(rsa_mock, "smartca")
    tx = service.start("kiosk-1", params)["transaction"]
    good_poll = service._provider.poll  # type: ignore[union-attr]
    service._provider.poll = BrokenProvider().poll  # type: ignore[method-assign,union-attr]
    with pytest.raises(RuntimeError, match="in poll"):
        service.poll("kiosk-1", {"transaction": tx})
    service._provider.poll = good_poll  # type: ignore[method-assign,union-attr]
    rsa_mock.approve()
    assert service.poll("kiosk-1", {"transaction": tx})["state"] == "signed"
