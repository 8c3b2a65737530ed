"""Typed configuration files (TOML), validated once at start-up.

Each role (kiosk agent, central) has one TOML file whose sections are pydantic
models. Unknown keys are refused, and every error names the key, the rule and
the file, so a technician can fix it from the message alone. docs/configuration.md
is generated from these models (``aps-agent config-doc``) and a test keeps it
current.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from sync import SyncError
from sync.mqtt_link import MqttSettings


class ConfigError(SyncError):
    """A configuration file is missing, unreadable or invalid."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _readable_file(path: Path) -> Path:
    """``path`` if it is a regular file this process can read; else a ValueError saying why."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; give the full path of the file") from None
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is not a regular file; give the path of the PEM file")
    if not os.access(path, os.R_OK):
        raise ValueError(
            f"{path} is not readable by this user (uid {os.geteuid()}); "
            "fix its owner or mode (the service runs as user aps)"
        )
    return path


class MqttSection(Section):
    host: str = Field("127.0.0.1", description="MQTT broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port (8883 with TLS).")
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keep-alive, seconds.")
    username: str | None = Field(
        None, description="MQTT user name; kiosks use their kiosk id. Unset with TLS client certs."
    )
    password: SecretStr | None = Field(
        None,
        description="MQTT password, if the broker uses passwords. Never printed "
        "(`check-config` shows `**********`). Without TLS it is refused unless `host` is a "
        "loopback address or `allow_plaintext_password` is true.",
    )
    allow_plaintext_password: bool = Field(
        False,
        description="Allow a password without TLS to a broker that is not on this machine "
        "(it then crosses the network in clear text; a warning is logged at every start). "
        "Only for a closed test network.",
    )
    tls_ca: Path | None = Field(
        None, description="CA certificate file (PEM); setting it turns TLS on."
    )
    tls_cert: Path | None = Field(
        None, description="Client certificate file (PEM, mutual TLS); needs `tls_ca`."
    )
    tls_key: Path | None = Field(
        None, description="Client private key file (PEM, mutual TLS); needs `tls_cert`."
    )

    @field_validator("tls_ca", "tls_cert", "tls_key")
    @classmethod
    def _tls_file(cls, value: Path | None) -> Path | None:
        return None if value is None else _readable_file(value)

    @model_validator(mode="after")
    def _tls_and_password(self) -> Self:
        import ssl

        if self.tls_cert is not None and self.tls_ca is None:
            raise ValueError(
                "mqtt.tls_cert is set but mqtt.tls_ca is not: TLS is on only with a CA; "
                "set mqtt.tls_ca to the broker's CA certificate"
            )
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError(
                "mqtt.tls_key is set but mqtt.tls_cert is not: set both for mutual TLS"
            )
        if self.tls_ca is not None:
            try:
                context = ssl.create_default_context(cafile=str(self.tls_ca))
            except ssl.SSLError as exc:
                raise ValueError(
                    f"mqtt.tls_ca: {self.tls_ca} holds no usable CA certificate ({exc.reason}); "
                    "give the broker's CA certificate in PEM form"
                ) from None
            if self.tls_cert is not None:
                try:
                    context.load_cert_chain(
                        str(self.tls_cert), None if self.tls_key is None else str(self.tls_key)
                    )
                except ssl.SSLError as exc:
                    key = "mqtt.tls_key" if self.tls_key is not None else "mqtt.tls_cert"
                    raise ValueError(
                        f"mqtt.tls_cert {self.tls_cert} and mqtt.tls_key {self.tls_key} do not "
                        f"load as a certificate and its private key ({exc.reason}); check {key}: "
                        "both PEM, the key unencrypted and matching the certificate"
                    ) from None
        if (
            self.password is not None
            and self.tls_ca is None
            and not _is_loopback(self.host)
            and not self.allow_plaintext_password
        ):
            raise ValueError(
                f"mqtt.password is set without TLS for broker {self.host}: it would cross the "
                "network in clear text. Set mqtt.tls_ca (and port 8883), or, on a closed test "
                "network only, mqtt.allow_plaintext_password = true"
            )
        return self

    def warnings(self, source: Path | None = None) -> list[str]:
        """What is allowed but unsafe; the services log these at start.

        ``source``: the file this section was read from; a password in a file
        every local account may read is worth a warning.
        """
        out = []
        if self.password is not None and self.tls_ca is None and not _is_loopback(self.host):
            out.append(
                f"mqtt.password is sent to broker {self.host}:{self.port} in clear text "
                "(no TLS; mqtt.allow_plaintext_password = true): use TLS in production"
            )
        if self.password is not None and source is not None:
            try:
                world_readable = bool(source.stat().st_mode & stat.S_IROTH)
            except OSError:
                world_readable = False
            if world_readable:
                out.append(
                    f"{source} holds mqtt.password and every local account can read it: "
                    f"chown root:aps {source}; chmod 640 {source}"
                )
        return out

    def settings(self) -> MqttSettings:
        return MqttSettings(
            host=self.host,
            port=self.port,
            keepalive_s=self.keepalive_s,
            username=self.username,
            password=None if self.password is None else self.password.get_secret_value(),
            tls_ca=self.tls_ca,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
        )


M = TypeVar("M", bound=BaseModel)


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check its spelling against docs/configuration.md"
        elif err["type"] == "missing":
            msg = "required key is missing; see docs/configuration.md"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


#: A configuration file is a few KiB; anything this big is the wrong file.
MAX_CONFIG_BYTES = 1024 * 1024


def read_config_text(path: Path) -> str:
    """The text of a configuration file, or ConfigError naming the file, the fault and the fix."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found; pass --config PATH") from None
    except OSError as exc:
        raise ConfigError(f"configuration file {path} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(
            f"configuration file {path} is a directory; pass --config with the path of the "
            "TOML file itself"
        )
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            f"configuration file {path} is not a regular file; pass --config with a TOML file"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except PermissionError:
        raise ConfigError(
            f"configuration file {path}: permission denied for uid {os.geteuid()}; run as "
            f"root or as the service's user, or fix the file (chown root:aps {path}; "
            f"chmod 640 {path})"
        ) from None
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        raise ConfigError(f"configuration file {path} cannot be read: {reason}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"configuration file {path} is larger than {MAX_CONFIG_BYTES} bytes; is it "
            "the right file? Pass --config with the TOML file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"configuration file {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at "
            f"line {line} (offset {exc.start}); save it as UTF-8 (it may also be a binary "
            "file, not the configuration)"
        ) from None


def load(model: type[M], path: Path | str, overrides: dict[str, Any] | None = None) -> M:
    """Read and validate a TOML file into ``model``; raise ConfigError."""
    p = Path(path)
    text = read_config_text(p)
    try:
        data = tomllib.loads(text)
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
