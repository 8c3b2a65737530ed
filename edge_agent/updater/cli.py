"""``aps-agent update``: apply a release by hand, see where an update stands, clear it.

Thin over :mod:`edge_agent.updater.apply`; run as root (``sudo aps-agent update ...``): the
release directories and the ``current`` link belong to root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import click
import httpx

from edge_agent.config import AgentConfig
from edge_agent.updater import UpdateError, state_file
from edge_agent.updater.apply import Applied, UpdaterSettings, apply_update
from edge_agent.updater.machine import Event, IllegalTransition, advance
from sync.identity_files import KeyFileError, load_public_keys

DEFAULT_CONFIG = "/etc/aps/agent.toml"


def settings_of(cfg: AgentConfig) -> UpdaterSettings:
    return UpdaterSettings(
        prefix=cfg.update.prefix,
        state_path=cfg.update.state_dir / "state.json",
        downloads=cfg.update.state_dir / "downloads",
        trial_s=cfg.update.trial_s,
    )


def _load(path: str) -> AgentConfig:
    from edge_agent.cli import _load as load_config

    return load_config(path)


@click.group("update")
def update_group() -> None:
    """Software updates on this box (docs/updates.md)."""


@update_group.command("apply")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True)
@click.option("--manifest", "manifest_url", default=None, help="The release's manifest URL.")
@click.option(
    "--from-request",
    "request",
    type=click.Path(path_type=Path),
    default=None,
    help="Take version and manifest from this request file (aps-update.service).",
)
@click.option(
    "--restart-command",
    default="systemctl restart aps-agent.service",
    show_default=True,
    help="Run after the switch to start the new release's trial ('' : restart yourself).",
)
def apply_command(
    config_path: str, manifest_url: str | None, request: Path | None, restart_command: str
) -> None:
    """Download, verify, build and switch to the release at --manifest, then restart."""
    from edge_agent.updater.job import read_request

    cfg = _load(config_path)
    version: str | None = None
    if request is not None:
        if not request.exists():
            click.echo(f"no update request in {request}")
            return
        try:
            version, manifest_url = read_request(request)
        except UpdateError as exc:
            request.unlink(missing_ok=True)
            raise click.ClickException(str(exc)) from None
    keep = False  # the request stays only while the switch waits for a citizen's session
    try:
        done = _apply(cfg, manifest_url, version)
        keep = request is not None and done.waiting
    finally:
        if request is not None and not keep:
            # settled (switched, failed, nothing to do): a failure is reported in the state,
            # not retried in a loop; cut off before (a power cut), the next start resumes
            request.unlink(missing_ok=True)
    click.echo(done.message)
    if done.failed:
        sys.exit(1)
    if done.restart and restart_command:
        subprocess.run(restart_command.split(), check=False)


def session_in_use(listen: str, timeout_s: float = 3.0) -> bool:
    """A citizen is in a session at this box: the agent's local API (``[ui] listen``) says
    so (``GET /api/v1/session``, ``idle_left_s`` set: what holds the agent's jobs back).
    No local API configured, or none answering: no screen, so no citizen at it."""
    if not listen:
        return False
    try:
        with urllib.request.urlopen(f"http://{listen}/api/v1/session", timeout=timeout_s) as resp:
            obj = json.loads(resp.read(65536))
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and obj.get("idle_left_s") is not None


def _apply(cfg: AgentConfig, manifest_url: str | None, version: str | None) -> Applied:
    from edge_agent.host_checks import tls_context

    if manifest_url is None:
        raise click.ClickException("give --manifest URL (or --from-request FILE)")
    if cfg.identity.central_keys is None:
        raise click.ClickException("[identity] central_keys is not set: provision the box first")
    try:
        keys = load_public_keys(cfg.identity.central_keys)
    except KeyFileError as exc:
        raise click.ClickException(f"[identity] central_keys: {exc}") from None
    verify = tls_context(cfg) if manifest_url.startswith("https:") else True
    with httpx.Client(verify=verify, timeout=httpx.Timeout(30.0, connect=10.0)) as client:
        try:
            return apply_update(
                manifest_url,
                settings=settings_of(cfg),
                keys=keys,
                client=client,
                version=version,
                session_active=lambda: session_in_use(cfg.ui.listen),
                session_wait_s=cfg.update.session_wait_s,
            )
        except UpdateError as exc:
            raise click.ClickException(str(exc)) from None


@update_group.command("status")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True)
def status_command(config_path: str) -> None:
    """Print (JSON) the update's state, the running release and those on disk."""
    cfg = _load(config_path)
    s = settings_of(cfg)
    try:
        state = state_file.load(s.state_path).to_object()
    except state_file.StateFileError as exc:
        state = {"error": str(exc)}
    out = {
        "running": s.layout.running_version(),
        "installed": s.layout.installed(),
        "update": state,
    }
    click.echo(json.dumps(out, indent=2))


@update_group.command("clear")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True)
def clear_command(config_path: str) -> None:
    """After a technician fixed an ``inconsistent`` box: back to idle (or a damaged state
    file replaced by an idle one)."""
    cfg = _load(config_path)
    path: Path = settings_of(cfg).state_path
    try:
        state = state_file.load(path)
        new = advance(state, Event.CLEARED)
    except state_file.StateFileError:
        from edge_agent.updater.machine import UpdateState

        new = UpdateState()
    except IllegalTransition as exc:
        raise click.ClickException(f"{exc}: only an inconsistent update is cleared") from None
    state_file.save(path, new)
    click.echo(f"update state cleared; running {settings_of(cfg).layout.running_version()}")
