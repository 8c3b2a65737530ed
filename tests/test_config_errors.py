"""Configuration errors (item 15): each one a clear message naming the file or key and the fix.

Every case runs through both command lines (``aps-agent`` and ``aps-central``
share the loader) via ``check-config``, which must fail exactly where ``run``
would.
"""

from __future__ import annotations

import errno
import os
import ssl
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from central.cli import main as central_cli
from edge_agent.cli import main as agent_cli

KIOSK = '[kiosk]\nid = "k01"\nagency = "000.00.14.H56"\nslot = 1\n'
CLIS: dict[str, click.Group] = {"agent": agent_cli, "central": central_cli}


def minimal(role: str, tmp_path: Path) -> str:
    """A valid file whose databases live under ``tmp_path`` (``run`` must never touch /var)."""
    if role == "agent":
        return (
            KIOSK + f'[agent]\ndatabase = "{tmp_path}/kiosk.db"\n'
            f'receipts_dir = "{tmp_path}/receipts"\n'
            # The office's own account: the placeholder default is warned about.
            '[payment]\nbank_bin = "970436"\naccount = "0011002345678"\n'
        )
    return f'[central]\ndatabase = "{tmp_path}/central.db"\n'


def check(role: str, path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(CLIS[role], ["check-config", "--config", str(path)])
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), f"a raw exception escaped: {result.exception!r}"
    return result.exit_code, result.output


@pytest.fixture(params=["agent", "central"])
def role(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_non_utf8_file_names_the_file_the_place_and_the_fix(tmp_path: Path, role: str) -> None:
    cfg = tmp_path / "cfg.toml"
    # Saved in Windows-1258 by an editor: "Bộ phận" is not UTF-8.
    cfg.write_bytes(minimal(role, tmp_path).encode() + '[x]\ny = "Bộ phận"\n'.encode("utf-16-le"))
    code, out = check(role, cfg)
    assert code != 0
    assert str(cfg) in out and "not UTF-8" in out and "line" in out and "save it as UTF-8" in out


def test_binary_file_is_refused_without_a_traceback(tmp_path: Path, role: str) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    code, out = check(role, cfg)
    assert code != 0 and str(cfg) in out and "not UTF-8" in out
    nul = tmp_path / "nul.toml"
    nul.write_bytes(b"\x00" * 64)
    code, out = check(role, nul)
    assert code != 0 and str(nul) in out and "not valid TOML" in out


def test_a_directory_or_a_device_is_not_a_configuration_file(tmp_path: Path, role: str) -> None:
    code, out = check(role, tmp_path)
    assert code != 0 and str(tmp_path) in out and "is a directory" in out and "--config" in out
    code, out = check(role, Path("/dev/null"))
    assert code != 0 and "/dev/null" in out and "not a regular file" in out


def test_huge_file_is_refused(tmp_path: Path, role: str) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        minimal(role, tmp_path) + "# " + "x" * (2 * 1024 * 1024) + "\n", encoding="utf-8"
    )
    code, out = check(role, cfg)
    assert code != 0 and str(cfg) in out and "larger than" in out


def test_unreadable_file_names_the_file_and_the_fix(
    tmp_path: Path, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(minimal(role, tmp_path), encoding="utf-8")
    cfg.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the read fail as it does for others
        real_open = os.open

        def deny(path: str, flags: int, *args: int, **kwargs: int) -> int:
            if os.fspath(path) == str(cfg):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(cfg))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", deny)
    code, out = check(role, cfg)
    assert code != 0 and str(cfg) in out and "permission denied" in out.lower()
    assert "chmod" in out or "chown" in out


def test_missing_file_says_not_found(tmp_path: Path, role: str) -> None:
    code, out = check(role, tmp_path / "nope.toml")
    assert code != 0 and "nope.toml" in out and "not found" in out and "--config" in out


@pytest.mark.parametrize("zone", ["Asia/Hanoi", "../../etc/passwd", ""])
def test_bad_time_zone_fails_check_config(tmp_path: Path, zone: str) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(KIOSK + f'timezone = "{zone}"\n', encoding="utf-8")
    code, out = check("agent", cfg)
    assert code != 0
    assert str(cfg) in out and "kiosk.timezone" in out and "Asia/Ho_Chi_Minh" in out


def make_tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    key, cert = tmp_path / "k.key", tmp_path / "k.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=k01",
        ],
        check=True,
        capture_output=True,
    )
    return cert, cert, key  # self-signed: the certificate is its own CA


@pytest.mark.parametrize("key", ["tls_ca", "tls_cert", "tls_key"])
def test_missing_tls_file_fails_check_config_and_run_with_its_name(
    tmp_path: Path, role: str, key: str
) -> None:
    ca, cert, pkey = make_tls_files(tmp_path)
    files = {"tls_ca": ca, "tls_cert": cert, "tls_key": pkey}
    files[key] = tmp_path / "missing" / f"{key}.pem"
    mqtt = "".join(f'{k} = "{v}"\n' for k, v in files.items())
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(minimal(role, tmp_path) + "[mqtt]\nport = 8883\n" + mqtt, encoding="utf-8")
    code, out = check(role, cfg)
    assert code != 0
    assert f"mqtt.{key}" in out and str(files[key]) in out and "does not exist" in out
    run = CliRunner().invoke(CLIS[role], ["run", "--config", str(cfg)])
    assert run.exit_code != 0 and f"mqtt.{key}" in run.output and str(files[key]) in run.output


def test_tls_files_that_are_not_certificates_are_named(tmp_path: Path, role: str) -> None:
    ca, cert, pkey = make_tls_files(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n", encoding="utf-8")
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        minimal(role, tmp_path)
        + f'[mqtt]\ntls_ca = "{junk}"\ntls_cert = "{cert}"\ntls_key = "{pkey}"\n',
        encoding="utf-8",
    )
    code, out = check(role, cfg)
    assert code != 0 and "mqtt.tls_ca" in out and str(junk) in out
    cfg.write_text(
        minimal(role, tmp_path)
        + f'[mqtt]\ntls_ca = "{ca}"\ntls_cert = "{cert}"\ntls_key = "{junk}"\n',
        encoding="utf-8",
    )
    code, out = check(role, cfg)
    assert code != 0 and "mqtt.tls_key" in out and str(junk) in out


def test_tls_pair_that_loads_passes(tmp_path: Path, role: str) -> None:
    ca, cert, pkey = make_tls_files(tmp_path)
    ssl.create_default_context(cafile=str(ca)).load_cert_chain(str(cert), str(pkey))  # sanity
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        minimal(role, tmp_path)
        + f'[mqtt]\nhost = "mqtt.example.vn"\nport = 8883\nusername = "k01"\npassword = "pw"\n'
        f'tls_ca = "{ca}"\ntls_cert = "{cert}"\ntls_key = "{pkey}"\n',
        encoding="utf-8",
    )
    cfg.chmod(0o600)
    code, out = check(role, cfg)
    assert code == 0, out
    assert "warning:" not in out.lower()  # a warning line, not the key idle_warning_s


def test_key_or_cert_without_the_rest_of_tls_is_refused(tmp_path: Path, role: str) -> None:
    _, cert, pkey = make_tls_files(tmp_path)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(minimal(role, tmp_path) + f'[mqtt]\ntls_cert = "{cert}"\n', encoding="utf-8")
    code, out = check(role, cfg)
    assert code != 0 and "mqtt.tls_cert" in out and "mqtt.tls_ca" in out
    cfg.write_text(minimal(role, tmp_path) + f'[mqtt]\ntls_key = "{pkey}"\n', encoding="utf-8")
    code, out = check(role, cfg)
    assert code != 0 and "mqtt.tls_key" in out and "mqtt.tls_cert" in out


def test_check_config_never_prints_the_mqtt_password(tmp_path: Path, role: str) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        minimal(role, tmp_path) + '[mqtt]\nusername = "k01"\npassword = "Tr0ub4dor&3-s3cret"\n',
        encoding="utf-8",
    )
    code, out = check(role, cfg)
    assert code == 0, out
    assert "Tr0ub4dor" not in out
    assert '"password": "**********"' in out


def test_password_without_tls_to_another_host_is_refused_unless_allowed(
    tmp_path: Path, role: str
) -> None:
    cfg = tmp_path / "cfg.toml"
    body = (
        minimal(role, tmp_path) + '[mqtt]\nhost = "10.20.0.5"\nusername = "k01"\npassword = "pw"\n'
    )
    cfg.write_text(body, encoding="utf-8")
    code, out = check(role, cfg)
    assert code != 0
    assert str(cfg) in out and "mqtt.password" in out and "mqtt.tls_ca" in out
    assert "allow_plaintext_password" in out
    cfg.write_text(body + "allow_plaintext_password = true\n", encoding="utf-8")
    code, out = check(role, cfg)
    assert code == 0, out
    assert "warning" in out.lower() and "in clear text" in out and "10.20.0.5" in out


def test_password_without_tls_on_loopback_is_accepted_quietly(tmp_path: Path, role: str) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        minimal(role, tmp_path) + '[mqtt]\nhost = "127.0.0.1"\nusername = "k01"\npassword = "pw"\n',
        encoding="utf-8",
    )
    cfg.chmod(0o640)
    code, out = check(role, cfg)
    assert code == 0, out
    assert "warning:" not in out.lower()  # a warning line, not the key idle_warning_s


def test_password_in_a_world_readable_file_is_warned_about(tmp_path: Path, role: str) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        minimal(role, tmp_path) + '[mqtt]\nusername = "k01"\npassword = "pw"\n',
        encoding="utf-8",
    )
    cfg.chmod(0o644)
    code, out = check(role, cfg)
    assert code == 0, out
    assert "warning" in out and str(cfg) in out and "mqtt.password" in out
    assert f"chmod 640 {cfg}" in out
