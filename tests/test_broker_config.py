"""``aps-central broker-config``: what it generates, and that the tests run exactly that."""

from __future__ import annotations

import json
import shlex
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.broker_config import (
    BOOTSTRAP_NAME,
    CONF_NAME,
    NEXT_STEPS_NAME,
    BrokerConfigError,
    BrokerOptions,
    find_plugin,
    render_conf,
)
from central.broker_identities import setup_commands
from central.cli import main as aps_central
from central.mosquitto import DEBIAN_MAIN_CONF, SHIPPED_CONF, MosquittoProcess


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_shipped_file_is_what_the_generator_emits_with_defaults() -> None:
    assert SHIPPED_CONF.read_text(encoding="utf-8") == render_conf(BrokerOptions())


def test_the_production_file_says_what_the_issue_asks() -> None:
    lines = _directives(render_conf(BrokerOptions()))
    kiosk = lines[lines.index("listener 8883") : lines.index("listener 1883 127.0.0.1")]
    # TLS-only, certificate required, the CN is the identity and the client id.
    for want in (
        "cafile /etc/aps/tls/ca.crt",
        "certfile /etc/aps/tls/broker.crt",
        "keyfile /etc/aps/tls/broker.key",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
    ):
        assert want in kiosk
    assert lines[lines.index("listener 1883 127.0.0.1") + 1] == "use_username_as_clientid true"
    assert "allow_anonymous false" in lines and not any("password_file" in x for x in lines)
    assert not any(x.startswith("crlfile") for x in lines)
    assert "crlfile /etc/aps/tls/crl.pem" in render_conf(BrokerOptions(crl=True))
    # Debian's main file sets these; the conf.d file must not (mosquitto refuses duplicates).
    ours = {x.split()[0] for x in lines}
    debian = {x.split()[0] for x in _directives(DEBIAN_MAIN_CONF)}
    assert not ours & (debian - {"user", "log_type", "connection_messages"})


def test_only_ports_and_paths_change_between_production_and_the_tests(tmp_path: Path) -> None:
    shipped = render_conf(BrokerOptions()).splitlines()
    rendered = render_conf(
        BrokerOptions(
            kiosk_port=18883,
            kiosk_address="127.0.0.1",
            local_port=11883,
            tls_dir=tmp_path / "tls",
            data_dir=tmp_path / "data",
            plugin="/x/dynsec.so",
        )
    ).splitlines()
    changed = [a for a, b in zip(shipped, rendered, strict=True) if a != b]
    assert changed == [
        "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
        "plugin_opt_config_file /var/lib/mosquitto/dynamic-security.json",
        "listener 8883",
        "cafile /etc/aps/tls/ca.crt",
        "certfile /etc/aps/tls/broker.crt",
        "keyfile /etc/aps/tls/broker.key",
        "listener 1883 127.0.0.1",
    ]


def test_the_test_broker_runs_exactly_the_generated_files(broker: MosquittoProcess) -> None:
    confd = broker.confd
    # The test broker sets ports and paths only (and the kiosks' listener on loopback).
    options, defaults = broker.options(), BrokerOptions()
    assert {
        f.name
        for f in fields(BrokerOptions)
        if getattr(options, f.name) != getattr(defaults, f.name)
    } <= {"kiosk_port", "kiosk_address", "local_port", "tls_dir", "data_dir", "plugin"}
    assert (confd / CONF_NAME).read_text(encoding="utf-8") == render_conf(broker.options())
    bootstrap = json.loads((confd / BOOTSTRAP_NAME).read_text(encoding="utf-8"))
    assert bootstrap == {"commands": setup_commands()}
    assert f"include_dir {confd}" in broker.conf.read_text(encoding="utf-8")
    assert sorted(p.name for p in confd.glob("*.conf")) == [CONF_NAME]


def test_the_command_writes_once_then_refuses_to_overwrite_an_edited_file(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    runner = CliRunner()
    args = ["broker-config", "--out", str(out), "--hostname", "central.phuong.example"]
    first = runner.invoke(aps_central, args)
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CONF_NAME, BOOTSTRAP_NAME, NEXT_STEPS_NAME]
    )
    assert "mosquitto_ctrl dynsec init" in first.output
    assert "central.phuong.example:8883" in first.output
    conf = out / CONF_NAME
    assert f"plugin {find_plugin()}" in conf.read_text()

    again = runner.invoke(aps_central, args)
    assert again.exit_code == 0 and again.output.count("unchanged") == 3, again.output

    conf.write_text(conf.read_text() + "allow_anonymous true\n")
    other = runner.invoke(aps_central, [*args, "--kiosk-port", "8884"])
    assert other.exit_code == 1
    assert str(conf) in other.output and "--force" in other.output
    assert conf.read_text().endswith("allow_anonymous true\n")  # nothing written
    assert "8884" not in (out / NEXT_STEPS_NAME).read_text()

    forced = runner.invoke(aps_central, [*args, "--kiosk-port", "8884", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "allow_anonymous true" not in conf.read_text()
    assert "listener 8884" in conf.read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kiosk_port": 0}, "--kiosk-port 0: a TCP port is 1-65535"),
        ({"local_port": 8883}, "both 8883"),
        ({"tls_dir": Path("tls")}, "--tls-dir tls: must be an absolute path"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict, message: str) -> None:
    with pytest.raises(BrokerConfigError, match=message):
        BrokerOptions(**options)


def test_a_missing_plugin_is_named_with_the_fix(tmp_path: Path) -> None:
    assert find_plugin(str(tmp_path / "x.so")) == str(tmp_path / "x.so")
    result = CliRunner().invoke(
        aps_central, ["broker-config", "--out", str(tmp_path), "--local-port", "70000"]
    )
    assert result.exit_code == 1 and "--local-port 70000" in result.output


def test_the_documented_command_runs_as_written(tmp_path: Path) -> None:
    doc = (SHIPPED_CONF.parent.parent / "docs" / "broker.md").read_text(encoding="utf-8")
    [line] = [x.strip() for x in doc.splitlines() if x.strip().startswith("aps-central broker-")]
    args = shlex.split(line)[1:]
    assert args[args.index("--out") + 1] == "/etc/aps/broker"
    args[args.index("--out") + 1] = str(tmp_path / "broker")
    result = CliRunner().invoke(aps_central, args)
    assert result.exit_code == 0, result.output
    conf = (tmp_path / "broker" / CONF_NAME).read_text(encoding="utf-8")
    assert conf == render_conf(BrokerOptions(plugin=find_plugin()))
