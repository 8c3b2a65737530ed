"""Central's configuration file (``/etc/aps/central.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from central.collector import CollectorSettings
from central.sequences import DEFAULT_MAX_SEQ_JUMP
from sync.config import MqttSection, Section, load


class CentralSection(Section):
    database: Path = Field(
        Path("/var/lib/aps/central.db"), description="Central's SQLite store (default backend)."
    )
    log_level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level."
    )


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


class CentralConfig(Section):
    central: CentralSection = Field(default_factory=CentralSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    collector: CollectorSection = Field(default_factory=CollectorSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)


def load_central_config(path: Path | str, overrides: dict[str, Any] | None = None) -> CentralConfig:
    return load(CentralConfig, path, overrides)
