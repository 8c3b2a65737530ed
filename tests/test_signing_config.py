"""Central's [signing] section: validated at start, errors name the key, the secret never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.cli import main as central_cli
from central.config import load_central_config
from central.signing import CscProvider, SmartCaProvider, build_provider
from sync.config import ConfigError

SECRET = "Sp-pa55word-of-the-office"


def write(tmp_path: Path, signing: str) -> Path:
    cfg = tmp_path / "central.toml"
    cfg.write_text(
        f'[central]\ndatabase = "{tmp_path}/central.db"\n[signing]\n{signing}', encoding="utf-8"
    )
    return cfg


def test_default_is_off_and_builds_no_provider(tmp_path: Path) -> None:
    cfg = load_central_config(write(tmp_path, ""))
    assert cfg.signing.provider == "none"
    assert build_provider(cfg.signing.settings()) is None


@pytest.mark.parametrize(("kind", "cls"), [("smartca", SmartCaProvider), ("csc", CscProvider)])
def test_a_complete_section_builds_its_adapter(tmp_path: Path, kind: str, cls: type) -> None:
    cfg = load_central_config(
        write(
            tmp_path,
            f'provider = "{kind}"\nbase_url = "https://sca.example.vn/sp"\n'
            f'client_id = "sp-01"\nclient_secret = "{SECRET}"\nrequest_timeout_s = 10\n',
        )
    )
    settings = cfg.signing.settings()
    assert settings.client_secret == SECRET and settings.request_timeout_s == 10
    provider = build_provider(settings)
    assert isinstance(provider, cls)
    provider.close()
    assert SECRET not in repr(cfg) and SECRET not in cfg.model_dump_json()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('provider = "smartca"\n', ["signing.base_url", "signing.client_id", "client_secret"]),
        (
            'provider = "csc"\nbase_url = "https://x.vn"\nclient_id = "a"\n',
            ["signing.client_secret"],
        ),
        (
            f'provider = "csc"\nbase_url = "http://sca.example.vn"\nclient_id = "a"\n'
            f'client_secret = "{SECRET}"\n',
            ["plain http", "https"],
        ),
        (
            f'provider = "csc"\nbase_url = "ftp://x"\nclient_id = "a"\n'
            f'client_secret = "{SECRET}"\n',
            ["not an http(s) URL"],
        ),
        ('provider = "mysign"\n', ["signing.provider"]),
        ("request_timeout_s = 0\n", ["signing.request_timeout_s"]),
        ("max_outstanding_per_kiosk = 0\n", ["signing.max_outstanding_per_kiosk"]),
        ("secret = 1\n", ["signing.secret", "unknown key"]),
    ],
)
def test_bad_sections_name_the_key_and_the_fix(tmp_path: Path, body: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_central_config(write(tmp_path, body))
    text = str(err.value)
    for word in words:
        assert word in text, text
    assert SECRET not in text


def test_plain_http_is_accepted_on_loopback(tmp_path: Path) -> None:
    cfg = load_central_config(
        write(
            tmp_path,
            'provider = "smartca"\nbase_url = "http://127.0.0.1:8099"\nclient_id = "a"\n'
            f'client_secret = "{SECRET}"\n',
        )
    )
    assert cfg.signing.base_url == "http://127.0.0.1:8099"


def test_check_config_never_prints_the_client_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'provider = "csc"\nbase_url = "https://x.vn"\nclient_id = "a"\n'
        f'client_secret = "{SECRET}"\n',
    )
    result = CliRunner().invoke(central_cli, ["check-config", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert '"client_secret": "**********"' in result.output


def test_signing_try_runs_the_round_trip_against_the_mock(tmp_path: Path) -> None:
    from firmware_mocks.signing_provider import MockSigningProvider

    with MockSigningProvider(auto_decision="approve") as mock:
        path = write(
            tmp_path,
            f'provider = "csc"\nbase_url = "{mock.base_url}"\nclient_id = "{mock.client_id}"\n'
            f'client_secret = "{mock.client_secret}"\n',
        )
        args = ["signing", "try", "--config", str(path), "--id-number", "001099012345"]
        result = CliRunner().invoke(central_cli, [*args, "--interval-s", "0.1"])
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.output.splitlines()]
        assert lines[0]["step"] == "start" and lines[-1]["state"] == "signed"
        assert mock.client_secret not in result.output
        mock.auto_decision = "reject"
        result = CliRunner().invoke(central_cli, [*args, "--interval-s", "0.1"])
        assert result.exit_code == 1
        assert json.loads(result.output.splitlines()[-1])["state"] == "rejected"
