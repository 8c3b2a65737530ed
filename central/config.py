"""Central's configuration file (``/etc/aps/central.toml``)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field, SecretStr, field_validator, model_validator

from central.amqp_source import AmqpSettings
from central.attachments import AttachmentLimits
from central.collector import CollectorSettings
from central.downlink import DownlinkSettings
from central.fleet.health import Thresholds
from central.fleet.heartbeats import HistorySettings
from central.notify import FanoutNotifier, Notifier, SmtpNotifier, WebhookNotifier
from central.quotas import QuotaSettings
from central.roster import DEFAULT_TIMEZONE
from central.sequences import DEFAULT_MAX_SEQ_JUMP
from central.signing import SigningSettings
from central.support import SupportSettings
from central.web.console.settings import ConsoleSettings
from sync.attachments import MAX_ATTACHMENT_BYTES, MAX_ATTACHMENT_CHUNKS
from sync.config import ConfigError, MqttSection, Section, _is_loopback, load
from sync.dossier_status import PortalCodes, PortalCodesError, load_portal_codes
from sync.identity_files import KeyFileError, load_private_key
from sync.wire_signing import key_announcement, sign_downlink


class CentralSection(Section):
    database: Path = Field(
        Path("/var/lib/aps/central.db"),
        description='Central\'s SQLite database (with `store = "sqlite"`, the default).',
    )
    log_level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level."
    )
    store: Literal["sqlite", "postgresql"] = Field(
        "sqlite",
        description="Where central keeps everything (records, back office, registry, fleet, "
        "console): `sqlite` (the file `database`, one province on one machine) or `postgresql` "
        "(`postgresql_dsn`, a national deployment with several collectors: docs/scale.md).",
    )
    postgresql_dsn: SecretStr | None = Field(
        None,
        description="libpq connection string of central's PostgreSQL database, e.g. "
        "`host=db.example port=5432 user=aps dbname=aps` (required with "
        '`store = "postgresql"`; a password belongs in ~/.pgpass, not here).',
    )

    @model_validator(mode="after")
    def _dsn_for_postgresql(self) -> Self:
        if self.store == "postgresql" and (
            self.postgresql_dsn is None or not self.postgresql_dsn.get_secret_value().strip()
        ):
            raise ValueError(
                'central.postgresql_dsn: required with store = "postgresql" (a libpq '
                "connection string such as `host=127.0.0.1 port=5432 user=aps dbname=aps`)"
            )
        return self


class AlertsSection(Section):
    gap_alert_after_s: float = Field(
        3600.0,
        gt=0,
        description="A sequence gap (records a kiosk committed that central lacks) still "
        "open after this many seconds is logged as an alert and shown by `aps-central status`.",
    )
    report_limit: int = Field(
        50,
        ge=1,
        le=10_000,
        description="At most this many streams, gap ranges per stream, conflicts and kiosks "
        "are listed by `aps-central status` and by the gap alert log lines; the rest is "
        "counted (`more`), so no report grows with the damage.",
    )
    # Fleet alerts (docs/alerts.md).
    evaluate_every_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="How often `aps-central run` evaluates the alert rules and sends due "
        "alert notifications (its own thread; ingest never waits for it).",
    )
    engine_enabled: bool = Field(
        True, description="Run the alert engine in `aps-central run` (false: no fleet alerts)."
    )
    escalate_to: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="E-mail addresses that also get escalated alerts (with [notify] smtp_host); "
        "everyone else keeps getting them as before.",
    )
    rules: dict[str, dict[str, float | bool | str]] = Field(
        default_factory=dict,
        description="Fleet-wide overrides of each alert kind's defaults, one table per kind: "
        "`[alerts.rules.offline]` `minutes = 10`; offices override these in turn with "
        "`aps-central alerts rules set`.",
    )

    @field_validator("escalate_to")
    @classmethod
    def _escalate_addresses(cls, value: list[str]) -> list[str]:
        for addr in value:
            if "@" not in addr or any(c.isspace() for c in addr) or len(addr) > 254:
                raise ValueError(f"{addr!r} is not an e-mail address such as team@example.vn")
        return value

    @field_validator("rules")
    @classmethod
    def _rules(
        cls, value: dict[str, dict[str, float | bool | str]]
    ) -> dict[str, dict[str, float | bool | str]]:
        from central.fleet.alert_rules import RuleError, check_config_rules

        try:
            check_config_rules(value)
        except RuleError as exc:
            raise ValueError(str(exc)) from None
        return value


class CollectorSection(Section):
    client_id: str = Field(
        "aps-collector-1",
        description="Stable MQTT client id; each collector of a shared group needs its own.",
    )
    shared_group: str | None = Field(
        None, description="Set to share the load among collectors ($share/<group>/...)."
    )
    batch_max: int = Field(500, ge=1, le=10_000, description="Records per store transaction.")
    batch_wait_ms: int = Field(
        0,
        ge=0,
        le=5000,
        description="Wait this long for more records before committing a small batch "
        "(0: commit whatever is queued; batches grow by themselves under load).",
    )
    queue_max: int = Field(20_000, ge=100, description="Messages buffered before back-pressure.")
    source: Literal["mqtt", "amqp"] = Field(
        "mqtt",
        description="Where the collector takes the kiosks' uplink from: `mqtt` (subscribes on "
        "[mqtt], mosquitto) or `amqp` (consumes the quorum queue [amqp] queue on a RabbitMQ "
        "cluster, as one of several competing collectors: docs/scale.md). The kiosks speak "
        "MQTT either way.",
    )
    max_record_kb: int = Field(256, ge=1, description="Larger records are dead-lettered.")
    max_seq_jump: int = Field(
        DEFAULT_MAX_SEQ_JUMP,
        ge=1,
        le=2**62,
        description="A record whose seq is more than this past the highest seq central holds "
        "for its stream is parked (dead-lettered and rejected, reason `seq-jump`) instead of "
        "stored: no kiosk sends that many records in one go, and storing it would open a gap "
        "of that size. A stream central has never seen starts from 0, so before re-ingesting "
        "into a new or restored central.db from kiosks that have sent more than this, raise it.",
    )

    def settings(self) -> CollectorSettings:
        return CollectorSettings(
            client_id=self.client_id,
            shared_group=self.shared_group,
            batch_max=self.batch_max,
            batch_wait_s=self.batch_wait_ms / 1000,
            queue_max=self.queue_max,
            max_record_bytes=self.max_record_kb * 1024,
        )


class AmqpSection(Section):
    urls: list[str] = Field(
        default_factory=list,
        description="AMQP URLs of the RabbitMQ cluster's nodes, e.g. "
        "`amqp://10.0.0.1:5672/%2F`; the collector connects to the first and moves to the "
        'next when a node dies (required with [collector] source = "amqp"; no password '
        "in them: `username` and `password`).",
    )
    username: str | None = Field(None, description="The collector's RabbitMQ user.")
    password: SecretStr | None = Field(None, description="Its password.")
    queue: str = Field(
        "aps.uplink",
        pattern=r"^[A-Za-z0-9_.:-]{1,200}$",
        description="The durable quorum queue every collector consumes from (bound to "
        "amq.topic for the kiosks' uplink); all collectors of a deployment name the same one.",
    )
    prefetch: int = Field(
        1000,
        ge=1,
        le=65_535,
        description="Unacked deliveries the broker hands one collector at most; not below "
        "[collector] batch_max.",
    )

    @field_validator("urls")
    @classmethod
    def _amqp_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
                raise ValueError(f"amqp.urls: {url!r} is not amqp://host[:port][/vhost]")
            if parts.password is not None:
                raise ValueError(
                    f"amqp.urls: {parts.hostname}: no password in the URL (use amqp.password)"
                )
        return urls


class QuotasSection(Section):
    """Per-kiosk limits at central (docs/operations.md, "Limits at central")."""

    messages_per_s: float = Field(
        500.0,
        gt=0,
        description="Messages per second one kiosk may send (token bucket per topic kiosk); "
        "over it, messages are dropped unparsed and unacked, and a kiosk resends its records.",
    )
    burst_messages: int = Field(
        2000, ge=1, description="Messages one kiosk may send at once above its rate."
    )
    kib_per_s: int = Field(4096, ge=1, description="KiB per second one kiosk may send.")
    burst_kib: int = Field(
        32768,
        ge=1024,
        description="KiB one kiosk may send at once above its rate; keep it above "
        "[collector] max_record_kb, or a record that size never passes.",
    )
    pace_messages: int = Field(
        512,
        ge=0,
        description="Messages over the rate held back per kiosk and passed on as its rate "
        "allows (keep it above the kiosks' inflight_window, so a kiosk draining a backlog is "
        "slowed, not made to wait out its ack timeout); beyond it they are dropped. 0: none.",
    )
    pace_kib: int = Field(
        8192, ge=0, description="KiB held back per kiosk at most (256 MiB for all kiosks)."
    )
    max_records_mb_per_kiosk: int = Field(
        32768,
        ge=1,
        description="Bytes of records central holds per kiosk, MiB; at it, the kiosk's new "
        "records are left unacked (they wait on the kiosk) and an alert is raised.",
    )
    max_dead_letters_per_kiosk: int = Field(
        10_000,
        ge=1,
        description="Dead-letter rows held per kiosk; beyond, its new dead letters are dropped "
        "and counted.",
    )
    dead_letter_retention_days: float = Field(
        30.0, gt=0, description="Dead letters not seen again for this long are deleted."
    )

    def settings(self) -> QuotaSettings:
        return QuotaSettings(
            messages_per_s=self.messages_per_s,
            burst_messages=self.burst_messages,
            bytes_per_s=self.kib_per_s * 1024.0,
            burst_bytes=self.burst_kib * 1024,
            max_records_bytes=self.max_records_mb_per_kiosk * 1024 * 1024,
            max_dead_letters=self.max_dead_letters_per_kiosk,
            dead_letter_retention_s=self.dead_letter_retention_days * 86400.0,
            pace_messages=self.pace_messages,
            pace_bytes=self.pace_kib * 1024,
        )


class AttachmentsSection(Section):
    """What central accepts of one attachment (defaults: the kiosk's own limits)."""

    max_attachment_bytes: int = Field(
        MAX_ATTACHMENT_BYTES,
        ge=1,
        le=1_000_000_000,
        description="Largest file central accepts; a chunk whose file_size is over it is "
        "rejected. Keep it at least the kiosks' limit; at most 10^9 (SQLite's largest blob).",
    )
    max_chunks: int = Field(
        MAX_ATTACHMENT_CHUNKS,
        ge=1,
        description="Most chunks of one file; a chunk whose total is over it is rejected.",
    )
    expire_incomplete_after_h: float = Field(
        720.0,
        gt=0,
        description="An attachment that received no chunk for this long is marked expired "
        "and its chunks are freed.",
    )

    def limits(self) -> AttachmentLimits:
        return AttachmentLimits(
            max_bytes=self.max_attachment_bytes,
            max_chunks=self.max_chunks,
            expire_after_s=self.expire_incomplete_after_h * 3600.0,
        )


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NotifySection(Section):
    """How staff are told of a support request (docs/support.md). Neither set: nobody
    is notified, staff see requests with `aps-central support list` or the API."""

    webhook_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        max_length=2000,
        description="POST each notification as JSON to this URL (http:// or https://).",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Shared secret (at least 16 characters) for the X-APS-Signature header, "
        "HMAC-SHA256 of the body; required with webhook_url. Never printed.",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, le=60, description="Webhook request timeout.")
    webhook_allow_http: bool = Field(
        False,
        description="Allow an http:// webhook_url to a host other than this machine (the "
        "notifications carry citizens' names, phones and addresses): use https:// instead.",
    )
    smtp_host: str | None = Field(None, max_length=255, description="SMTP server for e-mail.")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port.")
    smtp_sender: str | None = Field(
        None,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="From: address of notification e-mails; required with smtp_host.",
    )
    smtp_to: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Team addresses, copied on every notification (and the only "
        "recipients when the staff member has no e-mail).",
    )
    smtp_username: str | None = Field(None, description="SMTP login, if the server needs one.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password. Never printed.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_timeout_s: float = Field(10.0, gt=0, le=120, description="SMTP timeout.")
    max_attempts: int = Field(
        6,
        ge=1,
        le=100,
        description="Attempts to notify about one request; then it is marked failed (an "
        "ALERT is logged) and the kiosk shows the hotline instead.",
    )
    backoff_s: float = Field(
        5.0, gt=0, le=3600, description="Wait after the first failed attempt; doubles each time."
    )
    backoff_max_s: float = Field(
        300.0, gt=0, le=86400, description="Longest wait between attempts."
    )

    @field_validator("smtp_to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for addr in value:
            if "@" not in addr or any(c.isspace() for c in addr) or len(addr) > 254:
                raise ValueError(f"{addr!r} is not an e-mail address such as team@example.vn")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        if self.webhook_url is not None:
            secret = self.webhook_secret
            if secret is None or len(secret.get_secret_value()) < 16:
                raise ValueError(
                    "notify.webhook_secret: set it (at least 16 characters) with webhook_url, "
                    "so the receiver can check X-APS-Signature; generate one with "
                    "`openssl rand -hex 32`"
                )
        if (
            self.webhook_url is not None
            and self.webhook_url.startswith("http://")
            and not self.webhook_allow_http
            and not _is_loopback_url(self.webhook_url)
        ):
            raise ValueError(
                "notify.webhook_url: http:// to another machine would send citizens' "
                "names, phones and addresses in clear text; use https://, or set "
                "notify.webhook_allow_http = true on a private network"
            )
        if self.smtp_host is not None and self.smtp_sender is None:
            raise ValueError("notify.smtp_sender: set the From: address with smtp_host")
        return self

    def notifier(self) -> Notifier | None:
        """The configured notifier(s), or None when neither is configured."""
        out: list[Notifier] = []
        if self.webhook_url is not None and self.webhook_secret is not None:
            out.append(
                WebhookNotifier(
                    self.webhook_url,
                    self.webhook_secret.get_secret_value(),
                    timeout_s=self.webhook_timeout_s,
                )
            )
        if self.smtp_host is not None and self.smtp_sender is not None:
            out.append(
                SmtpNotifier(
                    self.smtp_host,
                    self.smtp_port,
                    self.smtp_sender,
                    to=self.smtp_to,
                    username=self.smtp_username,
                    password=None
                    if self.smtp_password is None
                    else self.smtp_password.get_secret_value(),
                    starttls=self.smtp_starttls,
                    timeout_s=self.smtp_timeout_s,
                )
            )
        if not out:
            return None
        return out[0] if len(out) == 1 else FanoutNotifier(out)


class SupportSection(Section):
    """The free support team (docs/support.md)."""

    hotline: str | None = Field(
        None,
        pattern=r"^\+?[0-9][0-9 .()-]{2,19}$",
        description="The support hotline shown on the kiosk when no one is on duty.",
    )
    timezone: str = Field(
        DEFAULT_TIMEZONE,
        max_length=64,
        description="Time zone of the shifts' times (an IANA name).",
    )
    route_every_s: float = Field(
        2.0,
        gt=0,
        le=300,
        description="How often `aps-central run` looks for new support requests to route "
        "and notifications to send.",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as {DEFAULT_TIMEZONE}"
            ) from None
        return value


class ApiSection(Section):
    """Central's HTTP API for staff and the back office (docs/api.md)."""

    listen: str | None = Field(
        None,
        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$",
        description="host:port to serve the API on from `aps-central run` (a thread); "
        "unset: not served. Put a TLS-terminating proxy in front of it for the network.",
    )
    payment_secret: SecretStr | None = Field(
        None,
        description="Secret shared with the bank or payment portal (at least 16 characters): "
        "their callbacks carry X-APS-Signature, HMAC-SHA256 of the body. Unset: payment "
        "callbacks are refused. Never printed.",
    )
    max_body_kb: int = Field(
        1024, ge=1, le=65536, description="Larger request bodies are refused (HTTP 413)."
    )
    page_max: int = Field(500, ge=1, le=10_000, description="Most items one list request returns.")
    metrics_token: SecretStr | None = Field(
        None,
        description="When set, GET /metrics needs `Authorization: Bearer <this>` (at least 16 "
        "characters; give it to Prometheus as `bearer_token`). Unset: /metrics is open to "
        "whoever reaches the API. Never printed.",
    )

    @field_validator("payment_secret", "metrics_token")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("at least 16 characters; generate one with `openssl rand -hex 32`")
        return value

    def host_port(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class FleetSection(Section):
    """What counts as offline or degraded, and how much health history is kept
    (docs/fleet.md)."""

    offline_after_s: float = Field(
        180.0,
        gt=0,
        le=86400,
        description="A kiosk not heard for this long counts as offline (three missed "
        "heartbeats at the default one a minute).",
    )
    backlog_records: int = Field(
        200, ge=1, description="More unsynced records than this on a kiosk: degraded."
    )
    backlog_age_s: float = Field(
        3600.0, gt=0, description="An unsynced record older than this on a kiosk: degraded."
    )
    clock_off_s: float = Field(
        120.0, gt=0, description="A kiosk clock further off central's than this: degraded."
    )
    disk_low_mb: int = Field(500, ge=0, description="Less free disk on a kiosk: degraded.")
    history_every_s: float = Field(
        300.0,
        ge=1,
        le=86400,
        description="At most one health-history sample per kiosk per this many seconds.",
    )
    history_max_rows: int = Field(
        2016, ge=1, le=1_000_000, description="At most this many history samples per kiosk."
    )
    history_max_days: float = Field(
        7.0, gt=0, le=3660, description="History samples older than this are deleted."
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(
            offline_after_s=self.offline_after_s,
            backlog_records=self.backlog_records,
            backlog_age_s=self.backlog_age_s,
            clock_off_s=self.clock_off_s,
            disk_low_bytes=self.disk_low_mb * 1024 * 1024,
        )

    def history(self) -> HistorySettings:
        return HistorySettings(
            every_s=self.history_every_s,
            max_rows=self.history_max_rows,
            max_days=self.history_max_days,
        )


class DownlinkSection(Section):
    """State replies, remote calls and nudges to kiosks (docs/protocol.md, "Downlink")."""

    requests_per_s: float = Field(
        5.0,
        gt=0,
        description="State requests and remote calls per second one kiosk may make; over "
        "it (and its burst) they are dropped and counted, and the kiosk asks again later.",
    )
    burst: int = Field(20, ge=1, le=10_000, description="Requests one kiosk may make at once.")
    queue_max: int = Field(
        2000, ge=10, description="Requests waiting for the downlink worker; beyond, dropped."
    )
    nudge_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often the log is checked for items to nudge about."
    )
    rpc_workers: int = Field(4, ge=1, le=64, description="Remote calls run at once.")
    rpc_per_kiosk: int = Field(
        4, ge=1, le=64, description="Remote calls of one kiosk in progress at once."
    )

    def settings(self) -> DownlinkSettings:
        return DownlinkSettings(
            requests_per_s=self.requests_per_s,
            burst=self.burst,
            queue_max=self.queue_max,
            nudge_interval_s=self.nudge_interval_s,
            rpc_workers=self.rpc_workers,
            rpc_per_kiosk=self.rpc_per_kiosk,
        )


class DossiersSection(Section):
    """The back office's dossier rules (docs/backoffice.md)."""

    duplicate_window_h: float = Field(
        24.0,
        gt=0,
        le=8784,
        description="Two dossiers of the same applicant and procedure received within this "
        "many hours are flagged as a likely duplicate filing (`aps-central dossier duplicates`).",
    )
    portal_status_codes: Path | None = Field(
        None,
        description="TOML file mapping dossier states to the national portal's status codes "
        "([codes] state = number); default: the bundled sync/portal_status_codes.toml "
        "(1 submitted, 2 received, 10 result-returned, the only published ones).",
    )

    @field_validator("portal_status_codes")
    @classmethod
    def _codes_load(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                load_portal_codes(value)
            except PortalCodesError as exc:
                raise ValueError(str(exc)) from None
        return value

    def portal_codes(self) -> PortalCodes:
        return load_portal_codes(self.portal_status_codes)

    @property
    def duplicate_window_s(self) -> float:
        return self.duplicate_window_h * 3600.0


class SigningSection(Section):
    """The remote-signing provider central talks to for the kiosks (docs/signing.md)."""

    provider: Literal["none", "smartca", "csc"] = Field(
        "none",
        description="Which provider shape: `smartca` (VNPT SmartCA), `csc` (Cloud Signature "
        "Consortium API v2, e.g. Viettel MySign), or `none` (remote signing off; kiosks "
        "offer the handwritten signature only).",
    )
    base_url: str = Field(
        "",
        max_length=300,
        description="The provider's API root as the provider gives it, e.g. "
        "`https://sca.provider.vn/sp123` (SmartCA shape: `/v1/...` paths follow) or "
        "`https://rssp.provider.vn` (CSC shape: `/csc/v2/...` follow). https is required "
        "unless the host is a loopback address.",
    )
    client_id: str = Field(
        "",
        max_length=200,
        description="The service-provider id the provider issued to the office "
        "(SmartCA `sp_id`, CSC client id).",
    )
    client_secret: SecretStr = Field(
        SecretStr(""),
        description="The matching secret (SmartCA `sp_password`, CSC client secret). Never "
        "printed, never sent to kiosks. Keep the file root:aps 640.",
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Seconds to wait for the provider's TCP/TLS connection."
    )
    request_timeout_s: float = Field(
        15.0,
        gt=0,
        le=120,
        description="Seconds to wait for each reply; a slower provider counts as unavailable "
        "and the kiosk polls again. Keep it below the kiosks' RPC timeout.",
    )
    transaction_ttl_s: float = Field(
        300.0,
        ge=30,
        le=3600,
        description="A transaction the citizen has not approved in this many seconds is "
        "expired at central, whatever the provider says.",
    )
    max_outstanding_per_kiosk: int = Field(
        2, ge=1, le=50, description="Signing transactions one kiosk may have open at once."
    )
    max_transactions: int = Field(
        5000, ge=10, le=1_000_000, description="Signing transactions central holds at most."
    )

    @model_validator(mode="after")
    def _provider_complete(self) -> Self:
        if self.provider == "none":
            return self
        missing = [
            key
            for key, value in (
                ("base_url", self.base_url),
                ("client_id", self.client_id),
                ("client_secret", self.client_secret.get_secret_value()),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                f"signing.provider is {self.provider!r} but signing.{', signing.'.join(missing)} "
                'is empty: set the values the provider issued, or provider = "none"'
            )
        url = urlsplit(self.base_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(
                f"signing.base_url {self.base_url!r} is not an http(s) URL; "
                "give the provider's API root such as https://host/path"
            )
        if url.scheme == "http" and not _is_loopback(url.hostname):
            raise ValueError(
                f"signing.base_url {self.base_url!r} is plain http to {url.hostname}: the "
                "client secret would cross the network in clear text; use https"
            )
        return self

    def settings(self) -> SigningSettings:
        return SigningSettings(
            provider=self.provider,
            base_url=self.base_url,
            client_id=self.client_id,
            client_secret=self.client_secret.get_secret_value(),
            connect_timeout_s=self.connect_timeout_s,
            request_timeout_s=self.request_timeout_s,
            transaction_ttl_s=self.transaction_ttl_s,
            max_outstanding_per_kiosk=self.max_outstanding_per_kiosk,
            max_transactions=self.max_transactions,
        )


class SecuritySection(Section):
    """Central's own signing key: acks and everything sent down are signed with it."""

    signing_key: Path = Field(
        Path("/var/lib/aps-central/keys/central-signing.key"),
        description="Central's Ed25519 signing key (PKCS#8 PEM, mode 0600); made by "
        "`aps-central ca init` if missing (never by `run`: a lost key must not be replaced "
        "silently, every kiosk trusts it). Kiosks get its public key at provisioning.",
    )
    next_signing_key: Path | None = Field(
        None,
        description="Rotation: central's next signing key (PKCS#8 PEM, 0600). While set, the "
        "kiosks are sent a key-set announcement (signed with signing_key) naming both keys; "
        "once every kiosk has it, make this the signing_key (docs/protocol.md, "
        '"Key rotation").',
    )
    key_set_serial: int = Field(
        1,
        ge=1,
        description="Serial of the announced key set; raise it with every rotation step (a "
        "kiosk ignores an announcement whose serial is not above the one it holds).",
    )

    def key_announcement(self) -> bytes:
        """The signed announcement of central's key set: signing_key, then next_signing_key."""
        current = self.load_signing_key()
        keys = [current.public_key()]
        if self.next_signing_key is not None:
            try:
                keys.append(load_private_key(self.next_signing_key).public_key())
            except KeyFileError as exc:
                raise ConfigError(f"[security] next_signing_key: {exc}") from None
        obj = key_announcement(keys, serial=self.key_set_serial)
        return sign_downlink(json.dumps(obj).encode("utf-8"), current)

    def load_signing_key(self) -> Ed25519PrivateKey:
        """Central's signing key; a clear ConfigError naming the fix if it cannot be used."""
        try:
            return load_private_key(self.signing_key)
        except KeyFileError as exc:
            raise ConfigError(f"[security] signing_key: {exc}") from None


class EnrolmentSection(Section):
    """Enrolment of kiosks over central's HTTPS service (docs/enrolment.md)."""

    enabled: bool = Field(
        False,
        description="Serve `POST /v1/enrol` and `/v1/enrol/renew` on the API (`[api] listen`), "
        "over HTTPS with a server certificate from the fleet CA.",
    )
    ca_dir: Path = Field(
        Path("/var/lib/aps-central/ca"),
        description="The fleet CA (`ca.key` 0600, `ca.crt`), made by `aps-central ca init` "
        "or on first use; also holds central's HTTPS certificate (`server.crt`/`server.key`). "
        "`ca.crt` is the broker's `cafile`.",
    )
    central_url: str = Field(
        "",
        max_length=300,
        description="Central's HTTPS address as kiosks reach it, e.g. "
        "`https://central.example.vn:8443`; written into each kiosk's `[identity]`.",
    )
    server_names: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Host names and IP addresses central's HTTPS certificate covers (the "
        "host of `central_url` is always added).",
    )
    broker_host: str = Field(
        "",
        max_length=253,
        description="The broker's address handed to kiosks (their `[mqtt] host`); empty: the "
        "host of `central_url`.",
    )
    broker_port: int = Field(
        8883, ge=1, le=65535, description="The broker's TLS listener for kiosks."
    )
    broker_admin: str = Field(
        "aps-admin",
        max_length=100,
        description="The broker's dynamic-security admin (`mosquitto_ctrl dynsec init`): "
        "enrolment creates each kiosk's broker identity and revocation deletes it, over "
        "central's `[mqtt]` host and port.",
    )
    broker_admin_password_file: Path | None = Field(
        None,
        description="File holding that admin's password (mode 0600). Unset: kiosks' broker "
        "identities are made by hand (`python -m central.broker_identities add-kiosk`).",
    )
    crl_file: Path | None = Field(
        None,
        description="Where to write the CRL of revoked kiosks' certificates (PEM), at every "
        "start and revocation, for the broker's `crlfile`; reload the broker after a "
        "revocation (`systemctl reload mosquitto`). Unset: no CRL (revocation still deletes "
        "the kiosk's broker identity at once).",
    )
    token_lifetime_h: float = Field(
        24.0, gt=0, le=168, description="Default lifetime of an enrolment token, hours."
    )
    offices: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Agency ids of the offices central enrols kiosks for (e.g. "
        '`["000.00.14.H56"]`); offices in the support roster are known as well.',
    )

    @field_validator("central_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if value:
            url = urlsplit(value)
            if url.scheme != "https" or not url.hostname:
                raise ValueError(
                    f"{value!r} is not an https:// URL; kiosks enrol over HTTPS only, give "
                    "e.g. https://central.example.vn:8443"
                )
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.enabled and not self.central_url:
            raise ValueError(
                "enrolment.enabled is true but enrolment.central_url is empty: give the "
                "https:// address kiosks reach central at"
            )
        return self

    def names(self) -> list[str]:
        """Every name central's HTTPS certificate must cover."""
        host = urlsplit(self.central_url).hostname if self.central_url else None
        out = list(self.server_names)
        if host and host not in out:
            out.insert(0, host)
        return out

    def broker_address(self) -> tuple[str, int]:
        host = self.broker_host or urlsplit(self.central_url).hostname or "127.0.0.1"
        return host, self.broker_port


class ConsoleSection(Section):
    """The web console for admins and staff at ``/console`` on the API (docs/console.md)."""

    idle_timeout_s: float = Field(
        1800.0, ge=60, le=86400, description="A console session unused this long ends."
    )
    absolute_timeout_s: float = Field(
        43200.0,
        ge=300,
        le=7 * 86400,
        description="A console session ends this long after login, however much it is used.",
    )
    max_failures: int = Field(
        5, ge=1, le=100, description="Wrong passwords in a row that lock a console account."
    )
    lockout_s: float = Field(
        900.0,
        ge=1,
        le=86400,
        description="How long a locked console account stays locked "
        "(or until `aps-central console user unlock NAME`).",
    )
    client_free_failures: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Failed console logins from one address before each further try must "
        "wait (1 s, 2 s, 4 s ... up to 300 s).",
    )
    argon2_time_cost: int = Field(3, ge=1, le=20, description="argon2id iterations.")
    argon2_memory_kib: int = Field(
        65536, ge=8192, le=1048576, description="argon2id memory per hash, KiB."
    )
    argon2_parallelism: int = Field(4, ge=1, le=16, description="argon2id lanes.")
    cookie_secure: bool | Literal["auto"] = Field(
        "auto",
        description='The Secure flag of the console\'s cookies. "auto": when the request came '
        "over HTTPS, served by central itself or by a TLS proxy on the same machine that sends "
        "`X-Forwarded-Proto: https`; true: always (a TLS proxy on another machine); false: "
        "never (plain HTTP only, e.g. on a private network).",
    )

    def settings(self, thresholds: Thresholds | None = None) -> ConsoleSettings:
        """The web app's settings; ``thresholds``: ``[fleet]``'s, for the kiosks' states."""
        return ConsoleSettings(
            thresholds=thresholds or Thresholds(),
            idle_timeout_s=self.idle_timeout_s,
            absolute_timeout_s=self.absolute_timeout_s,
            max_failures=self.max_failures,
            lockout_s=self.lockout_s,
            client_free_failures=self.client_free_failures,
            argon2_time_cost=self.argon2_time_cost,
            argon2_memory_kib=self.argon2_memory_kib,
            argon2_parallelism=self.argon2_parallelism,
            cookie_secure=None if self.cookie_secure == "auto" else self.cookie_secure,
        )


class UpdatesSection(Section):
    """Software releases and their rollout to the kiosks (docs/updates.md)."""

    releases_dir: Path = Field(
        Path("/var/lib/aps/releases"),
        description="Where `aps-central release add` stores signed releases; served to the "
        "kiosks at /v1/releases/<version>/.",
    )
    soak_s: float = Field(
        3600.0,
        ge=0,
        description="A rollout ring advances when all its kiosks committed the release, or "
        "after this long without too many failures.",
    )
    max_failure_rate: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="A ring whose kiosks rolled back, failed or went inconsistent above this "
        "share stops the rollout by itself.",
    )
    tick_s: float = Field(
        30.0,
        ge=0.5,
        le=3600,
        description="How often central judges the running rollout's ring (advance, stop) and "
        "orders the `update` jobs of its kiosks.",
    )


class CentralConfig(Section):
    central: CentralSection = Field(default_factory=CentralSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    collector: CollectorSection = Field(default_factory=CollectorSection)
    amqp: AmqpSection = Field(default_factory=AmqpSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    quotas: QuotasSection = Field(default_factory=QuotasSection)
    attachments: AttachmentsSection = Field(default_factory=AttachmentsSection)
    notify: NotifySection = Field(default_factory=NotifySection)
    support: SupportSection = Field(default_factory=SupportSection)
    api: ApiSection = Field(default_factory=ApiSection)

    def support_settings(self) -> SupportSettings:
        return SupportSettings(
            hotline=self.support.hotline,
            timezone=self.support.timezone,
            notify_max_attempts=self.notify.max_attempts,
            notify_backoff_s=self.notify.backoff_s,
            notify_backoff_max_s=self.notify.backoff_max_s,
        )

    @model_validator(mode="after")
    def _amqp_source(self) -> Self:
        if self.collector.source == "amqp":
            if not self.amqp.urls:
                raise ValueError(
                    'amqp.urls: required with [collector] source = "amqp" (the RabbitMQ '
                    "nodes' AMQP URLs, e.g. amqp://10.0.0.1:5672/%2F)"
                )
            if self.amqp.prefetch < self.collector.batch_max:
                raise ValueError(
                    f"amqp.prefetch: {self.amqp.prefetch} is below [collector] batch_max "
                    f"({self.collector.batch_max}): a batch could never fill"
                )
        return self

    def amqp_settings(self) -> AmqpSettings:
        c, a = self.collector, self.amqp
        return AmqpSettings(
            urls=tuple(a.urls),
            username=a.username,
            password=None if a.password is None else a.password.get_secret_value(),
            queue=a.queue,
            prefetch=a.prefetch,
            name=c.client_id,
            batch_max=c.batch_max,
            batch_wait_s=max(c.batch_wait_ms / 1000, 0.05),
            max_record_bytes=c.max_record_kb * 1024,
        )

    downlink: DownlinkSection = Field(default_factory=DownlinkSection)
    dossiers: DossiersSection = Field(default_factory=DossiersSection)
    signing: SigningSection = Field(default_factory=SigningSection)
    security: SecuritySection = Field(default_factory=SecuritySection)
    enrolment: EnrolmentSection = Field(default_factory=EnrolmentSection)
    console: ConsoleSection = Field(default_factory=ConsoleSection)
    fleet: FleetSection = Field(default_factory=FleetSection)
    updates: UpdatesSection = Field(default_factory=UpdatesSection)


def load_central_config(path: Path | str, overrides: dict[str, Any] | None = None) -> CentralConfig:
    return load(CentralConfig, path, overrides)
