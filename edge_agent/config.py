"""The kiosk agent's configuration file (``/etc/aps/agent.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from sync.client import SyncSettings
from sync.config import MqttSection, Section, load


class KioskSection(Section):
    id: str = Field(
        ...,
        pattern=r"^[a-z0-9][a-z0-9-]{1,62}$",
        description="Kiosk id given at enrolment (lower-case letters, digits, '-'); "
        "also its MQTT user name and certificate CN.",
    )
    agency: str = Field(
        ...,
        pattern=r"^[0-9A-Z][0-9A-Z.]{2,30}$",
        description="Receiving agency identifier that starts every dossier code "
        "(TT 01/2018/TT-VPCP art. 19), e.g. `000.00.14.H56`.",
    )
    slot: int = Field(
        ...,
        ge=0,
        le=9,
        description="This kiosk's digit among the office's kiosks (0-9), given at "
        "enrolment; dossier codes are slot*1000 + n so offline kiosks never collide.",
    )
    office_name: str = Field("Bộ phận Một cửa", description="Office name printed on receipts.")
    hotline: str = Field("", description="Support team hotline printed on receipts.")
    timezone: str = Field("Asia/Ho_Chi_Minh", description="Time zone of the office.")


class AgentSection(Section):
    database: Path = Field(
        Path("/var/lib/aps/kiosk.db"),
        description="The kiosk's SQLite database (outbox, dossiers). Keep it on the "
        "most reliable disk; its directory must be writable.",
    )
    receipts_dir: Path = Field(
        Path("/var/lib/aps/receipts"), description="Copies of printed receipts, for reprints."
    )
    log_level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level."
    )


class SyncSection(Section):
    inflight_window: int = Field(
        256, ge=1, le=1000, description="Records published and not yet acknowledged, at most."
    )
    inflight_kb: int = Field(
        4096, ge=64, description="Bytes published and not yet acknowledged, at most (KiB)."
    )
    ack_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Publish a record again if central has not acked it."
    )
    reconnect_min_s: float = Field(
        1.0, gt=0, description="Backoff after the first failed connect (random, exponential)."
    )
    reconnect_max_s: float = Field(300.0, gt=0, description="Longest wait between connects.")
    heartbeat_interval_s: float = Field(60.0, ge=1, description="Seconds between heartbeats.")
    retention_days: float = Field(
        7.0, ge=0, description="Synced records are deleted from the kiosk after this many days."
    )
    max_queued: int = Field(
        100_000, ge=1, description="Records waiting to sync, at most; then filing is refused."
    )
    max_db_mb: int = Field(2048, ge=1, description="Size limit of the kiosk database, MiB.")
    min_free_disk_mb: int = Field(
        64, ge=0, description="Refuse new filings when the disk has less free space, MiB."
    )
    max_record_kb: int = Field(
        256, ge=1, le=1024, description="Largest record envelope, KiB (attachments are chunked)."
    )

    def settings(self) -> SyncSettings:
        return SyncSettings(
            inflight_window=self.inflight_window,
            inflight_bytes=self.inflight_kb * 1024,
            ack_timeout_s=self.ack_timeout_s,
            reconnect_min_s=self.reconnect_min_s,
            reconnect_max_s=self.reconnect_max_s,
            heartbeat_interval_s=self.heartbeat_interval_s,
            retention_s=self.retention_days * 86400,
        )

    def outbox_options(self) -> dict[str, Any]:
        return {
            "max_queued": self.max_queued,
            "max_db_bytes": self.max_db_mb * 1024 * 1024,
            "min_free_disk_bytes": self.min_free_disk_mb * 1024 * 1024,
            "max_record_bytes": self.max_record_kb * 1024,
        }


class AgentConfig(Section):
    kiosk: KioskSection
    agent: AgentSection = Field(default_factory=AgentSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    sync: SyncSection = Field(default_factory=SyncSection)


def load_agent_config(path: Path | str, overrides: dict[str, Any] | None = None) -> AgentConfig:
    return load(AgentConfig, path, overrides)
