"""The box's software updater: download a signed release, build it beside the running one,
switch, check itself after the restart, commit or roll back (docs/updates.md).

:mod:`edge_agent.updater.machine` is the sans-I/O state machine; the I/O sits in
:mod:`.download` (HTTP with Range), :mod:`.layout` (the release directories and the
``current`` link), :mod:`.state_file` (state.json, atomic), :mod:`.apply` (the steps up to
the restart) and :mod:`.trial` (the check after it). The guard that rolls back a release
which crashes before it can check itself is scripts/aps-update-guard (stdlib only, outside
the release directories).
"""

from __future__ import annotations


class UpdateError(Exception):
    """An update step failed; ``step`` names it, the message says why and what to do."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.reason = message
