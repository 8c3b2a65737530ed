"""One MQTT connection kept alive: settings, paho client set-up, reconnect loop.

Used by the kiosk's sync client and by central's collector. The loop makes a
fresh paho client for every connection (paho would otherwise resend its own
in-memory queue on reconnect), connects with tenacity's exponential backoff
with full jitter (so a fleet coming back after an outage does not stampede
the broker), sets TCP_NODELAY (paho leaves Nagle on, which delays every
small ack by about 40 ms), and runs ``client.loop()`` until the link drops.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tenacity import Retrying, retry_if_exception_type, wait_random_exponential

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


class NetworkLoop:
    """Keeps one paho client connected, with jittered exponential backoff."""

    def __init__(
        self,
        factory: Callable[[], mqtt.Client],
        settings: MqttSettings,
        *,
        backoff_min_s: float,
        backoff_max_s: float,
        stop: threading.Event,
        name: str,
    ) -> None:
        self.factory = factory
        self.client = factory()
        self.settings = settings
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stop = stop
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

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

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                for attempt in Retrying(
                    wait=wait_random_exponential(
                        multiplier=self.backoff_min_s, max=self.backoff_max_s
                    ),
                    retry=retry_if_exception_type(OSError),
                    sleep=self._sleep,
                    before_sleep=lambda rs: log.warning(
                        "mqtt connect failed (attempt %d): %s",
                        rs.attempt_number,
                        rs.outcome.exception() if rs.outcome else "?",
                    ),
                ):
                    with attempt:
                        if self.stop.is_set():
                            return
                        self._connect_once()
            except Exception:  # tenacity gave up only if stop is set
                log.exception("network loop: unexpected error while connecting")
                self.stop.wait(self.backoff_min_s)
                continue
            while not self.stop.is_set():
                # paho's select also wakes on traffic and on any publish from
                # another thread; the timeout only bounds how long stop waits.
                rc = self.client.loop(timeout=LOOP_TIMEOUT_S)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    log.warning("mqtt connection lost: %s", mqtt.error_string(rc))
                    break
            self.connected.clear()
        try:
            self.client.disconnect()
            self.client.loop(timeout=0.1)
        except Exception:
            pass
