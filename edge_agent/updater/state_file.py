"""state.json: the update's state on disk, written atomically (temporary file, fsync,
rename, fsync of the directory), so a power cut leaves the old state or the new, never half.

The same file is read and written by the guard (scripts/aps-update-guard, stdlib only),
which is why it is plain JSON with a version number (``"v": 1``). A file that cannot be
read as a state is never guessed at: :func:`load` raises :class:`StateFileError` naming the
file and the fix, and the updater refuses to act until a technician looks
(``aps-agent update status`` shows it; ``aps-agent update clear`` starts afresh).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge_agent.updater.machine import UpdateState

MAX_STATE_BYTES = 64 * 1024


class StateFileError(Exception):
    pass


def load(path: Path) -> UpdateState:
    """The state in ``path``; an absent file is the idle state (no update ever ran)."""
    try:
        raw = path.read_bytes()[: MAX_STATE_BYTES + 1]
    except FileNotFoundError:
        return UpdateState()
    if len(raw) > MAX_STATE_BYTES:
        raise StateFileError(f"{path}: larger than {MAX_STATE_BYTES} bytes; not a state file")
    try:
        obj = json.loads(raw.decode("utf-8"))
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return UpdateState.from_object(obj)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise StateFileError(
            f"{path}: not an update state ({exc}); run `aps-agent update status` and "
            "`aps-agent update clear` once the box is checked (docs/updates.md)"
        ) from None


def save(path: Path, state: UpdateState) -> None:
    """Replace ``path`` with ``state``, atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = (json.dumps(state.to_object(), indent=1, sort_keys=True) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
        if os.geteuid() == 0:  # written by root (aps-update.service): the agent must read it
            st = os.stat(path.parent)
            os.fchown(fd, st.st_uid, st.st_gid)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
