"""Attacks on enrolment and renewal (the HTTP routes in process; no broker needed).

Each test is an attack that must fail, with a clear 4xx and nothing stored: token replay,
another office's slot, a CSR naming another kiosk, oversized and garbage requests, a renewal
signed with another kiosk's key, a renewal replayed late.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from central.fleet import tokens
from central.fleet.ca import CertificateAuthority
from central.fleet.enrolment import BrokerAddress, Enrolment, EnrolRefused
from central.fleet.lifecycle import TokenState
from central.fleet.registry import Registry, RegistryError
from central.web.app import create_app
from central.web.common import ApiSettings
from sync.envelope_signing import sign
from sync.identity_files import public_key_text
from tests.enrol_stack import OFFICE, OTHER_OFFICE
from tests.pg import CentralDb


@dataclass
class Box:
    tls: ec.EllipticCurvePrivateKey
    signing: Ed25519PrivateKey

    def csr(self, cn: str = "box") -> str:
        req = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .sign(self.tls, hashes.SHA256())
        )
        return req.public_bytes(serialization.Encoding.PEM).decode()

    def body(self, token: str, **extra: Any) -> dict[str, Any]:
        return {
            "token": token,
            "csr": self.csr(),
            "signing_key": public_key_text(self.signing.public_key()),
            "hostname": "kiosk-pi",
            "machine_id": "0123456789abcdef0123456789abcdef",
            **extra,
        }


def new_box() -> Box:
    return Box(ec.generate_private_key(ec.SECP256R1()), Ed25519PrivateKey.generate())


@dataclass
class Central:
    service: Enrolment
    client: TestClient

    def token(self, office: str = OFFICE, slot: int = 1) -> str:
        return self.service.create_token(office=office, slot=slot).token

    def enrol(self, box: Box, token: str) -> dict[str, Any]:
        res = self.client.post("/v1/enrol", json=box.body(token))
        assert res.status_code == 200, res.text
        return dict(res.json())


@pytest.fixture
def central(tmp_path: Path, central_db: CentralDb) -> Iterator[Central]:
    """Enrolment with its registry on each engine (the HTTP app's own file is SQLite's)."""
    registry = Registry(central_db.target)
    service = Enrolment(
        registry=registry,
        ca=CertificateAuthority.open(tmp_path / "ca"),
        central_keys=[Ed25519PrivateKey.generate().public_key()],
        broker=BrokerAddress("broker.example.vn", 8883),
        central_url="https://central.example.vn",
        offices=(OFFICE, OTHER_OFFICE),
    )
    app = create_app(ApiSettings(database=tmp_path / "central.db"), enrolment=service)
    with TestClient(app) as client:
        yield Central(service, client)
    registry.close()


def error(res: Any) -> dict[str, Any]:
    return dict(res.json()["error"])


def test_token_replay_is_refused(central: Central) -> None:
    token = central.token()
    first_box = new_box()
    first = central.enrol(first_box, token)
    res = central.client.post("/v1/enrol", json=new_box().body(token))
    assert res.status_code == 409
    assert error(res)["code"] == "token-used" and error(res)["field"] == "token"
    assert first["kiosk"] in error(res)["message"]
    # Knowing the enrolled box's public signing key does not help: the CSR is for the
    # thief's own TLS key, not the one central certified.
    victim = Box(new_box().tls, first_box.signing)
    res = central.client.post("/v1/enrol", json=victim.body(token))
    assert res.status_code == 409 and error(res)["code"] == "token-used"
    assert [e.kiosk for e in central.service.registry.list()] == [first["kiosk"]]
    # The enrolled box itself, retrying, gets its own kiosk back.
    assert central.enrol(first_box, token)["kiosk"] == first["kiosk"]


def test_unknown_and_guessed_tokens_are_refused(central: Central) -> None:
    token = central.token()
    token_id, _secret, pin = token.split(".", 2)
    guessed = f"{token_id}.{'a' * 20}.{pin}"
    res = central.client.post("/v1/enrol", json=new_box().body(guessed))
    assert res.status_code == 401 and error(res)["code"] == "token-unknown"
    res = central.client.post("/v1/enrol", json=new_box().body("not-a-token"))
    assert res.status_code == 400 and error(res)["field"] == "token"
    assert central.service.registry.list() == []
    # The real token was not spent by the guesses.
    central.enrol(new_box(), token)


def test_revoked_token_is_refused(central: Central) -> None:
    token = central.token()
    tokens.revoke(central.service.registry, token.split(".")[0])
    res = central.client.post("/v1/enrol", json=new_box().body(token))
    assert res.status_code == 410 and error(res)["code"] == "token-revoked"


def test_the_request_cannot_choose_office_slot_or_kiosk(central: Central) -> None:
    token = central.token(OFFICE, slot=1)
    central.token(OTHER_OFFICE, slot=1)  # another office's slot 1 exists too
    box = new_box()
    for extra in ({"office": OTHER_OFFICE}, {"slot": 5}, {"kiosk": "000-00-15-h57-k1"}):
        res = central.client.post("/v1/enrol", json=box.body(token, **extra))
        assert res.status_code == 422, extra
    answer = central.enrol(box, token)
    assert (answer["office"], answer["slot"], answer["kiosk"]) == (OFFICE, 1, "000-00-14-h56-k1")


def test_a_csr_naming_another_kiosk_gets_its_own_name(central: Central) -> None:
    victim = central.enrol(new_box(), central.token(OFFICE, 1))["kiosk"]
    box = new_box()
    body = box.body(central.token(OFFICE, 2))
    body["csr"] = box.csr(cn=victim)
    res = central.client.post("/v1/enrol", json=body)
    assert res.status_code == 200
    cert = x509.load_pem_x509_certificate(res.json()["certificate"].encode())
    assert cert.subject.rfc4514_string() == "CN=000-00-14-h56-k2"
    assert res.json()["kiosk"] == "000-00-14-h56-k2" != victim


def test_oversized_and_garbage_requests_are_refused_and_nothing_stored(
    central: Central,
) -> None:
    token = central.token()
    box = new_box()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**box.body(token), "csr": "x" * 5000}, 422, "csr"),
        ({**box.body(token), "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"}, 400, "csr"),
        ({**box.body(token), "signing_key": "!" * 43}, 400, "signing_key"),
        ({**box.body(token), "machine_id": "../../etc"}, 400, "machine_id"),
        ({**box.body(token), "hostname": "a b"}, 400, "hostname"),
    ]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(rsa_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    cases.append(({**box.body(token), "csr": rsa_csr}, 400, "csr"))
    for body, status, field in cases:
        res = central.client.post("/v1/enrol", json=body)
        assert res.status_code == status, (field, res.text)
        assert field in (error(res)["field"] or "") or field in error(res)["message"]
    res = central.client.post(
        "/v1/enrol", content=b"{" * 2_000_000, headers={"content-type": "application/json"}
    )
    assert res.status_code == 413
    res = central.client.post(
        "/v1/enrol", content=b"\xff\xfe garbage", headers={"content-type": "application/json"}
    )
    assert res.status_code == 422
    # Nothing stored, and the token is still good.
    assert central.service.registry.list() == []
    entry = tokens.get(central.service.registry, token.split(".")[0])
    assert entry is not None and entry.state is TokenState.ISSUED
    central.enrol(box, token)


def renewal(kiosk: str, csr: str, key: Ed25519PrivateKey, **extra: Any) -> dict[str, Any]:
    body = {"v": 1, "kiosk": kiosk, "csr": csr, "at": int(time.time()), **extra}
    return sign("aps-enrol-v1", body, key)


def test_renewal_signed_with_another_kiosks_key_is_refused(central: Central) -> None:
    a, b = new_box(), new_box()
    ka = central.enrol(a, central.token(OFFICE, 1))["kiosk"]
    central.enrol(b, central.token(OFFICE, 2))
    res = central.client.post("/v1/enrol/renew", json=renewal(ka, b.csr(), b.signing))
    assert res.status_code == 401 and error(res)["code"] == "signature-unknown-key"
    # A body changed after signing (a new signing key slipped in) fails too.
    signed = renewal(ka, a.csr(), a.signing)
    signed["signing_key"] = public_key_text(b.signing.public_key())
    res = central.client.post("/v1/enrol/renew", json=signed)
    assert res.status_code == 401 and error(res)["code"] == "signature-mismatch"
    entry = central.service.registry.get(ka)
    assert entry is not None and len(entry.accepted_keys) == 1
    # Its own key, dated now: accepted.
    res = central.client.post("/v1/enrol/renew", json=renewal(ka, a.csr(), a.signing))
    assert res.status_code == 200, res.text


def test_a_late_renewal_and_a_revoked_kiosk_are_refused(central: Central) -> None:
    box = new_box()
    kiosk = central.enrol(box, central.token())["kiosk"]
    late = renewal(kiosk, box.csr(), box.signing, at=int(time.time()) - 3600)
    res = central.client.post("/v1/enrol/renew", json=late)
    assert res.status_code == 400 and error(res)["field"] == "at"
    res = central.client.post("/v1/enrol/renew", json={"kiosk": kiosk, "csr": "x"})
    assert res.status_code == 400  # unsigned
    central.service.revoke(kiosk, reason="lost")
    res = central.client.post("/v1/enrol/renew", json=renewal(kiosk, box.csr(), box.signing))
    assert res.status_code == 403 and error(res)["code"] == "revoked"


def test_unknown_office_is_refused_naming_the_fix(central: Central) -> None:
    with pytest.raises(RegistryError, match=r"\[enrolment\] offices"):
        central.service.create_token(office="000.00.99.Z99", slot=1)
    with pytest.raises(RegistryError, match="agency id"):
        central.service.create_token(office="phường 1", slot=1)
    # An office whose kiosk ids would take central's names (aps-*, fleet*) is refused up front.
    central.service.offices = (*central.service.offices, "APS.01", "FLEET.1")
    for office in ("APS.01", "FLEET.1"):
        with pytest.raises(RegistryError, match="reserved"):
            central.service.create_token(office=office, slot=1)


def test_enrolment_off_says_so(tmp_path: Path) -> None:
    app = create_app(ApiSettings(database=tmp_path / "c.db"))
    with TestClient(app) as client:
        res = client.post("/v1/enrol", json=new_box().body("x"))
    assert res.status_code == 404 and error(res)["code"] == "not-enabled"


def test_one_token_raced_by_many_boxes_enrols_one(central: Central, central_db: CentralDb) -> None:
    """Several central processes (own connections) redeem one token at once: one wins."""
    token = central.token()
    services = [
        Enrolment(
            registry=Registry(central_db.target),
            ca=central.service.ca,
            central_keys=[],
            broker=BrokerAddress("127.0.0.1"),
            central_url="https://central",
            offices=(OFFICE,),
        )
        for _ in range(6)
    ]
    outcomes: list[str] = []
    start = threading.Barrier(len(services))

    def redeem(service: Enrolment) -> None:
        body = new_box().body(token)
        start.wait()
        try:
            outcomes.append(service.enrol(body)["kiosk"])
        except EnrolRefused as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=redeem, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in services:
        s.registry.close()
    assert sorted(outcomes) == ["000-00-14-h56-k1"] + ["token-used"] * 5
    assert [e.kiosk for e in central.service.registry.list()] == ["000-00-14-h56-k1"]
