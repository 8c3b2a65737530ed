"""The technician's run, as issue 9 tells it, in one test with every part real.

At central: the fleet CA, a mosquitto started from the generated configuration and trusting
that CA, and `aps-central run` (collector, registry, enrolment over HTTPS) as its own process;
the admin makes a one-time token with `aps-central enroll create`. On the box: the install
command (`scripts/install.sh --prefix --no-system --wheelhouse`, the same script the chroot
test runs as root), then only the *installed* agent: `aps-agent provision` with the token,
`aps-agent selftest` (the receipt printer emulated below pyusb inside the installed
interpreter, the card reader and the QR scanner on ptys), `aps-agent run`, and a citizen's
filing through its local API after scanning an ID card. The dossier must reach central's
store, signed by the key the box made, and the kiosk must show in `aps-central fleet` with
its office and slot.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from central.fleet.ca import CertificateAuthority
from central.mosquitto import MosquittoProcess, TestPki, free_port
from drivers.cccd_qr import encode_cccd_qr
from firmware_mocks.card_reader import EmulatedCardReader
from firmware_mocks.cdc_scanner import EmulatedCdcScanner
from sync.envelope_signing import key_id
from sync.identity_files import load_private_key
from tests import stack
from tests.kiosk import card, strokes
from tests.test_install_chroot import wheelhouse
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
OFFICE = "000.00.14.H56"
SLOT = 3
KIOSK = "000-00-14-h56-k3"
V1 = "/api/v1"

#: The installed interpreter runs the installed CLI with the printer emulated below pyusb
#: (firmware_mocks ships in the package); everything else is the real command.
SELFTEST_LAUNCHER = (
    "import sys\n"
    "from edge_agent.cli import main\n"
    "from edge_agent.selftest import Hardware\n"
    "from firmware_mocks.usb_printer import EmulatedUsbPrinter\n"
    "main(args=sys.argv[1:], obj=Hardware(usb_backend=EmulatedUsbPrinter()))\n"
)


def run(cmd: list[str], *, timeout: float = 300, check: bool = True) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd[:3]} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def central_toml(tmp: Path, broker: MosquittoProcess, api_port: int) -> Path:
    collector = broker.collector()
    admin_pw = tmp / "broker-admin.password"
    admin_pw.write_text(broker.admin_password + "\n", encoding="utf-8")
    admin_pw.chmod(0o600)
    path = tmp / "central.toml"
    path.write_text(
        "\n".join(
            [
                "[central]",
                f'database = "{tmp / "central.db"}"',
                "[security]",
                f'signing_key = "{tmp / "keys" / "central-signing.key"}"',
                "[mqtt]",
                'host = "127.0.0.1"',
                f"port = {broker.local_port}",
                f'username = "{collector.username}"',
                f'password = "{collector.password}"',
                "[collector]",
                f'client_id = "{collector.username}"',
                "[api]",
                f'listen = "127.0.0.1:{api_port}"',
                "[enrolment]",
                "enabled = true",
                f'ca_dir = "{tmp / "ca"}"',
                f'central_url = "https://127.0.0.1:{api_port}"',
                f'offices = ["{OFFICE}"]',
                'broker_host = "127.0.0.1"',
                f"broker_port = {broker.kiosk_port}",
                f'broker_admin_password_file = "{admin_pw}"',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def central_cli(cfg: Path, *args: str) -> str:
    return run([sys.executable, "-m", "central.cli", *args, "--config", str(cfg)])


def free_loopback() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_token_install_provision_selftest_first_dossier_in_the_fleet(tmp_path: Path) -> None:
    # -- central's host -------------------------------------------------------------------
    host = tmp_path / "central"
    host.mkdir()
    authority = CertificateAuthority.open(host / "ca")
    authority.issue_server(["127.0.0.1", "localhost"], host / "ca", "broker")
    broker = MosquittoProcess(host / "mq", pki=TestPki(host / "ca")).start()
    api_port = free_port()
    cfg = central_toml(host, broker, api_port)
    central_cli(cfg, "ca", "init")  # once, at central's install: the CA and central's key
    central = stack.spawn("central.cli", cfg, host / "central.log")
    procs: list[subprocess.Popen[bytes]] = [central]
    scanner = EmulatedCdcScanner()
    reader = EmulatedCardReader(card())  # the technician's test card is in the reader
    reader.start()
    try:
        url = f"https://127.0.0.1:{api_port}"

        def central_answers() -> bool:
            try:
                return httpx.get(f"{url}/v1/enrol/ca", verify=False, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(central_answers, 60, "central's HTTPS enrolment endpoint")

        # 1. the admin makes a one-time token for the office's slot 3
        issued = central_cli(cfg, "enroll", "create", "--office", OFFICE, "--slot", str(SLOT))
        token = next(
            line.split("--token", 1)[1].strip() for line in issued.splitlines() if "--token" in line
        )

        # 2. the technician installs the agent (no root effects: --prefix, --no-system)
        box = tmp_path / "box"
        out = run(
            [
                "bash",
                str(ROOT / "scripts/install.sh"),
                "--prefix",
                str(box),
                "--no-system",
                "--wheelhouse",
                str(wheelhouse()),
            ],
            timeout=600,
        )
        assert "changed:" in out
        venv = box / "opt/aps/current/venv/bin"
        agent_cli = str(venv / "aps-agent")
        assert run([agent_cli, "--version"]).strip() == "aps-agent 0.1.0"

        # 3. provision with the token; then the technician names the devices and the screen
        config = box / "etc/aps/agent.toml"
        state = box / "var/lib/aps"
        out = run(
            [agent_cli, "provision", "--central", url, "--token", token, "--config", str(config),
             "--state-dir", str(state / "identity")]
        )  # fmt: skip
        assert f"provisioned: kiosk {KIOSK}" in out, out
        ui = free_loopback()
        with config.open("a", encoding="utf-8") as fh:
            fh.write(
                "\n[agent]\n"
                f'database = "{state / "outbox.sqlite"}"\n'
                f'receipts_dir = "{state / "receipts"}"\n'
                "\n[devices]\n"
                'printer = "usb://04b8:0e15"\n'
                f'scanner = "{scanner.port_path}"\n'
                f'card_reader = "{reader.port_path}"\n'
                "\n[ui]\n"
                f'listen = "{ui}"\n'
            )

        # 4. the self-test passes, the scanner answered by the technician's scan
        stop_scanning = threading.Event()

        def technician_scans() -> None:
            while not stop_scanning.wait(0.3):
                scanner.scan("TEST-QR-0001")

        scanning = threading.Thread(target=technician_scans, daemon=True)
        scanning.start()
        try:
            res = subprocess.run(
                [str(venv / "python"), "-c", SELFTEST_LAUNCHER, "selftest", "--config",
                 str(config), "--json", "--timeout-s", "20", "--service-user",
                 "root", "--config-owner", "root"],
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
        finally:
            stop_scanning.set()
            scanning.join(5)
        report = json.loads(res.stdout)
        failed = [c for c in report["checks"] if c["status"] == "fail"]
        assert res.returncode == 0 and not failed, json.dumps(report, ensure_ascii=False)[:3000]
        passed = {c["name"] for c in report["checks"] if c["status"] == "ok"}
        assert {"identity", "printer", "card_reader", "scanner", "broker", "clock"} <= passed
        reader.remove_card()  # the technician takes the test card back

        # 5. the installed agent runs; a citizen scans an ID card and files a dossier. (The
        # printer is emulated inside the self-test's interpreter only: to `aps-agent run` it is
        # unplugged, and the filing goes through all the same.)
        agent = subprocess.Popen(
            [agent_cli, "run", "--config", str(config)],
            stdout=(box / "agent.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        procs.append(agent)
        with httpx.Client(base_url=f"http://{ui}", timeout=10) as http:

            def api_up() -> bool:
                try:
                    return http.get(f"{V1}/session").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(api_up, 60, "the installed agent's local API")

            def scanned() -> bool:
                scanner.scan(encode_cccd_qr(card()))
                return wait_until_quiet(lambda: http.get(f"{V1}/session").json()["active"])

            wait_until(scanned, 30, "the citizen's ID card read by the scanner")
            prepared = http.post(
                f"{V1}/filings/prepare",
                json={
                    "procedure": "2.000815",
                    "form": {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 5, "so_ban": 2},
                    "phone": "0912345678",
                },
            )
            assert prepared.status_code == 200, prepared.text
            filed = http.post(
                f"{V1}/filings",
                json={
                    "document_sha256": prepared.json()["document_sha256"],
                    "signature": {
                        "type": "handwritten",
                        "width": 400,
                        "height": 200,
                        "strokes": strokes(),
                    },
                },
            )
            assert filed.status_code == 200, filed.text
            code = filed.json()["code"]
        assert code.startswith(f"{OFFICE}-") and code.endswith(f"-{SLOT}001"), code

        # 6. it shows at central: the dossier stored, the kiosk in the fleet with office and slot
        wait_until(
            lambda: stack.central_count(host / "central.db", KIOSK) >= 1,
            60,
            "the first dossier at central",
        )

        box_key = load_private_key(state / "identity" / "signing.key").public_key()
        with sqlite3.connect(f"file:{host / 'central.db'}?mode=ro", uri=True) as conn:
            stored = conn.execute(
                "SELECT key_id, envelope FROM records WHERE kiosk = ? AND kind = 'dossier'",
                (KIOSK,),
            ).fetchall()
        assert [kid for kid, _ in stored] == [key_id(box_key)]  # signed by the box's own key
        assert json.loads(stored[0][1])["body"]["code"] == code  # the signed envelope, kept

        def fleet_row() -> dict[str, object]:
            out = central_cli(cfg, "fleet", "--json")
            rows = {r["kiosk"]: r for r in map(json.loads, out.splitlines())}
            return rows.get(KIOSK, {})

        wait_until(lambda: fleet_row().get("presence") == "online", 60, "the kiosk online")
        row = fleet_row()
        assert row["office"] == OFFICE and row["slot"] == SLOT, row
        assert row["registry"] == "active", row  # its first verified record made it active
    finally:
        for proc in reversed(procs):
            stack.stop(proc)
        scanner.close()
        reader.close()
        broker.stop()


def wait_until_quiet(check: object) -> bool:
    """One look at ``check`` that counts a refused connection as "not yet"."""
    try:
        return bool(check())  # type: ignore[operator]
    except httpx.HTTPError:
        return False
