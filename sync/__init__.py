"""Kiosk side of the APS sync protocol (docs/protocol.md).

- :mod:`sync.envelope` frames and validates protocol messages (sans-I/O).
- :mod:`sync.outbox` is the durable SQLite outbox every record goes through.
- :mod:`sync.machine` is the sync state machine (sans-I/O: events in, actions out).
- :mod:`sync.client` is the thin paho-mqtt adapter that drives the machine.
- :mod:`sync.systemd_notify` (shared: the agent and central) speaks sd_notify.
"""


class SyncError(Exception):
    """Base class of every error raised by the ``sync`` package."""
