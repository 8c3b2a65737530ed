"""The provider-reply parsers, the kiosk's reply handling and the signature check.

Parsers take (HTTP status, raw bytes): whatever a provider sends, they return a
typed result or raise one of the three provider errors, nothing else. Valid
replies built by the strategies parse to exactly what they carry.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from central.signing import (
    OID_ECDSA_SHA256,
    OID_RSA,
    OID_SHA256_RSA,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
    parse_csc_authorize,
    parse_csc_info,
    parse_csc_list,
    parse_csc_login,
    parse_csc_sign_hash,
    parse_smartca_certificate,
    parse_smartca_sign,
    parse_smartca_status,
)
from edge_agent.services.remote_signing import (
    Expired,
    Pending,
    Rejected,
    RemoteSigner,
    RemoteSigningError,
    Signed,
)
from firmware_mocks.signing_provider import _make_citizen
from sync.signature_check import SignatureRefused, verify_hash_signature

PARSERS: list[Callable[[int, bytes], Any]] = [
    parse_smartca_certificate,
    parse_smartca_sign,
    parse_smartca_status,
    parse_csc_login,
    parse_csc_list,
    parse_csc_info,
    parse_csc_authorize,
    parse_csc_sign_hash,
]
PROVIDER_ERRORS = (ProviderProtocolError, ProviderRefused, ProviderUnavailable)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
known_keys = st.sampled_from(
    [
        "status_code",
        "message",
        "data",
        "user_certificates",
        "serial_number",
        "cert_status_code",
        "cert_data",
        "transaction_id",
        "signatures",
        "signature_value",
        "access_token",
        "expires_in",
        "credentialIDs",
        "key",
        "cert",
        "algo",
        "status",
        "certificates",
        "handle",
        "SAD",
        "error",
        "error_description",
    ]
)


def shaped(depth: int = 2) -> st.SearchStrategy[Any]:
    """JSON objects using the providers' own keys, nested: closer to real replies."""
    leaf = json_values | st.sampled_from(
        ["WAITING_FOR_SIGNER_CONFIRM", "SIGNER_REJECTED", "EXPIRED", "VALID", "AAAA", "!!", ""]
    )
    if depth == 0:
        return leaf
    child = shaped(depth - 1)
    return st.dictionaries(known_keys, leaf | child | st.lists(child, max_size=3), max_size=6)


statuses = st.sampled_from([200, 201, 202, 204, 301, 400, 401, 403, 404, 429, 500, 502, 503])


@given(
    parser=st.sampled_from(PARSERS),
    status=statuses,
    raw=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | shaped().map(lambda v: json.dumps(v).encode()),
)
def test_parsers_return_or_raise_a_provider_error_only(
    parser: Callable[[int, bytes], Any], status: int, raw: bytes
) -> None:
    with contextlib.suppress(PROVIDER_ERRORS):
        parser(status, raw)


@given(status=st.integers(min_value=500, max_value=599) | st.just(429), raw=st.binary(max_size=50))
def test_server_errors_are_unavailable_whatever_the_body(status: int, raw: bytes) -> None:
    for parser in PARSERS:
        with pytest.raises(ProviderUnavailable):
            parser(status, raw)


b64_values = st.binary(min_size=1, max_size=600)


@given(value=b64_values, message=st.sampled_from(["SUCCESS", "success", "Ký thành công"]))
def test_smartca_status_signed_carries_the_value(value: bytes, message: str) -> None:
    body = {
        "status_code": 200,
        "message": message,
        "data": {
            "transaction_id": "t1",
            "signatures": [{"doc_id": "d", "signature_value": base64.b64encode(value).decode()}],
        },
    }
    result = parse_smartca_status(200, json.dumps(body).encode())
    assert result.state == "signed" and result.value == value


@pytest.mark.parametrize(
    ("message", "state"),
    [
        ("WAITING_FOR_SIGNER_CONFIRM", "pending"),
        ("PENDING", "pending"),
        ("SIGNER_REJECTED", "rejected"),
        ("USER_DENIED", "rejected"),
        ("TRANSACTION_EXPIRED", "expired"),
    ],
)
def test_smartca_status_words(message: str, state: str) -> None:
    body = {"status_code": 200, "message": message, "data": {"signatures": None}}
    assert parse_smartca_status(200, json.dumps(body).encode()).state == state


def test_smartca_unknown_message_without_signature_is_a_protocol_error() -> None:
    body = {"status_code": 200, "message": "SOMETHING_NEW", "data": {}}
    with pytest.raises(ProviderProtocolError, match="SOMETHING_NEW"):
        parse_smartca_status(200, json.dumps(body).encode())


@given(
    serial=st.text(st.characters(min_codepoint=48, max_codepoint=102), min_size=1, max_size=40),
    cert=b64_values,
)
def test_smartca_certificate_round_trip(serial: str, cert: bytes) -> None:
    body = {
        "status_code": 200,
        "message": "success",
        "data": {
            "user_certificates": [
                {"serial_number": "x", "cert_status_code": "REVOKED", "cert_data": "AAAA"},
                {
                    "serial_number": serial,
                    "cert_status_code": "VALID",
                    "cert_data": base64.b64encode(cert).decode(),
                },
            ]
        },
    }
    assert parse_smartca_certificate(200, json.dumps(body).encode()) == (serial, cert)


def test_smartca_no_valid_certificate_is_no_account() -> None:
    body = {"status_code": 200, "message": "success", "data": {"user_certificates": []}}
    with pytest.raises(ProviderRefused) as err:
        parse_smartca_certificate(200, json.dumps(body).encode())
    assert err.value.code == "no-account"


@given(handle=st.text(min_size=1, max_size=100), sad=st.text(min_size=1, max_size=100))
def test_csc_authorize_states(handle: str, sad: str) -> None:
    assert parse_csc_authorize(202, json.dumps({"handle": handle}).encode()).handle == handle
    got = parse_csc_authorize(200, json.dumps({"SAD": sad, "expiresIn": 60}).encode())
    assert got.sad == sad and got.state == "authorized"
    denied = parse_csc_authorize(400, b'{"error": "access_denied", "error_description": "no"}')
    assert denied.state == "rejected" and denied.reason == "no"
    assert parse_csc_authorize(400, b'{"error": "expired_token"}').state == "expired"
    with pytest.raises(ProviderRefused):
        parse_csc_authorize(400, b'{"error": "invalid_request"}')


@pytest.mark.parametrize(
    ("algos", "chosen"),
    [
        ([OID_RSA, OID_SHA256_RSA], OID_SHA256_RSA),
        ([OID_RSA], OID_RSA),
        ([OID_ECDSA_SHA256], OID_ECDSA_SHA256),
    ],
)
def test_csc_info_picks_an_algorithm(algos: list[str], chosen: str) -> None:
    body = {
        "key": {"status": "enabled", "algo": algos},
        "cert": {"status": "valid", "certificates": ["AAEC"]},
    }
    assert parse_csc_info(200, json.dumps(body).encode()) == (b"\x00\x01\x02", chosen)


def test_csc_info_unsupported_algorithm_and_disabled_key() -> None:
    body: dict[str, Any] = {"key": {"algo": ["1.2.3"]}, "cert": {"certificates": ["AAEC"]}}
    with pytest.raises(ProviderRefused):
        parse_csc_info(200, json.dumps(body).encode())
    body = {"key": {"status": "disabled", "algo": [OID_RSA]}, "cert": {"certificates": ["AA=="]}}
    with pytest.raises(ProviderRefused) as err:
        parse_csc_info(200, json.dumps(body).encode())
    assert err.value.code == "no-account"


def test_csc_list_login_and_sign_hash() -> None:
    assert parse_csc_list(200, b'{"credentialIDs": ["c1", "c2"]}') == "c1"
    with pytest.raises(ProviderRefused):
        parse_csc_list(200, b'{"credentialIDs": []}')
    assert parse_csc_login(200, b'{"access_token": "t", "expires_in": 60}') == ("t", 60.0)
    with pytest.raises(ProviderProtocolError):
        parse_csc_login(200, b'{"access_token": "t", "expires_in": true}')
    with pytest.raises(ProviderRefused) as err:
        parse_csc_login(401, b'{"error": "invalid_client"}')
    assert err.value.code == "credentials"
    assert parse_csc_sign_hash(200, b'{"signatures": ["AAEC"]}') == b"\x00\x01\x02"
    with pytest.raises(ProviderProtocolError):
        parse_csc_sign_hash(200, b'{"signatures": ["AAEC", "AAEC"]}')
    with pytest.raises(ProviderProtocolError):
        parse_csc_sign_hash(200, b'{"signatures": ["not base64!"]}')


# -- the kiosk's handling of central's replies ----------------------------------------------


@given(reply=shaped() | json_values)
def test_kiosk_poll_returns_a_result_or_a_signing_error(reply: Any) -> None:
    def call(method: str, params: dict[str, Any], timeout_s: float) -> Any:
        if method == "sign.start":
            return {"transaction": "T" * 24, "expires_in_s": 60}
        return reply

    signer = RemoteSigner(call, clock=lambda: 0.0)
    tx = signer.start(hashlib.sha256(b"x").digest(), document_name="x", id_number="001099012345")
    try:
        result = signer.poll(tx)
    except RemoteSigningError as exc:
        assert exc.citizen_message
    else:
        assert isinstance(result, Pending | Signed | Rejected | Expired)


@given(
    reply=st.fixed_dictionaries(
        {
            "state": st.just("signed"),
            "value_b64": st.text(max_size=40),
            "certificate_b64": st.text(max_size=40),
        }
    )
)
def test_kiosk_never_accepts_an_unverifiable_signed_reply(reply: dict[str, Any]) -> None:
    signer = RemoteSigner(
        lambda m, p, t: {"transaction": "T" * 24} if m == "sign.start" else reply,
        clock=lambda: 0.0,
    )
    tx = signer.start(hashlib.sha256(b"x").digest(), document_name="x", id_number="001099012345")
    with pytest.raises(RemoteSigningError) as err:
        signer.poll(tx)
    assert err.value.code in ("protocol", "bad-signature")


# -- the signature check itself --------------------------------------------------------------


DIGEST = hashlib.sha256(b"document").digest()


@pytest.fixture(scope="module")
def rsa_citizen() -> Any:
    return _make_citizen("001099012345", "rsa")


@pytest.fixture(scope="module")
def ec_citizen() -> Any:
    return _make_citizen("001099012345", "ec")


def test_rsa_pkcs1v15_over_the_hash_verifies(rsa_citizen: Any) -> None:
    value = rsa_citizen.key.sign(DIGEST, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    verify_hash_signature(DIGEST, value, rsa_citizen.certificate_der)
    pem = x509.load_der_x509_certificate(rsa_citizen.certificate_der).public_bytes(
        serialization.Encoding.PEM
    )
    verify_hash_signature(DIGEST, value, pem)
    with pytest.raises(SignatureRefused, match="does not verify"):
        verify_hash_signature(hashlib.sha256(b"other").digest(), value, rsa_citizen.certificate_der)


def test_ecdsa_der_and_raw_forms_verify(ec_citizen: Any) -> None:
    der = ec_citizen.key.sign(DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))
    verify_hash_signature(DIGEST, der, ec_citizen.certificate_der)
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    verify_hash_signature(DIGEST, raw, ec_citizen.certificate_der)
    bad = bytes([raw[0] ^ 1]) + raw[1:]
    with pytest.raises(SignatureRefused):
        verify_hash_signature(DIGEST, bad, ec_citizen.certificate_der)


def test_a_signature_with_another_key_is_refused(rsa_citizen: Any) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    value = other.sign(DIGEST, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    with pytest.raises(SignatureRefused, match="does not verify"):
        verify_hash_signature(DIGEST, value, rsa_citizen.certificate_der)


@given(value=st.binary(max_size=300), cert=st.binary(max_size=300), digest=st.binary(max_size=40))
def test_garbage_is_refused_never_crashes(value: bytes, cert: bytes, digest: bytes) -> None:
    with pytest.raises(SignatureRefused):
        verify_hash_signature(digest, value, cert)


@given(value=st.binary(max_size=600))
def test_random_values_do_not_verify(rsa_citizen: Any, ec_citizen: Any, value: bytes) -> None:
    for citizen in (rsa_citizen, ec_citizen):
        with pytest.raises(SignatureRefused):
            verify_hash_signature(DIGEST, value, citizen.certificate_der)
