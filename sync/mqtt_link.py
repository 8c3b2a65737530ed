"""One MQTT connection kept alive: settings, paho client set-up, reconnect loop.

Used by the kiosk's sync client and by central's collector. The loop makes a
fresh paho client for every connection (paho would otherwise resend its own
in-memory queue on reconnect), waits before every reconnect, after a refused
connect and after a dropped one alike, with tenacity's exponential backoff
with full jitter (so a fleet coming back after an outage, or two boxes
sharing one identity, do not stampede the broker), sets TCP_NODELAY (paho
leaves Nagle on, which delays every small ack by about 40 ms), and runs
``client.loop()`` until the link drops.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tenacity import RetryCallState, wait_random_exponential

log = logging.getLogger("aps.mqtt")

#: Longest sleep of a connected, idle network thread (one wake-up a second).
LOOP_TIMEOUT_S = 1.0


@dataclass(frozen=True, kw_only=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


def _writes_stay_in_the_loop_thread(client: mqtt.Client, userdata: object, sock: object) -> None:
    """paho's "register write" hook: nothing to register, loop() selects for writing."""


def make_paho_client(
    client_id: str,
    mqtt_settings: MqttSettings,
    *,
    clean_session: bool = True,
    manual_ack: bool = False,
) -> mqtt.Client:
    """A paho client set up from settings (MQTT 3.1.1, optional TLS and login)."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        reconnect_on_failure=False,
        manual_ack=manual_ack,
    )
    # Write to the socket only from the thread that runs loop(). Without an
    # external-loop callback, paho writes from whichever thread calls publish()
    # while the loop thread reads, and an SSL socket does not survive that: the
    # broker saw "decryption failed or bad record mac" and dropped every TLS
    # kiosk as soon as it synced. With the callback set, publish() only queues
    # the packet and wakes the loop's select(), which then writes it.
    client.on_socket_register_write = _writes_stay_in_the_loop_thread
    if mqtt_settings.username:
        client.username_pw_set(mqtt_settings.username, mqtt_settings.password)
    if mqtt_settings.tls_ca:
        client.tls_set(
            ca_certs=str(mqtt_settings.tls_ca),
            certfile=str(mqtt_settings.tls_cert) if mqtt_settings.tls_cert else None,
            keyfile=str(mqtt_settings.tls_key) if mqtt_settings.tls_key else None,
        )
    return client


class ConnectRefused(OSError):
    """The broker answered CONNECT with a failure, or never answered."""


def backoff_s(attempt: int, min_s: float, max_s: float) -> float:
    """The wait before connect number ``attempt`` + 1 after ``attempt`` failures.

    Drawn uniformly from [0, min(max_s, min_s * 2^(attempt-1))] (tenacity's full
    jitter). :class:`NetworkLoop` waits this long; bench/reconnect_storm.py's
    simulated kiosks draw from it too, so the storm it measures is the fleet's.
    """
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempt)
    return float(wait_random_exponential(multiplier=min_s, max=max_s)(state))


class NetworkLoop:
    """Keeps one paho client connected, with jittered exponential backoff.

    Theory of operation
    -------------------
    Every wait before a connect is drawn by tenacity's
    ``wait_random_exponential`` (full jitter) from ``attempt``, the number of
    consecutive failures. A failure is a refused or unanswered connect, **and
    also an accepted connection that dropped before it had lived
    ``stable_after_s``**: without that, two boxes sharing one identity (a
    cloned SD card) kick each other off the broker hundreds of times a
    second, because each new connection of one box drops the other's
    accepted one. Only a connection that stayed up ``stable_after_s`` resets
    ``attempt``.

    Such short-lived accepted connections are also counted: ``duplicate_after``
    of them within ``duplicate_window_s`` log an ERROR naming the identity
    and add one to ``identity_conflicts`` (the kiosk reports it in its
    heartbeat). MQTT 3.1.1 does not say why the broker closed a connection,
    so a link that keeps dropping looks the same; the message says so.

    :meth:`reconnect` (any thread) ends a connection that is up but useless
    (the kiosk's sync client calls it for a "connected and deaf" link): the
    loop sends a clean DISCONNECT, waits ``backoff_s(attempt)`` as after any
    failure, and connects a fresh client. Such a drop is neither a short drop
    (it says nothing about a cloned identity) nor a reason to reset the
    backoff: the caller says how many such reconnects came in a row.

    On stop, ``farewell`` (if given) names a retained message to publish and
    see acknowledged before the clean DISCONNECT (a broker sends no Last Will
    on a clean DISCONNECT, so a kiosk says "offline" itself).
    """

    def __init__(
        self,
        factory: Callable[[], mqtt.Client],
        settings: MqttSettings,
        *,
        backoff_min_s: float,
        backoff_max_s: float,
        stop: threading.Event,
        name: str,
        identity: str | None = None,
        stable_after_s: float = 60.0,
        duplicate_after: int = 3,
        duplicate_window_s: float = 300.0,
        farewell: Callable[[], tuple[str, bytes]] | None = None,
    ) -> None:
        self.factory = factory
        self.client = factory()
        self.settings = settings
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stop = stop
        self.identity = identity or name
        self.stable_after_s = stable_after_s
        self.duplicate_after = duplicate_after
        self.duplicate_window_s = duplicate_window_s
        self.farewell = farewell
        self.connected = threading.Event()
        self.connects = 0
        self.drops = 0
        self.identity_conflicts = 0
        self._short_drops: deque[float] = deque()
        self._reconnect_attempt = 0  # > 0: reconnect() asked for it (read by the loop thread)
        self._reconnect_asked = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def reconnect(self, attempt: int = 1) -> None:
        """Drop the current connection cleanly and connect again after ``backoff_s(attempt)``
        (any thread; the loop thread acts within ``LOOP_TIMEOUT_S``)."""
        self._reconnect_attempt = max(1, attempt)
        self._reconnect_asked.set()

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def backoff_s(self, attempt: int) -> float:
        """A random wait in [0, min(max, min * 2^(attempt-1))] (full jitter)."""
        return backoff_s(attempt, self.backoff_min_s, self.backoff_max_s)

    def _connect_once(self) -> None:
        # A fresh client per connection: paho would otherwise resend its own
        # in-memory queue on reconnect, and our outbox is the only truth.
        self.connected.clear()
        self.client = self.factory()
        self.client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s)
        sock = self.client.socket()
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            # paho leaves Nagle on; with delayed ACKs every small ack waits ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + max(5.0, self.settings.keepalive_s)
        while not self.connected.is_set():
            rc = self.client.loop(timeout=0.1)
            if rc != mqtt.MQTT_ERR_SUCCESS or time.monotonic() > deadline or self.stop.is_set():
                self.client.disconnect()
                raise ConnectRefused(f"broker {self.settings.host}:{self.settings.port}: {rc}")

    def _note_short_drop(self, now: float) -> None:
        window = self._short_drops
        window.append(now)
        while window and window[0] < now - self.duplicate_window_s:
            window.popleft()
        if len(window) >= self.duplicate_after:
            self.identity_conflicts += 1
            log.error(
                "another box is using %s (or the broker keeps dropping this connection): "
                "%d accepted connections dropped within %.0f s; check for a cloned SD card "
                "or certificate",
                self.identity,
                len(window),
                now - window[0],
            )
            window.clear()

    def _run(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            if attempt:
                self._sleep(self.backoff_s(attempt))
                if self.stop.is_set():
                    break
            try:
                self._connect_once()
            except OSError as exc:
                attempt += 1
                log.warning("mqtt connect failed (attempt %d): %s", attempt, exc)
                continue
            except Exception:
                attempt += 1
                log.exception("network loop: unexpected error while connecting")
                continue
            self.connects += 1
            up_since = time.monotonic()
            self._reconnect_asked.clear()  # asked of an older connection: this one is fresh
            while not self.stop.is_set():
                # paho's select also wakes on traffic and on any publish from
                # another thread; the timeout only bounds how long stop waits.
                rc = self.client.loop(timeout=LOOP_TIMEOUT_S)
                if rc != mqtt.MQTT_ERR_SUCCESS or self._reconnect_asked.is_set():
                    break
            else:
                break  # stopping: say goodbye below
            self.connected.clear()
            self.drops += 1
            now = time.monotonic()
            lived = now - up_since
            if self._reconnect_asked.is_set() and rc == mqtt.MQTT_ERR_SUCCESS:
                self._reconnect_asked.clear()
                attempt = self._reconnect_attempt
                log.warning("mqtt connection closed after %.1f s to connect afresh", lived)
                try:
                    self.client.disconnect()
                    self.client.loop(timeout=0.1)
                except Exception:
                    log.debug("closing the mqtt connection failed", exc_info=True)
                continue
            log.warning("mqtt connection lost after %.1f s: %s", lived, mqtt.error_string(rc))
            if lived >= self.stable_after_s:
                attempt = 0
            else:
                self._note_short_drop(now)
            attempt += 1
        self._close()

    def _close(self) -> None:
        try:
            if self.connected.is_set() and self.farewell is not None:
                topic, payload = self.farewell()
                info = self.client.publish(topic, payload, qos=1, retain=True)
                deadline = time.monotonic() + 2.0
                while not info.is_published() and time.monotonic() < deadline:
                    if self.client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                        break
            self.connected.clear()
            self.client.disconnect()
            self.client.loop(timeout=0.1)
        except Exception:
            log.debug("closing the mqtt connection failed", exc_info=True)
