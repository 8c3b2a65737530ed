"""Central with enrolment on real HTTPS (uvicorn, the fleet CA), and a broker trusting it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from central.config import CentralConfig, load_central_config
from central.fleet.ca import CertificateAuthority
from central.fleet.enrolment import Enrolment
from central.mosquitto import MosquittoProcess, TestPki, free_port
from central.web.app import app_from_config
from central.web.server import ApiServer

OFFICE = "000.00.14.H56"
OTHER_OFFICE = "000.00.15.H57"


@dataclass
class EnrolStack:
    tmp: Path
    cfg_path: Path
    cfg: CentralConfig
    service: Enrolment
    server: ApiServer
    broker: MosquittoProcess | None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.bound_port}"

    def box(self, name: str = "box") -> tuple[Path, Path]:
        """(config path, state dir) of a fresh box."""
        root = self.tmp / name
        root.mkdir(exist_ok=True)
        return root / "agent.toml", root / "identity"


def central_toml(tmp: Path, *, api_port: int, broker: MosquittoProcess | None) -> str:
    lines = [
        "[central]",
        f'database = "{tmp / "central.db"}"',
        "[security]",
        f'signing_key = "{tmp / "keys" / "central-signing.key"}"',
        "[api]",
        f'listen = "127.0.0.1:{api_port}"',
        "[enrolment]",
        "enabled = true",
        f'ca_dir = "{tmp / "ca"}"',
        f'central_url = "https://127.0.0.1:{api_port}"',
        f'offices = ["{OFFICE}", "{OTHER_OFFICE}"]',
        'broker_host = "127.0.0.1"',
    ]
    if broker is not None:
        password = tmp / "broker-admin.password"
        password.write_text(broker.admin_password + "\n")
        password.chmod(0o600)
        lines += [
            f"broker_port = {broker.kiosk_port}",
            f'broker_admin_password_file = "{password}"',
            "[mqtt]",
            'host = "127.0.0.1"',
            f"port = {broker.local_port}",
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def enrol_stack(tmp: Path, *, with_broker: bool = True) -> Iterator[EnrolStack]:
    ca_dir = tmp / "ca"
    authority = CertificateAuthority.open(ca_dir)
    broker: MosquittoProcess | None = None
    if with_broker:
        # mosquitto's tls dir is the CA dir: ca.crt (its cafile) and a broker certificate.
        authority.issue_server(["127.0.0.1", "localhost"], ca_dir, "broker")
        broker = MosquittoProcess(tmp / "mq", pki=TestPki(ca_dir)).start()
    try:
        api_port = free_port()
        cfg_path = tmp / "central.toml"
        cfg_path.write_text(central_toml(tmp, api_port=api_port, broker=broker))
        cfg = load_central_config(cfg_path)
        app, tls = app_from_config(cfg)
        server = ApiServer(app, "127.0.0.1", api_port, tls=tls)
        server.start()
        try:
            yield EnrolStack(tmp, cfg_path, cfg, app.state.enrolment, server, broker)
        finally:
            server.stop()
            app.state.enrolment.registry.close()
    finally:
        if broker is not None:
            broker.stop()
