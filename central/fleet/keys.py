"""Who may sign for a kiosk: the seam between the registry and the collector (sans-I/O).

The collector verifies every record's signature against the keys the registry holds for the
record's kiosk (:mod:`sync.envelope_signing`). It asks through :class:`KeyDirectory`, so the
collector never knows how the registry stores anything, and tests and benchmarks can hand it
a :class:`StaticKeyDirectory`.

A lookup must see a revocation committed by another process (``aps-central kiosk revoke``)
within :data:`MAX_STALENESS_S` seconds: an implementation may cache, but no longer than that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central.fleet.lifecycle import KioskState
from sync.envelope_signing import key_id

__all__ = ["MAX_STALENESS_S", "KeyDirectory", "SenderKeys", "StaticKeyDirectory"]

#: How old a cached answer may be (seconds); a revocation takes effect within this.
MAX_STALENESS_S = 2.0


@dataclass(frozen=True, kw_only=True)
class SenderKeys:
    """A registered kiosk: its state and every record-signing key still accepted, by key id."""

    kiosk: str
    state: KioskState
    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)

    @property
    def may_send(self) -> bool:
        """Records are accepted from pending and active kiosks, never from revoked ones."""
        return self.state is not KioskState.REVOKED


class KeyDirectory(Protocol):
    def sender(self, kiosk: str) -> SenderKeys | None:
        """The kiosk's registry entry, or None if central never enrolled it."""
        ...


class StaticKeyDirectory:
    """A fixed directory (tests, benchmarks): kiosk id -> public keys, all active."""

    def __init__(self, keys: Mapping[str, list[Ed25519PublicKey]] | None = None) -> None:
        self._entries: dict[str, SenderKeys] = {}
        for kiosk, pubs in (keys or {}).items():
            self.add(kiosk, *pubs)

    def add(
        self, kiosk: str, *pubs: Ed25519PublicKey, state: KioskState = KioskState.ACTIVE
    ) -> None:
        old = self._entries.get(kiosk)
        held = dict(old.keys) if old else {}
        held.update({key_id(p): p for p in pubs})
        self._entries[kiosk] = SenderKeys(kiosk=kiosk, state=state, keys=held)

    def revoke(self, kiosk: str) -> None:
        old = self._entries[kiosk]
        self._entries[kiosk] = SenderKeys(kiosk=kiosk, state=KioskState.REVOKED, keys=old.keys)

    def sender(self, kiosk: str) -> SenderKeys | None:
        return self._entries.get(kiosk)
