"""Helpers to build a KioskApp over real files (and a real broker when given)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from drivers.identity import Identity
from edge_agent.config import AgentConfig, load_agent_config
from sync.mqtt_link import MqttSettings
from tests.stack import write_agent_config

KIOSK = "k-app-01"
REAL_ACCOUNT = {"bank_bin": "970436", "account": "0011002345678", "beneficiary": "UBND PHUONG 1"}


def app_config(
    tmp_path: Path,
    mqtt: MqttSettings | None = None,
    *,
    kiosk: str = KIOSK,
    payment: dict[str, Any] | None = None,
    devices: dict[str, Any] | None = None,
    kiosk_extra: dict[str, Any] | None = None,
) -> AgentConfig:
    """An agent config under ``tmp_path``; without ``mqtt`` it points at a closed port."""
    path = write_agent_config(
        tmp_path / f"{kiosk}.toml",
        tmp_path / f"{kiosk}.db",
        mqtt or MqttSettings(port=9, username=kiosk),
        kiosk=kiosk,
    )
    overrides: dict[str, Any] = {
        "agent": {
            "database": str(tmp_path / f"{kiosk}.db"),
            "receipts_dir": str(tmp_path / f"{kiosk}-receipts"),
        },
        "payment": REAL_ACCOUNT if payment is None else payment,
        "kiosk": {"hotline": "0277 3861 234", **(kiosk_extra or {})},
    }
    if devices:
        overrides["devices"] = devices
    return load_agent_config(path, _merge(overrides))


def _merge(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as the dotted overrides sync.config.load takes (leaves replaced)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_merge(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def card(
    name: str = "Nguyễn Thị Ngọc Hường", number: str = "087205001234", source: str = "qr"
) -> Identity:
    return Identity(
        id_number=number,
        old_id_number=None,
        full_name=name,
        date_of_birth=date(1985, 3, 14),
        sex="F",
        address="Phường 1, TP. Sa Đéc, Đồng Tháp",
        issue_date=date(2021, 8, 15),
        expiry_date=None,
        document_number=None,
        nationality=None,
        source=source,  # type: ignore[arg-type]
    )


def strokes() -> list[list[list[int]]]:
    """A short signature: two strokes."""
    return [
        [[10, 60, 0], [40, 20, 30], [70, 70, 60], [100, 25, 90]],
        [[120, 50, 400], [180, 52, 450]],
    ]
