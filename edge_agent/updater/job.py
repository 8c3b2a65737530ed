"""The ``update`` job kind: central's rollout orders a box to take a release.

Registered on the agent's job runner (edge_agent/services/jobs.py), which runs it only when
no citizen is in a session and reports its outcome durably. Args: ``version`` and
``manifest_url``. Two ways to carry it out, by who may write the install layout:

- **hand-over** (the production box: the agent runs unprivileged under ProtectSystem=strict
  and cannot write /opt/aps): the order is written to ``<state_dir>/request.json``
  (atomically); systemd's ``aps-update.path`` sees it and starts the root one-shot
  ``aps-update.service``, which runs ``aps-agent update apply --from-request`` and restarts
  the agent. The job succeeds with ``{"requested": version}``; the update's own progress
  (downloading ... committed / rolled-back) is the heartbeat's ``update``.
- **in process** (the layout is writable: a development box): the agent applies the update
  itself and, once the job's success is reported, exits for the restart. ``[update]
  hand_over = "always"`` hands over even then (tests/test_update_e2e.py drives the
  production path so, as the same user as its stand-in for aps-update.service).

The request is removed by ``aps-agent update apply --from-request`` once the update has
settled (switched, failed, or nothing to do), not when it is read: an apply cut short (a
power cut) runs again from the request at the next start of aps-update.path and resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from edge_agent.updater import UpdateError
from edge_agent.updater.apply import UpdaterSettings, apply_update
from edge_agent.updater.machine import State
from sync.identity_files import load_public_keys
from sync.release_manifest import is_version

KIND = "update"
REQUEST = "request.json"


def check_args(args: dict[str, str], central_url: str = "") -> tuple[str, str]:
    """(version, absolute manifest URL); a path (what rollouts send) is joined to
    ``central_url``, the ``[identity] central_url`` the box was provisioned from."""
    version = args.get("version", "")
    url = args.get("manifest_url", "")
    if url.startswith("/v1/releases/") and central_url:
        url = urljoin(central_url, url)
    if not is_version(version):
        raise ValueError(f"version: {version[:40]!r} is not a release version (such as 0.2.0)")
    if not url.startswith(("https://", "http://")) or not url.endswith("/manifest.json"):
        raise ValueError("manifest_url: expected central's http(s) URL ending /manifest.json")
    return version, url


def write_request(state_dir: Path, version: str, url: str) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / REQUEST
    tmp = state_dir / f".{REQUEST}.tmp"
    tmp.write_text(json.dumps({"v": 1, "version": version, "manifest_url": url}) + "\n")
    os.replace(tmp, path)
    return path


def read_request(path: Path) -> tuple[str, str]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UpdateError("request", f"{path}: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != 1:
        raise UpdateError("request", f"{path}: not an update request")
    try:
        return check_args(
            {"version": str(obj.get("version")), "manifest_url": str(obj.get("manifest_url"))}
        )
    except ValueError as exc:
        raise UpdateError("request", f"{path}: {exc}") from None


def update_handler(
    settings: UpdaterSettings,
    *,
    central_keys: Path,
    verify: Any,
    request_restart: Callable[[], None],
    writable: Callable[[], bool] | None = None,
    central_url: str = "",
) -> Callable[[dict[str, str], Callable[[str, str | None], None]], Any]:
    """The handler for the job runner (``runner.register("update", ...)``)."""
    from edge_agent.services.jobs import ThenDo

    def can_write() -> bool:
        return os.access(settings.prefix, os.W_OK) and os.access(
            settings.prefix / "releases", os.W_OK
        )

    def handle(args: dict[str, str], report: Callable[[str, str | None], None]) -> Any:
        version, url = check_args(args, central_url)
        if not (writable or can_write)():
            path = write_request(settings.state_path.parent, version, url)
            report("handed-over", f"{path} for aps-update.service")
            return {"requested": version}
        keys = load_public_keys(central_keys)
        report("applying", url)
        with httpx.Client(verify=verify, timeout=httpx.Timeout(30.0, connect=10.0)) as client:
            done = apply_update(url, settings=settings, keys=keys, client=client)
        if done.state.state is State.FAILED:
            raise RuntimeError(done.message)
        result = {"version": version, "state": done.state.state.value}
        return ThenDo(result, request_restart) if done.restart else result

    return handle


def register_update_job(app: Any) -> bool:
    """Register ``update`` on ``app.jobs`` (KioskApp with the job runner); False without."""
    jobs = getattr(app, "jobs", None)
    if jobs is None or app.cfg.identity.central_keys is None:
        return False
    from edge_agent.host_checks import tls_context
    from edge_agent.updater.cli import settings_of

    jobs.register(
        KIND,
        update_handler(
            settings_of(app.cfg),
            central_keys=app.cfg.identity.central_keys,
            verify=tls_context(app.cfg),
            request_restart=getattr(app, "request_restart", lambda: None),
            # [update] hand_over = "always": hand over even where the layout is writable
            writable=(lambda: False) if app.cfg.update.hand_over == "always" else None,
            central_url=app.cfg.identity.central_url,
        ),
    )
    return True
