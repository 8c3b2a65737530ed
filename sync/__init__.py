"""Kiosk side of the APS sync protocol (docs/protocol.md).

- :mod:`sync.envelope` frames and validates protocol messages (sans-I/O; shared with central).
- :mod:`sync.schemas` is one schema per record kind and the bounds of every
  message (sans-I/O; shared with central).
- :mod:`sync.outbox` is the durable SQLite outbox every record goes through.
- :mod:`sync.machine` is the sync state machine (sans-I/O: events in, actions out).
- :mod:`sync.client` is the thin paho-mqtt adapter that drives the machine.
"""


class SyncError(Exception):
    """Base class of every error raised by the ``sync`` package."""
