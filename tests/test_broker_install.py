"""The install steps of docs/broker.md, run as written against the test broker."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from central.broker_identities import main as broker_identities
from central.mosquitto import ROOT, MosquittoProcess
from sync.mqtt_link import MqttSettings
from tests.mqtt_probe import probe

DOC = ROOT / "docs" / "broker.md"


def _documented_commands() -> list[list[str]]:
    lines = re.findall(r"^\s*python -m central\.broker_identities (.+)$", DOC.read_text(), re.M)
    return [shlex.split(line) for line in lines]


def test_the_documented_identity_commands_work_as_written(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    commands = _documented_commands()
    assert [c[2] for c in commands] == ["setup", "add-collector", "add-kiosk", "remove-kiosk"]
    admin_pw = tmp_path / "broker-admin.pw"
    admin_pw.write_text(broker.admin_password + "\n")
    runner = CliRunner()
    files: dict[str, Path] = {}
    for args in commands:
        # Only where things live differ: the admin's password file, the port, the new file.
        assert args[:2] == ["--admin-password-file", "/etc/aps/broker-admin.pw"]
        args = ["--port", str(broker.local_port), "--admin-password-file", str(admin_pw)] + [
            str(tmp_path / Path(a).name) if a.startswith("/etc/aps/") else a for a in args[2:]
        ]
        if "--password-file" in args:
            files[args[args.index("--password-file") - 1]] = Path(args[-1])
        result = runner.invoke(broker_identities, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        if args[4] == "add-kiosk":  # before it is removed again: the kiosk connects
            kiosk = probe(broker.kiosk_certificate(args[5]), args[5])
            assert kiosk.subscribe(f"aps/v1/{args[5]}/down/#") == [1]
            kiosk.stop()
    [(name, pw_file)] = files.items()
    assert pw_file.stat().st_mode & 0o777 == 0o600
    collector = probe(
        MqttSettings(port=broker.local_port, username=name, password=pw_file.read_text().strip()),
        name,
    )
    assert collector.subscribe("$share/aps-collectors/aps/v1/+/up/records") == [1]
    collector.stop()
