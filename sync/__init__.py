"""The sync protocol (docs/protocol.md): the wire contract and the kiosk's outbox.

Shared by the kiosk agent and central (central may import these):

- :mod:`sync.envelope` frames and validates protocol messages (sans-I/O).
- :mod:`sync.downlink` is the typed downlink: state requests and replies, nudges,
  remote calls, item bodies by kind, and the topic router (sans-I/O).
- :mod:`sync.schemas` is one schema per record kind and the bounds of every message (sans-I/O).
- :mod:`sync.envelope_signing`: canonical bytes and Ed25519 signatures of envelopes (sans-I/O).
- :mod:`sync.wire_signing`: those signatures on the wire: records signed, acks and the
  downlink verified, record digests, central's key set and its rotation (sans-I/O).
- :mod:`sync.attachments`, :mod:`sync.ids`: attachment chunking, record and stream ids.
- :mod:`sync.mqtt_link` is the reconnecting MQTT link both sides use.
- :mod:`sync.config` is the typed TOML loader and the ``[mqtt]`` section.
- :mod:`sync.logs` is the log set-up of both services (stderr, journald priorities).
- :mod:`sync.files` keeps files holding citizen data private (0600 in 0700), and says
  why a path cannot be opened.
- :mod:`sync.ca_pin`: the fleet CA's pin, printed in enrolment tokens and checked by the box.

Kiosk only:

- :mod:`sync.outbox` is the durable SQLite outbox every record goes through.
- :mod:`sync.machine` is the sync state machine (sans-I/O: events in, actions out).
- :mod:`sync.state_sync` is the downstream state machine: ask, apply, page, retry (sans-I/O).
- :mod:`sync.deaf_watch` notices a session that is connected but hears nothing (sans-I/O).
- :mod:`sync.client` is the thin paho-mqtt adapter that drives the machine.
- :mod:`sync.systemd_notify` (shared: the agent and central) speaks sd_notify.
"""


class SyncError(Exception):
    """Base class of every error raised by the ``sync`` package."""
