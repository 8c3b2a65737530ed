"""Files that hold citizen data or secrets: private to the service's user.

The kiosk database holds full ID numbers, names, birth dates and addresses;
central's database holds the same for a whole province; receipts carry names.
Whatever the umask, such files are created 0600 in 0700 directories
(:func:`make_private_dir`, :func:`create_private_file`); a file left group- or
world-readable by an older version is tightened when it is opened for writing.
SQLite creates a database's ``-wal`` and ``-shm`` files with the main file's
permissions (and, when run as root, its owner), so making the main file private
before SQLite first opens it covers them; existing ones are tightened too.

Directories that already exist (``/var/lib/aps`` made by systemd's
``StateDirectory=``, whose mode the units set) are left as they are: the
files themselves are private either way.

:func:`why_unopenable` says in plain words why a path cannot be opened (a
missing directory, a directory where a file should be, permissions), so that
such a fault is never reported as a damaged database.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "create_private_file",
    "make_private_dir",
    "why_unopenable",
]

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def make_private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700; existing ones are left alone."""
    missing: list[Path] = []
    current = Path(path)
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=PRIVATE_DIR_MODE)
            os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask


def _tighten(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
        # Not ours to change (another user's file): leave it; opening it will tell.
        with contextlib.suppress(PermissionError):
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


def create_private_file(path: Path, *, sqlite: bool = True) -> None:
    """Make sure ``path`` exists as a 0600 file (created empty if missing).

    An existing file readable by group or others is tightened to the owner's
    bits, and so are its SQLite companions (``-wal``, ``-shm``, ``-journal``)
    when ``sqlite``. Raises ``OSError`` when the file cannot be created.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    except FileExistsError:
        _tighten(path)
    else:
        os.close(fd)
    if sqlite:
        for suffix in _SQLITE_COMPANIONS:
            _tighten(path.with_name(path.name + suffix))


def why_unopenable(path: Path, *, write: bool) -> str | None:
    """Why ``path`` cannot be opened (for writing, or reading), in plain words; None if it can."""
    path = Path(path)
    parent = path.parent
    uid = os.geteuid()
    if not parent.exists():
        return f"directory {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if path.is_dir():
        return f"{path} is a directory, not a database file"
    if not path.exists():
        if write and not os.access(parent, os.W_OK | os.X_OK):
            return (
                f"directory {parent} is not writable by uid {uid}; run as the service's user "
                f"or fix the directory's owner"
            )
        return None
    if not os.access(parent, os.X_OK):
        return f"directory {parent} cannot be entered by uid {uid}"
    wanted = os.R_OK | (os.W_OK if write else 0)
    if not os.access(path, wanted):
        owner = path.stat().st_uid
        need = "readable and writable" if write else "readable"
        return (
            f"{path} is not {need} by uid {uid} (it belongs to uid {owner}); run as the "
            f"service's user, or give the file back to it (chown aps:aps {path})"
        )
    if write and not os.access(parent, os.W_OK | os.X_OK):
        # SQLite needs the directory too: it creates -wal and -shm beside the file.
        return f"directory {parent} is not writable by uid {uid} (SQLite keeps -wal/-shm there)"
    return None
