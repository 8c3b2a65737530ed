"""Run a private mosquitto with the shipped configuration (demo, tests, benchmarks).

It never touches a broker someone else started: everything lives in a
directory of its own, and it listens on loopback ports it picked. It runs the
production files as a technician installs them on Debian 12 (docs/broker.md):
a main ``mosquitto.conf`` equal to Debian's own (persistence on), which
includes ``conf.d/``, where :func:`central.broker_config.write_broker_config`
writes **exactly** what ``aps-central broker-config`` generates, given only
this broker's ports, its TLS directory, its data directory and the plugin's
path (:meth:`MosquittoProcess.options`); the dynsec bootstrap applied after
``dynsec init`` is the generated ``dynsec-bootstrap.json``. Nothing is
patched after generation. Identities are made the way
the docs make them: ``mosquitto_ctrl dynsec init`` for the admin, then the
commands of :mod:`central.broker_identities` for roles, collectors and
kiosks. Kiosks connect over mutual TLS with certificates from a private test
CA (:class:`TestPki`, made with the ``openssl`` command); collectors and
admin tools log in with passwords on the local listener. Nothing is
anonymous.

Ports: mosquitto cannot take a listening socket from us, so a port picked
free can be taken by someone else before mosquitto binds it. :meth:`start`
sees mosquitto fail with "Address already in use" and tries again with new
ports (only on the first start: a restart must keep its ports).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from central import CentralError
from central.broker_config import BOOTSTRAP_NAME, BrokerOptions, find_plugin, write_broker_config
from central.broker_identities import (
    DynsecAdmin,
    collector_commands,
    kiosk_commands,
    new_password,
)
from sync.mqtt_link import MqttSettings

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONF = ROOT / "config" / "mosquitto.conf"  # render_conf() of the defaults
ADMIN_USER = "aps-admin"

#: Debian 12's /etc/mosquitto/mosquitto.conf, paths moved into the work directory,
#: plus what a test needs: stay the user we are, and log connections.
DEBIAN_MAIN_CONF = """\
# Debian 12's /etc/mosquitto/mosquitto.conf (paths moved), written by central/mosquitto.py.
pid_file {workdir}/mosquitto.pid

persistence true
persistence_location {data}/

log_dest file {log}

include_dir {confd}

# Test only: started as root, mosquitto would switch to the "mosquitto" user.
user {user}
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
"""


def find_mosquitto() -> str:
    for candidate in (
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise CentralError(
        "mosquitto not found: install it with 'apt-get install -y mosquitto' "
        "(scripts/bootstrap.sh does this)"
    )


def free_port() -> int:
    """A port free right now (another process may take it before we bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` different ports free right now (held open together while chosen)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def refused_port() -> tuple[socket.socket, int]:
    """A port that refuses connections for as long as the returned socket stays open.

    The socket is bound and never listens, so nobody else can take the port
    and every connect to it gets ECONNREFUSED. Close the socket when done.
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, int(s.getsockname()[1])


def mqtt_toml(settings: MqttSettings) -> str:
    """An ``[mqtt]`` section for agent or central config files (tests and demo)."""
    lines = ["[mqtt]", f'host = "{settings.host}"', f"port = {settings.port}"]
    for key in ("username", "password", "tls_ca", "tls_cert", "tls_key"):
        value = getattr(settings, key)
        if value is not None:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


class TestPki:
    """A private CA with a broker certificate for 127.0.0.1 and one certificate per kiosk."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.ca = self.dir / "ca.crt"

    def _openssl(self, *args: str) -> None:
        res = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise CentralError(f"openssl {' '.join(args[:2])} failed: {res.stderr.strip()}")

    def _key(self, path: Path) -> None:
        self._openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))

    def create(self) -> TestPki:
        if self.ca.exists():
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        ca_key = self.dir / "ca.key"
        self._key(ca_key)
        self._openssl(
            "req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", "2",
            "-subj", "/CN=APS test CA", "-out", str(self.ca),
        )  # fmt: skip
        self._issue("broker", "127.0.0.1", ext="subjectAltName=IP:127.0.0.1,DNS:localhost")
        return self

    def _issue(self, name: str, cn: str, ext: str | None = None) -> tuple[Path, Path]:
        key, csr, crt = (self.dir / f"{name}.{s}" for s in ("key", "csr", "crt"))
        if crt.exists():
            return crt, key
        self._key(key)
        self._openssl("req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr))
        extra: list[str] = []
        if ext:
            extfile = self.dir / f"{name}.ext"
            extfile.write_text(ext + "\n")
            extra = ["-extfile", str(extfile)]
        self._openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey",
            str(self.dir / "ca.key"), "-CAcreateserial", "-days", "2", "-sha256",
            "-out", str(crt), *extra,
        )  # fmt: skip
        key.chmod(0o600)
        return crt, key

    def client(self, cn: str) -> tuple[Path, Path]:
        """Certificate and key with this CN (made once, then reused)."""
        return self._issue(f"client-{cn}", cn)

    def _ca_and_key(self) -> tuple[Any, Any]:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        ca_key = serialization.load_pem_private_key((self.dir / "ca.key").read_bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise CentralError(f"{self.dir / 'ca.key'}: expected an EC key (made by TestPki)")
        return x509.load_pem_x509_certificate(self.ca.read_bytes()), ca_key

    def client_ending(self, cn: str, days: int) -> tuple[Path, Path]:
        """A certificate for ``cn`` from this CA that ends ``days`` from now (< 0: expired)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        crt, key = (self.dir / f"ending-{days}-{cn}.{s}" for s in ("crt", "key"))
        ca, ca_key = self._ca_and_key()
        own = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject)
            .public_key(own.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=abs(days) + 2))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(ca_key, hashes.SHA256())
        )
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            own.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key.chmod(0o600)
        return crt, key

    def write_crl(self, revoked: list[str] = []) -> Path:  # noqa: B006 (never mutated)
        """``crl.pem`` (signed by this CA) listing the client certificates of these CNs."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        ca, ca_key = self._ca_and_key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(now - datetime.timedelta(minutes=5))
            .next_update(now + datetime.timedelta(days=1))
        )
        for cn in revoked:
            cert = x509.load_pem_x509_certificate(self.client(cn)[0].read_bytes())
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(now - datetime.timedelta(minutes=1))
                .build()
            )
        path = self.dir / "crl.pem"
        tmp = path.with_suffix(".tmp")
        crl = builder.sign(ca_key, hashes.SHA256())
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, path)
        return path


class MosquittoProcess:
    """mosquitto with the shipped configuration, on two loopback ports of its own.

    ``local_port`` is the collectors' and admin tools' listener (passwords),
    ``kiosk_port`` the kiosks' (mutual TLS). :meth:`kiosk` and
    :meth:`collector` make an identity the first time they are asked for it
    and return the settings to connect with.
    """

    def __init__(self, workdir: Path, *, pki: TestPki | None = None, crl: bool = False) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data = self.workdir / "data"
        self.confd = self.workdir / "conf.d"
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        #: The CA and the broker's certificate (``ca.crt``, ``broker.crt``, ``broker.key``
        #: in ``pki.dir``): pass another CA here to run the broker with it.
        self.pki = pki or TestPki(self.workdir / "tls")
        #: ``broker-config --crl``: refuse certificates listed in ``pki.dir/crl.pem``.
        self.crl = crl
        self.local_port = 0
        self.kiosk_port = 0
        self.admin_password = new_password()
        self.proc: subprocess.Popen[bytes] | None = None
        self._collectors: dict[str, MqttSettings] = {}
        self._kiosks: dict[str, MqttSettings] = {}
        self._set_up = False

    # -- identities --------------------------------------------------------------
    def admin(self) -> MqttSettings:
        return MqttSettings(port=self.local_port, username=ADMIN_USER, password=self.admin_password)

    def collector(self, name: str = "aps-collector-1") -> MqttSettings:
        """Settings for a collector identity (created on first use)."""
        if name not in self._collectors:
            password = new_password()
            DynsecAdmin(self.admin()).run(collector_commands(name, password))
            self._collectors[name] = MqttSettings(
                port=self.local_port, username=name, password=password
            )
        return self._collectors[name]

    def observer(self, name: str = "aps-observer") -> MqttSettings:
        """A test-only identity that may read every APS topic, up and down (never write).

        Tests watch what central sends a kiosk (its acks) without taking the
        kiosk's own identity, which would kick the kiosk off (client ids are bound).
        No shipped role grants this; production has no such user.
        """
        if name not in self._collectors:
            password = new_password()
            everything = "aps/v1/#"
            DynsecAdmin(self.admin()).run(
                [
                    {
                        "command": "createRole",
                        "rolename": f"test-{name}",
                        "acls": [
                            {"acltype": t, "topic": everything, "allow": True, "priority": 0}
                            for t in ("subscribePattern", "publishClientReceive")
                        ],
                    },
                    {
                        "command": "createClient",
                        "username": name,
                        "password": password,
                        "clientid": name,
                        "roles": [{"rolename": f"test-{name}", "priority": 0}],
                    },
                ]
            )
            self._collectors[name] = MqttSettings(
                port=self.local_port, username=name, password=password
            )
        return self._collectors[name]

    def kiosk(self, kiosk: str) -> MqttSettings:
        """TLS settings for an enrolled kiosk (enrolled and certified on first use)."""
        if kiosk not in self._kiosks:
            DynsecAdmin(self.admin()).run(kiosk_commands(kiosk))
            self._kiosks[kiosk] = self.kiosk_certificate(kiosk)
        return self._kiosks[kiosk]

    def kiosk_certificate(self, cn: str) -> MqttSettings:
        """TLS settings with a CA-signed certificate for ``cn``, enrolled or not."""
        crt, key = self.pki.client(cn)
        return MqttSettings(port=self.kiosk_port, tls_ca=self.pki.ca, tls_cert=crt, tls_key=key)

    # -- process -----------------------------------------------------------------
    def options(self) -> BrokerOptions:
        """The generator's options for this broker: its ports and paths, nothing else."""
        return BrokerOptions(
            kiosk_port=self.kiosk_port,
            kiosk_address="127.0.0.1",
            local_port=self.local_port,
            tls_dir=self.pki.dir,
            data_dir=self.data,
            plugin=find_plugin("auto"),
            crl=self.crl,
        )

    def _write_config(self) -> None:
        self.data.mkdir(exist_ok=True)
        self.pki.create()
        if self.crl and not (self.pki.dir / "crl.pem").exists():
            self.pki.write_crl([])
        # Exactly what 'aps-central broker-config' writes for these ports and paths.
        write_broker_config(self.options(), self.confd, force=True)
        self.conf.write_text(
            DEBIAN_MAIN_CONF.format(
                workdir=self.workdir,
                data=self.data,
                log=self.log,
                confd=self.confd,
                user=pwd.getpwuid(os.getuid()).pw_name,
            )
        )
        dynsec = self.data / "dynamic-security.json"
        if not dynsec.exists():
            res = subprocess.run(
                ["mosquitto_ctrl", "dynsec", "init", str(dynsec), ADMIN_USER, self.admin_password],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode != 0:
                raise CentralError(f"mosquitto_ctrl dynsec init failed: {res.stderr.strip()}")

    def start(self, timeout: float = 10.0) -> MosquittoProcess:
        first = self.local_port == 0
        for _ in range(5 if first else 1):
            if first:
                self.local_port, self.kiosk_port = free_ports(2)  # never one port twice
            self._write_config()
            try:
                self._spawn(timeout)
                break
            except _AddressInUse:
                if not first:
                    raise CentralError(
                        f"mosquitto cannot listen again on 127.0.0.1:{self.local_port}/"
                        f"{self.kiosk_port}: another process took the port"
                    ) from None
        else:
            raise CentralError("mosquitto: no free pair of loopback ports after 5 tries")
        if not self._set_up:
            bootstrap = json.loads((self.confd / BOOTSTRAP_NAME).read_text(encoding="utf-8"))
            DynsecAdmin(self.admin()).run(bootstrap["commands"])
            self._set_up = True
        return self

    def _spawn(self, timeout: float) -> None:
        log_start = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                if self.log.exists():
                    with self.log.open("rb") as fh:
                        fh.seek(log_start)
                        err += fh.read().decode(errors="replace")
                self.proc.stderr and self.proc.stderr.close()
                self.proc = None
                if re.search(r"address already in use", err, re.IGNORECASE):
                    raise _AddressInUse(err)
                raise CentralError(f"mosquitto exited at start (port {self.local_port}): {err}")
            if self._listening(self.local_port) and self._listening(self.kiosk_port):
                return
            time.sleep(0.05)
        self.stop()
        raise CentralError(
            f"mosquitto did not listen on 127.0.0.1:{self.local_port} within {timeout}s"
        )

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def reload(self) -> None:
        """SIGHUP: mosquitto rereads its configuration and the CRL."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        """A clean stop (persistence saves sessions and retained messages), then start."""
        self.stop()
        self.start()

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _AddressInUse(CentralError):
    pass
