"""Typed configuration files (TOML), validated once at start-up.

Each role (kiosk agent, central) has one TOML file whose sections are pydantic
models. Unknown keys are refused, and every error names the key, the rule and
the file, so a technician can fix it from the message alone. docs/configuration.md
is generated from these models (``aps-agent config-doc``) and a test keeps it
current.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sync import SyncError
from sync.mqtt_link import MqttSettings


class ConfigError(SyncError):
    """A configuration file is missing, unreadable or invalid."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSection(Section):
    host: str = Field("127.0.0.1", description="MQTT broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port (8883 with TLS).")
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keep-alive, seconds.")
    username: str | None = Field(
        None, description="MQTT user name; kiosks use their kiosk id. Unset with TLS client certs."
    )
    password: str | None = Field(None, description="MQTT password, if the broker uses passwords.")
    tls_ca: Path | None = Field(None, description="CA certificate file; setting it turns TLS on.")
    tls_cert: Path | None = Field(None, description="Client certificate file (mutual TLS).")
    tls_key: Path | None = Field(None, description="Client private key file (mutual TLS).")

    def settings(self) -> MqttSettings:
        return MqttSettings(
            host=self.host,
            port=self.port,
            keepalive_s=self.keepalive_s,
            username=self.username,
            password=self.password,
            tls_ca=self.tls_ca,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
        )


M = TypeVar("M", bound=BaseModel)


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check its spelling against docs/configuration.md"
        elif err["type"] == "missing":
            msg = "required key is missing; see docs/configuration.md"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load(model: type[M], path: Path | str, overrides: dict[str, Any] | None = None) -> M:
    """Read and validate a TOML file into ``model``; raise ConfigError."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {p} not found; pass --config PATH") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {p} is not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(p))) from None


def _describe_default(field: Any) -> str:
    if field.is_required():
        return "(required)"
    default = field.default
    if default is None:
        return "(unset)"
    if isinstance(default, BaseModel):
        return ""
    return f"`{default!r}`".replace("'", '"') if isinstance(default, str) else f"`{default}`"


def markdown_reference(model: type[BaseModel], title: str) -> str:
    """A markdown table of every key of every section, with defaults."""
    out = [f"## {title}", ""]
    for name, field in model.model_fields.items():
        section = field.annotation
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            continue
        out += [f"### `[{name}]`", "", "| key | default | meaning |", "|---|---|---|"]
        for key, sub in section.model_fields.items():
            desc = (sub.description or "").replace("|", "\\|")
            out.append(f"| `{key}` | {_describe_default(sub)} | {desc} |")
        out.append("")
    return "\n".join(out)
