"""Enrolment end to end: a token at central, `aps-agent provision` over real HTTPS pinned to
central's CA, the issued certificate on a real mosquitto that trusts that CA, renewal with key
rotation, revocation kicking the kiosk off the broker."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from central.cli import main as central_main
from central.fleet import tokens
from central.fleet.lifecycle import KioskState, TokenState
from central.fleet.registry import SlotHeld
from edge_agent.cli import main as agent_main
from edge_agent.config import load_agent_config
from edge_agent.provision import ProvisionError, provision, renew
from sync.envelope_signing import key_id
from sync.identity_files import load_private_key, load_public_keys
from sync.mqtt_link import MqttSettings
from tests.enrol_stack import OFFICE, EnrolStack, enrol_stack
from tests.mqtt_probe import probe
from tests.waiting import wait_until

KIOSK = "000-00-14-h56-k2"

TECHNICIAN_CONFIG = """# written by the technician before provisioning
[kiosk]
office_name = "Bộ phận Một cửa phường Bến Nghé"  # printed on receipts
hotline = "1900 1234"

[devices]
printer = "tcp://127.0.0.1:9100"
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EnrolStack]:
    with enrol_stack(tmp_path) as s:
        yield s


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def kiosk_mqtt(config: Path) -> MqttSettings:
    cfg = load_agent_config(config)
    return MqttSettings(
        host=cfg.mqtt.host,
        port=cfg.mqtt.port,
        tls_ca=cfg.mqtt.tls_ca,
        tls_cert=cfg.mqtt.tls_cert,
        tls_key=cfg.mqtt.tls_key,
    )


def test_provision_end_to_end(stack: EnrolStack) -> None:
    issued = stack.service.create_token(office=OFFICE, slot=2, location="tầng 1")
    config, state = stack.box()
    config.write_text(TECHNICIAN_CONFIG, encoding="utf-8")

    runner = CliRunner()
    res = runner.invoke(
        agent_main,
        ["provision", "--central", stack.url, "--token", issued.token,
         "--config", str(config), "--state-dir", str(state)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"provisioned: kiosk {KIOSK}" in res.output
    assert f"office       {OFFICE} (agency {OFFICE}), slot 2" in res.output
    assert "certificate  valid until" in res.output

    # Files and modes: private keys 0600 in a 0700 directory, made on the box.
    assert mode(state) == 0o700
    assert mode(state / "tls.key") == 0o600
    assert mode(state / "signing.key") == 0o600
    cert = x509.load_pem_x509_certificate((state / "tls.crt").read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={KIOSK}"

    # The config loads, and the technician's own keys, sections and comments are kept.
    cfg = load_agent_config(config)
    assert (cfg.kiosk.id, cfg.kiosk.agency, cfg.kiosk.slot) == (KIOSK, OFFICE, 2)
    assert cfg.kiosk.office_name == "Bộ phận Một cửa phường Bến Nghé"
    assert cfg.devices.printer == "tcp://127.0.0.1:9100"
    assert "# printed on receipts" in config.read_text(encoding="utf-8")
    assert cfg.identity.office == OFFICE and cfg.identity.central_url == stack.url
    assert cfg.mqtt.port == stack.broker.kiosk_port  # type: ignore[union-attr]
    assert cfg.identity.central_keys is not None and cfg.identity.signing_key is not None
    central_keys = load_public_keys(cfg.identity.central_keys)
    assert list(central_keys) == [key_id(k) for k in stack.service.central_keys]

    # The registry: pending, the box's signing key, the certificate's serial.
    entry = stack.service.registry.get(KIOSK)
    assert entry is not None and entry.state is KioskState.PENDING
    assert entry.location == "tầng 1"
    assert entry.cert_serial == format(cert.serial_number, "x")
    box_key = load_private_key(cfg.identity.signing_key).public_key()
    assert set(entry.accepted_keys) == {key_id(box_key)}
    used = tokens.get(stack.service.registry, issued.entry.token_id)
    assert used is not None and used.state is TokenState.USED and used.kiosk == KIOSK

    # The certificate logs in to a real mosquitto with the identity made at enrolment.
    p = probe(kiosk_mqtt(config), KIOSK)
    try:
        assert p.connected.is_set(), p.refused
        assert p.subscribe(f"aps/v1/{KIOSK}/down/acks") == [1]
        assert p.subscribe("#") == [128]
    finally:
        p.stop()

    # Re-running is safe: no token needed, the same keys kept, exit 0.
    before = (state / "tls.key").read_bytes(), (state / "signing.key").read_bytes()
    res = runner.invoke(
        agent_main, ["provision", "--config", str(config), "--state-dir", str(state)]
    )
    assert res.exit_code == 0, res.output
    assert f"already provisioned: kiosk {KIOSK}" in res.output
    assert ((state / "tls.key").read_bytes(), (state / "signing.key").read_bytes()) == before

    # The used token is refused for another box, with the reason, exit non-zero.
    config2, state2 = stack.box("box2")
    res = runner.invoke(
        agent_main,
        ["provision", "--central", stack.url, "--token", issued.token,
         "--config", str(config2), "--state-dir", str(state2)],
    )  # fmt: skip
    assert res.exit_code != 0
    assert "already used" in res.output and "token-used" in res.output
    assert not config2.exists()

    # The slot is held by the kiosk: no second token for it.
    with pytest.raises(SlotHeld, match=f"held by kiosk {KIOSK}"):
        stack.service.create_token(office=OFFICE, slot=2)


def test_expired_token_refused_and_marked(stack: EnrolStack) -> None:
    issued = stack.service.create_token(office=OFFICE, slot=3, lifetime=timedelta(minutes=5))
    real_clock = stack.service.clock
    stack.service.clock = lambda: real_clock() + 600
    config, state = stack.box()
    with pytest.raises(ProvisionError, match="expired"):
        provision(stack.url, issued.token, config=config, state_dir=state)
    entry = tokens.get(stack.service.registry, issued.entry.token_id)
    assert entry is not None and entry.state is TokenState.EXPIRED
    assert stack.service.registry.list() == []
    assert not config.exists()


def test_a_token_pinned_to_another_ca_is_refused(stack: EnrolStack, tmp_path: Path) -> None:
    issued = stack.service.create_token(office=OFFICE, slot=4)
    forged = issued.token.rsplit(".", 1)[0] + ".sha256:" + "0" * 64
    config, state = stack.box()
    with pytest.raises(ProvisionError, match="not the central that issued this token"):
        provision(stack.url, forged, config=config, state_dir=state)
    # Nothing was redeemed: the right token still works.
    done = provision(stack.url, issued.token, config=config, state_dir=state)
    assert done.kiosk == "000-00-14-h56-k4"


def test_renew_rotates_the_signing_key_and_revoke_kicks_the_kiosk(stack: EnrolStack) -> None:
    issued = stack.service.create_token(office=OFFICE, slot=2)
    config, state = stack.box()
    provision(stack.url, issued.token, config=config, state_dir=state)
    old_kid = key_id(load_private_key(state / "signing.key").public_key())
    old_serial = x509.load_pem_x509_certificate((state / "tls.crt").read_bytes()).serial_number

    res = CliRunner().invoke(agent_main, ["renew", "--config", str(config), "--rotate-signing-key"])
    assert res.exit_code == 0, res.output
    assert f"renewed: kiosk {KIOSK}" in res.output
    cfg = load_agent_config(config)
    assert (
        cfg.identity.signing_key is not None and cfg.identity.signing_key != state / "signing.key"
    )
    assert mode(cfg.identity.signing_key) == 0o600
    new_kid = key_id(load_private_key(cfg.identity.signing_key).public_key())
    cert = x509.load_pem_x509_certificate((state / "tls.crt").read_bytes())
    assert cert.serial_number != old_serial
    sender = stack.service.registry.sender(KIOSK)
    assert sender is not None and set(sender.keys) == {old_kid, new_kid}
    entry = stack.service.registry.get(KIOSK)
    assert entry is not None and entry.cert_serial == format(cert.serial_number, "x")
    stack.service.registry.retire_signing_key(KIOSK, old_kid)
    sender = stack.service.registry.sender(KIOSK)
    assert sender is not None and set(sender.keys) == {new_kid}
    # The renewed certificate still logs in, and the next renewal is signed with the new key.
    renew(config)

    p = probe(kiosk_mqtt(config), KIOSK)
    try:
        assert p.connected.is_set(), p.refused
        # As an admin would, from another process's connection to the registry.
        res = CliRunner().invoke(
            central_main,
            ["kiosk", "revoke", "--config", str(stack.cfg_path), KIOSK, "--reason", "box stolen"],
        )
        assert res.exit_code == 0, res.output
        assert "disconnected at once" in res.output
        wait_until(lambda: p.disconnects > 0, 10, "the revoked kiosk kicked off")
    finally:
        p.stop()
    # Its certificate is still CA-signed (no CRL), but its broker identity is gone: a
    # reconnection is allowed nothing, not even its own topics.
    again = probe(kiosk_mqtt(config), KIOSK)
    try:
        assert again.subscribe(f"aps/v1/{KIOSK}/down/acks", "aps/v1/fleet/down/#") == [128, 128]
    finally:
        again.stop()
    # The collector's registry sees it within its cache age (MAX_STALENESS_S at most).
    wait_until(lambda: not stack.service.registry.sender(KIOSK).may_send, 5, "revocation seen")  # type: ignore[union-attr]
    with pytest.raises(ProvisionError, match="revoked"):
        renew(config)
    # Its slot is free again; the new kiosk gets a new id (ids are never reused).
    token = stack.service.create_token(office=OFFICE, slot=2)
    config2, state2 = stack.box("box2")
    assert provision(stack.url, token.token, config=config2, state_dir=state2).kiosk == (
        f"{KIOSK}-2"
    )
    assert tomllib.loads(config2.read_text())["kiosk"]["id"] == f"{KIOSK}-2"


def test_a_box_that_lost_the_answer_may_retry_its_token(stack: EnrolStack) -> None:
    """Central committed, the box never wrote the answer (power cut): the same box, with
    the same keys, gets its kiosk again; nobody else can (see the used-token refusal)."""
    issued = stack.service.create_token(office=OFFICE, slot=5)
    config, state = stack.box()
    first = provision(stack.url, issued.token, config=config, state_dir=state)
    config.unlink()
    (state / "tls.crt").unlink()
    again = provision(stack.url, issued.token, config=config, state_dir=state)
    assert again.kiosk == first.kiosk and not again.already
    assert [e.kiosk for e in stack.service.registry.list()] == [first.kiosk]
    cert = x509.load_pem_x509_certificate((state / "tls.crt").read_bytes())
    entry = stack.service.registry.get(first.kiosk)
    assert entry is not None and entry.cert_serial == format(cert.serial_number, "x")
    # A box with other keys and the same token: refused.
    config2, state2 = stack.box("thief")
    with pytest.raises(ProvisionError, match="already used"):
        provision(stack.url, issued.token, config=config2, state_dir=state2)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another account needs root")
def test_provision_as_root_hands_the_keys_to_the_service_account(stack: EnrolStack) -> None:
    """sudo aps-agent provision: the agent (User=aps) must read its keys; here `nobody`."""
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody")
    issued = stack.service.create_token(office=OFFICE, slot=4)
    config, state = stack.box("root-box")
    res = CliRunner().invoke(
        agent_main,
        ["provision", "--central", stack.url, "--token", issued.token, "--config", str(config),
         "--state-dir", str(state), "--service-user", "nobody"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "owner        nobody" in res.output
    for path in [state, *state.iterdir()]:
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
    assert mode(state / "signing.key") == 0o600 and mode(state / "tls.key") == 0o600
    st = os.stat(config)
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, grp.getgrgid(nobody.pw_gid).gr_name)
    assert mode(config) == 0o640
    missing = CliRunner().invoke(
        agent_main,
        ["renew", "--config", str(config), "--service-user", "no-such-account"],
    )
    assert missing.exit_code == 0, missing.output
    assert "no account 'no-such-account'" in missing.output
