"""The update up to the restart: manifest, checks, download, build, switch (the I/O driver).

Each step feeds its outcome to the state machine (:mod:`.machine`) and persists the new
state before the next step starts, so an interrupted update resumes (``begin`` again) or
is reported as failed with the step and the reason. Up to the switch the running agent is
untouched. The switch and the restart happen only when no citizen is in a session
(``session_active``), and the restart itself is the caller's: the agent closes its outbox
and exits, and systemd's ``Restart=`` starts what ``current`` names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.updater import UpdateError, state_file
from edge_agent.updater.download import fetch_file
from edge_agent.updater.layout import Layout
from edge_agent.updater.machine import (
    SETTLED,
    Event,
    IllegalTransition,
    State,
    UpdateState,
    advance,
)
from sync.outbox import READABLE_SCHEMA_VERSIONS
from sync.release_manifest import Manifest, ManifestError, compare_versions, parse_manifest

log = logging.getLogger("aps.updater")

#: The new release must commit within this long after the switch, or the guard rolls back.
DEFAULT_TRIAL_S = 300.0


@dataclass(frozen=True, kw_only=True)
class UpdaterSettings:
    prefix: Path = Path("/opt/aps")
    state_path: Path = Path("/var/lib/aps/update/state.json")
    downloads: Path = Path("/var/lib/aps/update/downloads")
    trial_s: float = DEFAULT_TRIAL_S
    python: str = ""  # the interpreter new venvs are made with ("" : Debian's python3)

    @property
    def layout(self) -> Layout:
        return Layout(self.prefix)


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_update` did: ``restart`` is True when the box must restart now;
    ``failed`` when this call's update failed (the state says why); ``waiting`` when the
    release is built and its switch waits for a citizen's session to end (run again)."""

    state: UpdateState
    restart: bool
    message: str
    failed: bool = False
    waiting: bool = False


def fetch_manifest(
    client: httpx.Client, url: str, keys: Mapping[str, Ed25519PublicKey]
) -> Manifest:
    try:
        resp = client.get(url)
    except httpx.HTTPError as exc:
        raise UpdateError("downloading", f"GET {url}: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise UpdateError("downloading", f"GET {url} answered HTTP {resp.status_code}")
    try:
        return parse_manifest(resp.content, keys)
    except ManifestError as exc:
        raise UpdateError("verifying", str(exc)) from None


def check_compatible(manifest: Manifest, running: str) -> None:
    """Refuse a release this box must not take; the message names the rule and the fix."""
    if manifest.outbox_schema not in READABLE_SCHEMA_VERSIONS:
        raise UpdateError(
            "verifying",
            f"release {manifest.version} writes outbox schema {manifest.outbox_schema}, which "
            f"the running release {running} cannot read back (it reads "
            f"{sorted(READABLE_SCHEMA_VERSIONS)}): a rollback would strand queued records; "
            "publish an intermediate release that reads both first",
        )
    if compare_versions(running, manifest.min_rollback) < 0:
        raise UpdateError(
            "verifying",
            f"release {manifest.version} can roll back to {manifest.min_rollback} or newer; "
            f"this box runs {running}: roll out an intermediate release first",
        )


def apply_update(
    manifest_url: str,
    *,
    settings: UpdaterSettings,
    keys: Mapping[str, Ed25519PublicKey],
    client: httpx.Client,
    version: str | None = None,
    session_active: Callable[[], bool] = lambda: False,
    session_wait_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> Applied:
    """Take the box from the running release to the manifest's, up to the restart.

    Returns with ``restart`` True after the switch; raises nothing for a failed step (the
    state says ``failed`` with the step and reason), only :class:`UpdateError` when the
    update cannot even begin (another one on trial, an unreadable state file).

    ``version``: the release the order names (aps-update.service's request). With it, asking
    again for what runs already is a no-op (nothing fetched; a switch whose restart was
    lost asks for the restart again), a release built and waiting for its switch is switched
    without central, and a manifest that cannot be fetched or verified, or names another
    release, is a ``failed`` update of ``version`` (the heartbeat says so and the rollout
    counts it), not an error only the journal would see.

    ``session_active``: a citizen is in a session; the switch (and so the restart) waits for
    its end, polling every :data:`SESSION_POLL_S`, at most ``session_wait_s``; still in one
    after that, it returns with the state ``switching`` and ``restart`` False (run again).
    """
    layout = settings.layout
    try:
        current = state_file.load(settings.state_path)
    except state_file.StateFileError as exc:
        raise UpdateError("state", str(exc)) from None
    running = layout.running_version()
    if version is not None and version == running:
        if current.state is State.RESTARTING and current.version == version:
            # switched, but the restart never came (cut off right after the switch)
            return Applied(current, True, f"switched to {version}; restart to start its trial")
        return Applied(current, False, f"release {running} is running already")
    resumable = (State.DOWNLOADING, State.BUILDING, State.SWITCHING)
    if current.state not in SETTLED and current.state not in resumable:
        raise UpdateError(
            "state",
            f"an update is {current.state.value} ({current.version}); let it settle first",
        )
    if running is None:
        raise UpdateError(
            "layout", f"{layout.current} does not name a release: install with scripts/install.sh"
        )
    wait = _SessionWait(session_active, session_wait_s, sleep)

    def save(state: UpdateState) -> UpdateState:
        state_file.save(settings.state_path, state)
        log.info("update %s: %s (%s)", state.version, state.state.value, state.reason or "ok")
        return state

    def fail(state: UpdateState, exc: UpdateError) -> Applied:
        failed = save(advance(state, Event.ERROR, now=now(), reason=str(exc)))
        return Applied(failed, False, f"update to {state.version} failed: {exc}", failed=True)

    def begin(new: str) -> UpdateState:
        try:
            return save(
                advance(
                    current,
                    Event.BEGIN,
                    now=now(),
                    version=new,
                    previous=running,
                    manifest_url=manifest_url,
                )
            )
        except IllegalTransition:
            raise UpdateError(
                "state", f"an update to {current.version} is {current.state.value}: let it end"
            ) from None

    if current.state is State.SWITCHING and version is not None and current.version == version:
        return _switch(current, version, running, settings, wait, now, save, fail)
    try:
        manifest = fetch_manifest(client, manifest_url, keys)
        if version is not None and manifest.version != version:
            raise UpdateError(
                "verifying",
                f"{manifest_url} is release {manifest.version}, not {version} as asked",
            )
    except UpdateError as exc:
        if version is None or current.state is State.SWITCHING:
            raise
        return fail(begin(version), exc)
    if manifest.version == running:
        return Applied(current, False, f"release {running} is running already")
    if current.state is State.SWITCHING:
        if current.version != manifest.version:
            raise UpdateError("state", f"release {current.version} waits to be switched to")
        return _switch(current, manifest.version, running, settings, wait, now, save, fail)
    state = begin(manifest.version)
    try:
        check_compatible(manifest, running)
        into = settings.downloads / manifest.version
        for entry in manifest.files:
            fetch_file(client, urljoin(manifest_url, f"files/{entry.name}"), entry, into)
    except UpdateError as exc:
        return fail(state, exc)
    except OSError as exc:  # the disk full, the downloads directory unusable: say so
        return fail(state, UpdateError("downloading", f"{type(exc).__name__}: {exc}"))
    state = save(advance(state, Event.DOWNLOADED, now=now()))
    try:
        layout.build(manifest.version, into, python=settings.python)
    except UpdateError as exc:
        return fail(state, exc)
    except OSError as exc:
        return fail(state, UpdateError("building", f"{type(exc).__name__}: {exc}"))
    state = save(advance(state, Event.BUILT, now=now()))
    return _switch(state, manifest.version, running, settings, wait, now, save, fail)


#: How often a switch waiting for a citizen's session to end asks again.
SESSION_POLL_S = 5.0


@dataclass(frozen=True)
class _SessionWait:
    session_active: Callable[[], bool]
    wait_s: float
    sleep: Callable[[float], None]

    def idle(self) -> bool:
        """True once no citizen is in a session; False if one still is after ``wait_s``."""
        waited = 0.0
        while self.session_active():
            if waited >= self.wait_s:
                return False
            self.sleep(SESSION_POLL_S)
            waited += SESSION_POLL_S
        return True


def _switch(
    state: UpdateState,
    version: str,
    running: str,
    settings: UpdaterSettings,
    wait: _SessionWait,
    now: Callable[[], float],
    save: Callable[[UpdateState], UpdateState],
    fail: Callable[[UpdateState, UpdateError], Applied],
) -> Applied:
    layout = settings.layout
    if not wait.idle():
        # built and ready; the switch waits for the session to end (the caller runs again)
        message = f"a citizen is in a session: the switch to {version} waits"
        return Applied(state, False, message, waiting=True)
    try:
        layout.switch_to(version)
    except UpdateError as exc:
        return fail(state, exc)
    except OSError as exc:
        return fail(state, UpdateError("switching", f"{layout.current}: {exc}"))
    state = save(advance(state, Event.SWITCHED, now=now(), deadline=now() + settings.trial_s))
    removed = layout.prune({version, running})
    if removed:
        log.info("pruned releases %s", ", ".join(removed))
    return Applied(state, True, f"switched to {version}; restart to start its trial")
