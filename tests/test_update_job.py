"""The ``update`` job kind on the agent's job registry: hand-over and in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.services.jobs import JobRegistry
from edge_agent.updater import UpdateError
from edge_agent.updater.apply import UpdaterSettings
from edge_agent.updater.job import KIND, read_request, update_handler
from sync.identity_files import write_public_keys
from tests.update_layout import fake_release, point_current


def _settings(tmp: Path) -> UpdaterSettings:
    prefix = tmp / "opt"
    fake_release(prefix, "0.1.0")
    point_current(prefix, "0.1.0")
    return UpdaterSettings(
        prefix=prefix, state_path=tmp / "var" / "state.json", downloads=tmp / "var" / "dl"
    )


def _keys(tmp: Path) -> Path:
    path = tmp / "central_keys.json"
    write_public_keys(path, [Ed25519PrivateKey.generate().public_key()], serial=0)
    return path


def test_an_unprivileged_agent_hands_the_order_over(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    registry = JobRegistry()
    registry.register(
        KIND,
        update_handler(
            s,
            central_keys=_keys(tmp_path),
            verify=True,
            request_restart=lambda: None,
            writable=lambda: False,
        ),
    )
    steps: list[tuple[str, str | None]] = []
    handler = registry.get(KIND)
    assert handler is not None
    url = "https://central.example/v1/releases/0.2.0/manifest.json"
    result = handler(
        {"version": "0.2.0", "manifest_url": url}, lambda step, detail: steps.append((step, detail))
    )
    assert result == {"requested": "0.2.0"}
    assert read_request(s.state_path.parent / "request.json") == ("0.2.0", url)
    assert steps[0][0] == "handed-over"
    assert s.layout.running_version() == "0.1.0"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"version": "latest", "manifest_url": "https://c/v1/releases/x/manifest.json"}, "version"),
        ({"version": "0.2.0", "manifest_url": "file:///etc/passwd"}, "manifest_url"),
        ({"version": "0.2.0"}, "manifest_url"),
    ],
)
def test_bad_args_fail_the_job_naming_the_field(tmp_path: Path, args: dict, field: str) -> None:
    handler = update_handler(
        _settings(tmp_path),
        central_keys=_keys(tmp_path),
        verify=True,
        request_restart=lambda: None,
        writable=lambda: False,
    )
    with pytest.raises(ValueError, match=f"^{field}:"):
        handler(args, lambda s, d: None)


def test_in_process_a_refused_manifest_fails_the_job(tmp_path: Path) -> None:
    handler = update_handler(
        _settings(tmp_path),
        central_keys=_keys(tmp_path),
        verify=True,
        request_restart=lambda: None,
        writable=lambda: True,
    )
    with pytest.raises(UpdateError, match="downloading"):
        handler(
            {
                "version": "0.2.0",
                "manifest_url": "http://127.0.0.1:9/v1/releases/0.2.0/manifest.json",
            },
            lambda s, d: None,
        )


def test_a_damaged_request_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "request.json"
    bad.write_text('{"v": 1, "version": "../x"}')
    with pytest.raises(UpdateError, match="version"):
        read_request(bad)


def test_a_rollouts_path_is_joined_to_the_provisioned_central(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    handler = update_handler(
        s,
        central_keys=_keys(tmp_path),
        verify=True,
        request_restart=lambda: None,
        writable=lambda: False,
        central_url="https://central.example:8443",
    )
    handler(
        {"version": "0.2.0", "manifest_url": "/v1/releases/0.2.0/manifest.json"}, lambda st, d: None
    )
    assert read_request(s.state_path.parent / "request.json")[1] == (
        "https://central.example:8443/v1/releases/0.2.0/manifest.json"
    )


def test_register_update_job_needs_a_job_runner_and_central_keys(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edge_agent.updater.job import register_update_job

    assert register_update_job(SimpleNamespace()) is False  # an app without a job runner
    registry = JobRegistry()
    cfg = SimpleNamespace(
        identity=SimpleNamespace(central_keys=_keys(tmp_path), central_url="https://c"),
        update=SimpleNamespace(
            prefix=tmp_path, state_dir=tmp_path / "u", trial_s=60.0, hand_over="auto"
        ),
        mqtt=SimpleNamespace(tls_ca=None),
    )
    app = SimpleNamespace(jobs=registry, cfg=cfg, request_restart=lambda: None)
    assert register_update_job(app) is True
    assert KIND in registry.kinds()
