"""`aps-central enroll|ca|kiosk` (thin CLI over central/fleet) and the box's config editing."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from central.cli import main
from central.config import load_central_config
from central.fleet.enrolment import from_config
from edge_agent.provision import ProvisionError, edit_toml
from sync.identity_files import public_key_text
from tests.enrol_stack import OFFICE, central_toml


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(central_toml(tmp_path, api_port=8443, broker=None))
    return path


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def enrol_one(config: Path, token: str) -> str:
    service, _tls = from_config(load_central_config(config))
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    body = {
        "token": token,
        "csr": csr,
        "signing_key": public_key_text(Ed25519PrivateKey.generate().public_key()),
    }
    try:
        return str(service.enrol(body)["kiosk"])
    finally:
        service.registry.close()


def test_ca_init_and_broker_cert(config: Path, tmp_path: Path) -> None:
    code, out = run("ca", "init", "--config", str(config))
    assert code == 0, out
    pin = out.split("CA pin")[1].split()[0]
    assert pin.startswith("sha256:") and len(pin) == 71
    key = tmp_path / "ca" / "ca.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    code, again = run("ca", "init", "--config", str(config))
    assert code == 0 and pin in again  # made once, kept
    out_dir = tmp_path / "tls"
    code, out = run(
        "ca", "broker-cert", "--config", str(config), "--name", "broker.example.vn",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, out
    cert = x509.load_pem_x509_certificate((out_dir / "broker.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.example.vn"]
    assert (out_dir / "ca.crt").read_bytes() == (tmp_path / "ca" / "ca.crt").read_bytes()
    assert stat.S_IMODE(os.stat(out_dir / "broker.key").st_mode) == 0o600
    key.chmod(0o644)
    code, out = run("ca", "init", "--config", str(config))
    assert code == 1 and f"chmod 600 {key}" in out


def test_enroll_create_list_revoke(config: Path) -> None:
    code, out = run("enroll", "create", "--config", str(config), "--office", OFFICE, "--slot", "1")
    assert code == 0, out
    assert f"for office {OFFICE}, slot 1" in out
    line = next(x for x in out.splitlines() if "aps-agent provision" in x)
    token = line.split("--token ")[1].strip()
    assert "--central https://127.0.0.1:8443" in line
    token_id = token.split(".")[0]

    code, out = run("enroll", "create", "--config", str(config), "--office", OFFICE, "--slot", "1")
    assert code == 1 and f"held by unused token {token_id}" in out

    code, out = run("enroll", "list", "--config", str(config), "--json")
    [item] = json.loads(out)
    assert (item["token_id"], item["state"], item["slot"]) == (token_id, "issued", 1)
    assert token.split(".")[1] not in out  # the secret is never shown again

    code, out = run("enroll", "revoke", "--config", str(config), token_id)
    assert code == 0 and "revoked" in out
    code, out = run("enroll", "revoke", "--config", str(config), token_id)
    assert code == 1 and "revoked" in out
    code, out = run(
        "enroll", "create", "--config", str(config), "--office", OFFICE, "--slot", "1", "--json"
    )
    assert code == 0 and json.loads(out)["slot"] == 1


def test_enroll_create_refusals_name_the_fix(config: Path) -> None:
    code, out = run(
        "enroll", "create", "--config", str(config), "--office", "000.00.99.Z99", "--slot", "1"
    )
    assert code == 1 and "[enrolment] offices" in out
    code, out = run("enroll", "create", "--config", str(config), "--office", OFFICE, "--slot", "12")
    assert code == 1 and "slot: 12 is not a whole number from 0 to 9" in out
    code, out = run(
        "enroll", "create", "--config", str(config), "--office", OFFICE, "--slot", "1",
        "--expires", "forever",
    )  # fmt: skip
    assert code == 2 and "30m, 24h, 2d" in out
    code, out = run(
        "enroll", "create", "--config", str(config), "--office", OFFICE, "--slot", "1",
        "--expires", "30d",
    )  # fmt: skip
    assert code == 1 and "7 days" in out


def test_kiosk_list_show_revoke(config: Path) -> None:
    code, out = run("enroll", "create", "--config", str(config), "--office", OFFICE, "--slot", "3")
    token = out.split("--token ")[1].strip()
    kiosk = enrol_one(config, token)
    assert kiosk == "000-00-14-h56-k3"
    code, out = run("kiosk", "list", "--config", str(config))
    assert code == 0 and f"{kiosk}  {OFFICE} slot 3  pending" in out
    code, out = run("kiosk", "show", "--config", str(config), kiosk, "--json")
    doc = json.loads(out)
    assert doc["state"] == "pending" and len(doc["signing_keys"]) == 1
    code, out = run("kiosk", "revoke", "--config", str(config), kiosk, "--reason", "stolen")
    assert code == 0 and "revoked (stolen)" in out and "slot 3" in out
    assert f"remove-kiosk {kiosk}" in out  # no broker admin here: says what to run
    code, out = run("kiosk", "show", "--config", str(config), kiosk)
    assert "revoked" in out and "stolen" in out
    code, out = run("kiosk", "show", "--config", str(config), "nobody-k1")
    assert code == 1 and "not enrolled" in out
    code, out = run("kiosk", "revoke", "--config", str(config), kiosk)
    assert code == 2  # --reason is required


# -- the box's config, edited in place -------------------------------------------------------


def test_edit_toml_keeps_everything_else() -> None:
    text = (
        '# top comment\n[kiosk]\nid = "old"  # trailing\nhotline = "1900"\n\n'
        '[devices]\nprinter = "usb://04b8:0e15"\n'
    )
    out = edit_toml(text, {"kiosk": {"id": "new-k1", "slot": 2}, "mqtt": {"port": 8883}})
    doc = tomllib.loads(out)
    assert doc["kiosk"] == {"id": "new-k1", "hotline": "1900", "slot": 2}
    assert doc["devices"] == {"printer": "usb://04b8:0e15"}
    assert doc["mqtt"] == {"port": 8883}
    assert out.startswith("# top comment\n")
    assert edit_toml(out, {"kiosk": {"id": "new-k1", "slot": 2}}) == out  # idempotent


def test_edit_toml_quotes_values_and_refuses_what_it_cannot_edit() -> None:
    out = edit_toml("", {"kiosk": {"office_name": 'Phường "Bến Nghé"\\'}})
    assert tomllib.loads(out)["kiosk"]["office_name"] == 'Phường "Bến Nghé"\\'
    with pytest.raises(ProvisionError, match="TOML"):
        edit_toml("[kiosk\n", {"kiosk": {"id": "x"}})
    # A key spelled another way (quoted) is not edited over: refused, the file left alone.
    with pytest.raises(ProvisionError, match="could not be edited"):
        edit_toml('[kiosk]\n"id" = "x"\n', {"kiosk": {"id": "y"}})
