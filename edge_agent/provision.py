"""Provisioning a box: its keys made here, a certificate from central, its config written.

Theory of operation
-------------------
``aps-agent provision --central URL --token T`` (docs/enrolment.md):

1. **Keys, on the box.** In the state directory (0700): ``tls.key`` (EC P-256, the MQTT
   client certificate's key) and ``signing.key`` (Ed25519, records), each created 0600 with
   ``O_EXCL`` and never overwritten, so a re-run keeps them. No private key is ever sent.
2. **Trust, from the token.** The token ends with the CA pin (``sha256:<hex>`` of the CA's
   SubjectPublicKeyInfo). The box fetches ``/v1/enrol/ca`` once without verification, keeps
   it only if its pin matches, and from then on talks to central over TLS verified against
   that CA alone (host name checked), as kubeadm's discovery does.
3. **Enrol.** ``POST /v1/enrol`` with the token, a CSR for ``tls.key`` and the public
   signing key; central answers with the kiosk id, office, slot, agency, broker address, the
   certificate, the CA and central's public keys. A refusal (used, expired, revoked token,
   held slot) is shown with central's reason and the command exits non-zero.
4. **Files and config.** ``tls.crt``, ``ca.crt``, ``central-keys.json`` are written
   atomically; agent.toml gets ``[kiosk] id/agency/slot``, ``[mqtt] host/port/tls_*`` and
   ``[identity]``, editing only those keys in place (:func:`edit_toml`): everything else the
   technician wrote, comments included, stays. The result must load with
   :func:`edge_agent.config.load_agent_config` before it replaces the old file.

Re-running is safe: a box that already holds a certificate for its configured kiosk id from
its CA, valid for more than :data:`RENEW_BEFORE`, says so and exits 0 without using a token.
``aps-agent renew`` asks for a new certificate on the same TLS key (and, with
``--rotate-signing-key``, adds a new signing key), the request signed with the current one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pwd
import re
import socket
import ssl
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync.ca_pin import ca_pin
from sync.envelope_signing import sign
from sync.files import make_private_dir
from sync.identity_files import (
    create_private_key,
    load_private_key,
    public_key_from_text,
    public_key_text,
    write_public_keys,
)

__all__ = [
    "RENEW_BEFORE",
    "ProvisionError",
    "Provisioned",
    "edit_toml",
    "provision",
    "renew",
]

RENEW_BEFORE = dt.timedelta(days=30)
TOKEN_RE = re.compile(r"\A[a-z0-9]{6}\.[a-z0-9]{20}\.(?P<pin>sha256:[0-9a-f]{64})\Z")
MAX_ANSWER_BYTES = 64 * 1024
TIMEOUT_S = 15.0


class ProvisionError(Exception):
    """Provisioning failed; the message says why and what to do (central's reason included)."""


@dataclass(frozen=True)
class Provisioned:
    kiosk: str
    office: str
    slot: int
    agency: str
    broker: str
    not_after: dt.datetime
    files: dict[str, Path]
    config: Path
    already: bool = False

    def summary(self) -> str:
        head = "already provisioned" if self.already else "provisioned"
        lines = [
            f"{head}: kiosk {self.kiosk}",
            f"  office       {self.office} (agency {self.agency}), slot {self.slot}",
            f"  broker       {self.broker} (mutual TLS)",
            f"  certificate  valid until {self.not_after:%Y-%m-%d %H:%M} UTC",
            f"  config       {self.config}",
        ]
        lines += [f"  {name:<12} {path}" for name, path in self.files.items()]
        return "\n".join(lines)


# -- files -------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def tls_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The box's TLS key: made once (0600, ``O_EXCL``), loaded ever after."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return _load_tls_key(path)
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        os.write(
            fd,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def _load_tls_key(path: Path) -> ec.EllipticCurvePrivateKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ProvisionError(
            f"{path} is readable by others (mode {oct(mode)}); run: chmod 600 {path}"
        )
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ProvisionError(f"{path} is not an EC private key; move it away and re-run")
    return key


def make_csr(key: ec.EllipticCurvePrivateKey, name: str) -> str:
    """A CSR for ``key`` (its subject is a hint only: central sets the certificate's)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64] or "kiosk")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


# -- agent.toml, edited in place ---------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*\[([A-Za-z0-9_.-]+)\]\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _toml_value(value: str | int | Path) -> str:
    if isinstance(value, bool):
        raise TypeError("booleans are not written by provisioning")
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def edit_toml(text: str, changes: dict[str, dict[str, str | int | Path]]) -> str:
    """``text`` with each ``[section] key = value`` in ``changes`` set, all else kept.

    A key already in its section has its line replaced, a missing one is added at the end of
    the section, a missing section is appended. The result is parsed back and checked.
    """
    lines = text.splitlines()
    for section, values in changes.items():
        start = next(
            (
                i
                for i, line in enumerate(lines)
                if (m := _HEADER_RE.match(line)) and m[1] == section
            ),
            None,
        )
        if start is None:
            if lines and lines[-1].strip():
                lines.append("")
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            continue
        end = next(
            (i for i in range(start + 1, len(lines)) if _HEADER_RE.match(lines[i])), len(lines)
        )
        pending = dict(values)
        for i in range(start + 1, end):
            match = _KEY_RE.match(lines[i])
            if match and match[1] in pending:
                lines[i] = f"{match[1]} = {_toml_value(pending.pop(match[1]))}"
        insert_at = end
        while insert_at > start + 1 and not lines[insert_at - 1].strip():
            insert_at -= 1
        lines[insert_at:insert_at] = [f"{k} = {_toml_value(v)}" for k, v in pending.items()]
    out = "\n".join(lines) + "\n"
    try:
        parsed = tomllib.loads(out)
    except tomllib.TOMLDecodeError as exc:
        raise ProvisionError(
            f"the config could not be edited ({exc}); fix the file's TOML and re-run"
        ) from None
    for section, values in changes.items():
        for key, value in values.items():
            want = value if isinstance(value, int) else str(value)
            if parsed.get(section, {}).get(key) != want:
                raise ProvisionError(
                    f"the config could not be edited: [{section}] {key} did not take (a "
                    "multi-line value or a dotted key?); set it by hand and re-run"
                )
    return out


# -- talking to central ------------------------------------------------------------------


def _error_text(response: httpx.Response) -> str:
    try:
        err = response.json()["error"]
        return f"{err['message']} ({err['code']}, HTTP {response.status_code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


def _fetch_pinned_ca(central: str, pin: str) -> bytes:
    """The CA from central, accepted only if it matches the token's pin."""
    url = central.rstrip("/") + "/v1/enrol/ca"
    try:
        # Unverified on purpose: what comes back is checked against the pin before use.
        response = httpx.get(url, verify=False, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise ProvisionError(f"central {central} cannot be reached: {exc}") from None
    if response.status_code != 200:
        raise ProvisionError(f"central refused to give its CA: {_error_text(response)}")
    data = response.content[:MAX_ANSWER_BYTES]
    try:
        ca = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ProvisionError(f"{url} did not answer with a PEM certificate") from None
    if ca_pin(ca) != pin:
        raise ProvisionError(
            f"the server at {central} is not the central that issued this token: its CA's pin "
            f"is {ca_pin(ca)}, the token says {pin}. Check the URL; do not continue on this "
            "network until the admin has confirmed the pin"
        )
    return data


def _client(ca_file: Path) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca_file))
    return httpx.Client(verify=context, timeout=TIMEOUT_S)


def _post(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise ProvisionError(
            f"central at {url} cannot be reached over verified TLS: {exc}"
        ) from None
    if response.status_code != 200:
        raise ProvisionError(f"central refused: {_error_text(response)}")
    answer = response.json()
    if not isinstance(answer, dict):
        raise ProvisionError("central's answer is not a JSON object")
    return answer


def _machine_id() -> str:
    try:
        text = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    except OSError:
        return ""
    return text if re.fullmatch(r"[0-9a-f]{32}", text) else ""


def _hostname() -> str:
    name = socket.gethostname()
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,63}", name) else ""


# -- provision ---------------------------------------------------------------------------


def _paths(state_dir: Path) -> dict[str, Path]:
    return {
        "tls key": state_dir / "tls.key",
        "certificate": state_dir / "tls.crt",
        "CA": state_dir / "ca.crt",
        "signing key": state_dir / "signing.key",
        "central keys": state_dir / "central-keys.json",
    }


def _current(config: Path) -> Provisioned | None:
    """What this box already is, if its config, certificate and CA agree and are valid."""
    if not config.exists():
        return None
    try:
        doc = tomllib.loads(config.read_text(encoding="utf-8"))
        kiosk, mqtt, ident = doc["kiosk"], doc["mqtt"], doc["identity"]
        cert = x509.load_pem_x509_certificate(Path(mqtt["tls_cert"]).read_bytes())
        ca = x509.load_pem_x509_certificate(Path(mqtt["tls_ca"]).read_bytes())
        cert.verify_directly_issued_by(ca)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        key_path = Path(mqtt["tls_key"])
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (OSError, KeyError, IndexError, TypeError, ValueError, InvalidSignature):
        return None  # not (fully) provisioned: provision
    if cn != kiosk.get("id") or key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return None
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return None
    files = {
        "tls key": key_path,
        "certificate": Path(mqtt["tls_cert"]),
        "CA": Path(mqtt["tls_ca"]),
    }
    if ident.get("signing_key"):
        files["signing key"] = Path(ident["signing_key"])
    if ident.get("central_keys"):
        files["central keys"] = Path(ident["central_keys"])
    return Provisioned(
        kiosk=kiosk["id"],
        office=str(ident.get("office", "")),
        slot=int(kiosk.get("slot", 0)),
        agency=str(kiosk.get("agency", "")),
        broker=f"{mqtt.get('host')}:{mqtt.get('port')}",
        not_after=cert.not_valid_after_utc,
        files=files,
        config=config,
        already=True,
    )


def _apply(
    answer: dict[str, Any], files: dict[str, Path], config: Path, central: str
) -> Provisioned:
    """Write what central answered: certificate, CA, central's keys, the config."""
    try:
        cert = x509.load_pem_x509_certificate(str(answer["certificate"]).encode("ascii"))
        ca_pem = str(answer["ca"]).encode("ascii")
        x509.load_pem_x509_certificate(ca_pem)
        keys = [public_key_from_text(k["public"]) for k in answer["central_keys"]["keys"]]
        kiosk, office = str(answer["kiosk"]), str(answer["office"])
        slot, agency = int(answer["slot"]), str(answer["agency"])
        broker = answer["broker"]
        host, port = str(broker["host"]), int(broker["port"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvisionError(f"central's answer is incomplete or malformed ({exc})") from None
    _atomic_write(files["certificate"], cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _atomic_write(files["CA"], ca_pem, 0o644)
    write_public_keys(files["central keys"], keys)
    old = config.read_text(encoding="utf-8") if config.exists() else ""
    text = edit_toml(
        old,
        {
            "kiosk": {"id": kiosk, "agency": agency, "slot": slot},
            "mqtt": {
                "host": host,
                "port": port,
                "tls_ca": files["CA"],
                "tls_cert": files["certificate"],
                "tls_key": files["tls key"],
            },
            "identity": {
                "office": office,
                "central_url": str(answer.get("central_url") or central),
                "signing_key": files["signing key"],
                "central_keys": files["central keys"],
            },
        },
    )
    _check_config(text, config)
    mode = (config.stat().st_mode & 0o777) if config.exists() else 0o640
    _atomic_write(config, text.encode("utf-8"), mode)
    return Provisioned(
        kiosk=kiosk,
        office=office,
        slot=slot,
        agency=agency,
        broker=f"{host}:{port}",
        not_after=cert.not_valid_after_utc,
        files=files,
        config=config,
    )


def _check_config(text: str, config: Path) -> None:
    from edge_agent.config import load_agent_config
    from sync.config import ConfigError

    config.parent.mkdir(parents=True, exist_ok=True)
    probe = config.with_name(f".{config.name}.check")
    try:
        _atomic_write(probe, text.encode("utf-8"), 0o600)
        load_agent_config(probe)
    except ConfigError as exc:
        raise ProvisionError(
            f"the provisioned config would not load, so {config} was left as it was: {exc}"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            probe.unlink()


def provision(
    central: str,
    token: str | None,
    *,
    config: Path,
    state_dir: Path,
) -> Provisioned:
    """Provision this box (see the module docstring); idempotent."""
    current = _current(config)
    if current is not None:
        return current
    if not token:
        raise ProvisionError(
            "this box is not provisioned yet: give --token (from `aps-central enroll create`)"
        )
    match = TOKEN_RE.match(token.strip())
    if match is None:
        raise ProvisionError(
            "--token: expected <id>.<secret>.sha256:<64 hex> exactly as `aps-central enroll "
            "create` printed it"
        )
    if not central.startswith("https://"):
        raise ProvisionError(f"--central {central!r}: give central's https:// address")
    make_private_dir(state_dir)
    files = _paths(state_dir)
    key = tls_key(files["tls key"])
    signing, _created = create_private_key(files["signing key"])
    ca_pem = _fetch_pinned_ca(central, match["pin"])
    _atomic_write(files["CA"], ca_pem, 0o644)
    body = {
        "token": token.strip(),
        "csr": make_csr(key, _hostname()),
        "signing_key": public_key_text(signing.public_key()),
        "hostname": _hostname(),
        "machine_id": _machine_id(),
    }
    with _client(files["CA"]) as client:
        answer = _post(client, central.rstrip("/") + "/v1/enrol", body)
    return _apply(answer, files, config, central)


def renew(config: Path, *, rotate_signing_key: bool = False) -> Provisioned:
    """A new certificate for the same TLS key, the request signed with the current key."""
    try:
        doc = tomllib.loads(config.read_text(encoding="utf-8"))
        kiosk, mqtt, ident = doc["kiosk"]["id"], doc["mqtt"], doc["identity"]
        central = str(ident["central_url"])
        files = {
            "tls key": Path(mqtt["tls_key"]),
            "certificate": Path(mqtt["tls_cert"]),
            "CA": Path(mqtt["tls_ca"]),
            "signing key": Path(ident["signing_key"]),
            "central keys": Path(ident["central_keys"]),
        }
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(
            f"{config} is not a provisioned config ({exc}); run `aps-agent provision` first"
        ) from None
    current = load_private_key(files["signing key"])
    body: dict[str, Any] = {
        "v": 1,
        "kiosk": kiosk,
        "csr": make_csr(tls_key(files["tls key"]), kiosk),
        "at": int(time.time()),
    }
    new_path: Path | None = None
    if rotate_signing_key:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        new_path = files["signing key"].with_name(f"signing-{stamp}.key")
        new_key, _ = create_private_key(new_path)
        body["signing_key"] = public_key_text(new_key.public_key())
    signed = sign("aps-enrol-v1", body, current)
    with _client(files["CA"]) as client:
        answer = _post(client, central.rstrip("/") + "/v1/enrol/renew", signed)
    if new_path is not None:
        files["signing key"] = new_path
    return _apply(answer, files, config, central)


# -- handing the files to the service account ----------------------------------------------


def hand_over(done: Provisioned, service_user: str) -> str | None:
    """Give the keys to the account the agent runs as, and it read access to the config.

    ``aps-agent provision`` runs as root (``sudo``); the agent runs as ``aps``
    (systemd/aps-agent.service, ``User=aps``), which must read its own private keys (0600)
    and the config (0640 root:aps) and nothing more. As root: the state directory and every
    file in ``done.files`` become the service account's, the config ``root:<its group>``
    0640. Not root: the files are already the caller's; nothing to do. Returns the line the
    summary prints, or None when nothing was changed.
    """
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(service_user)
    except KeyError:
        return (
            f"  note         no account {service_user!r} here: the files stay root's; run the "
            "installer (it makes the account), then provision again"
        )
    uid, gid = account.pw_uid, account.pw_gid
    dirs = {path.parent for path in done.files.values()}
    for path in [*sorted(dirs), *done.files.values()]:
        os.chown(path, uid, gid)
    os.chown(done.config, 0, gid)
    os.chmod(done.config, 0o640)
    return f"  owner        {service_user} (keys, certificates); config root:{service_user} 0640"
