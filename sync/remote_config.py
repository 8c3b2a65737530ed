"""Remote configuration: which agent settings central may set, their bounds, the wire bodies.

Theory of operation
-------------------
An admin sets *desired* values per office or per kiosk (``aps-central config
set``); a kiosk's **effective** configuration is its office's values with the
kiosk's own on top. Central versions the effective configuration per kiosk
(``version``: an integer that grows by one whenever the content changes;
``digest``: SHA-256 of the canonical JSON of ``settings``) and sends it as the
downlink item ``config`` (key ``agent``, audience ``kiosk:<id>``), signed with
the rest of the state reply.

Only the settings in :data:`SETTINGS` can be set remotely, each with a type
and bounds. Identity, broker address, paths and keys never can: a wrong one
would cut the kiosk off from the very channel that could repair it.

The kiosk checks the item with :func:`check_settings` (every rule here, the
digest too). A good one is stored (in the same transaction as the downlink
cursor) and applied; a bad one is refused, the last good one kept, and the
refusal (field and reason) reported as a ``config`` record. Both sides use this
module, so central refuses at ``config set`` what a kiosk would refuse.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

from sync import SyncError

ITEM_KIND = "config"
ITEM_KEY = "agent"
LOG_LEVELS = ("debug", "info", "warning", "error")
_HOURS_RE = re.compile(r"\A([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]\Z")
NOTICE_CHARS = 300


class RemoteConfigError(SyncError, ValueError):
    """A setting central may not set, or a value outside its bounds (``field`` names it)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Setting:
    name: str
    help: str
    check: Callable[[Any], Any]  # returns the value or raises ValueError(reason)
    parse: Callable[[str], Any]  # the CLI's text -> a value


def _int(low: int, high: int, unit: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number of {unit}")
        if not low <= value <= high:
            raise ValueError(f"{value} is out of bounds: must be {low} to {high} {unit}")
        return value

    return check


def _parse_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text  # the check names the rule


def _choice(options: tuple[str, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in options:
            raise ValueError(f"{value!r}: expected one of {', '.join(options)}")
        return value

    return check


def _hours(value: Any) -> Any:
    if not isinstance(value, str) or not _HOURS_RE.match(value):
        raise ValueError(f"{value!r}: expected opening hours HH:MM-HH:MM, e.g. 07:30-17:00")
    if value[:5] >= value[6:]:
        raise ValueError(f"{value!r}: the opening time must be before the closing time")
    return value


def _notice(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("expected text")
    if len(value) > NOTICE_CHARS:
        raise ValueError(f"{len(value)} characters, at most {NOTICE_CHARS}")
    if unicodedata.normalize("NFC", value) != value:
        raise ValueError("not in Unicode NFC form (type it again or normalise it)")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in value):
        raise ValueError("contains a control or invisible character; one line of plain text")
    return value


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            name="session_idle_s",
            help="seconds without a touch before a citizen's session ends (30-1800)",
            check=_int(30, 1800, "seconds"),
            parse=_parse_int,
        ),
        Setting(
            name="heartbeat_interval_s",
            help="seconds between heartbeats (10-3600)",
            check=_int(10, 3600, "seconds"),
            parse=_parse_int,
        ),
        Setting(
            name="log_level",
            help="the agent's log level: debug, info, warning or error",
            check=_choice(LOG_LEVELS),
            parse=str,
        ),
        Setting(
            name="office_hours",
            help="opening hours the screen shows, HH:MM-HH:MM",
            check=_hours,
            parse=str,
        ),
        Setting(
            name="screen_notice_vi",
            help=f"a one-line notice (Vietnamese) on the home screen, at most {NOTICE_CHARS}",
            check=_notice,
            parse=str,
        ),
        Setting(
            name="receipt_copies",
            help="copies of each filing slip the printer prints (1-3)",
            check=_int(1, 3, "copies"),
            parse=_parse_int,
        ),
    )
}


def check_setting(name: str, value: Any) -> Any:
    setting = SETTINGS.get(name)
    if setting is None:
        raise RemoteConfigError(
            name,
            "cannot be set remotely; settable: " + ", ".join(SETTINGS),
        )
    try:
        return setting.check(value)
    except ValueError as exc:
        raise RemoteConfigError(name, str(exc)) from None


def parse_setting(text: str) -> tuple[str, Any]:
    """``"session_idle_s=120"`` -> ``("session_idle_s", 120)``, checked."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise RemoteConfigError(text, "expected key=value, e.g. session_idle_s=120")
    name = name.strip()
    setting = SETTINGS.get(name)
    if setting is None:
        check_setting(name, raw)
    assert setting is not None
    return name, check_setting(name, setting.parse(raw))


def check_settings(settings: Any) -> dict[str, Any]:
    """Every setting checked; :class:`RemoteConfigError` names the first bad one."""
    if not isinstance(settings, dict):
        raise RemoteConfigError("settings", "expected an object")
    return {name: check_setting(name, value) for name, value in sorted(settings.items())}


def canonical(settings: Mapping[str, Any]) -> bytes:
    return json.dumps(
        dict(sorted(settings.items())), ensure_ascii=False, separators=(",", ":")
    ).encode()


def digest(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(settings)).hexdigest()


def item_body(version: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {"version": version, "digest": digest(settings), "settings": dict(settings)}


def check_item(body: Mapping[str, Any]) -> tuple[int, str, dict[str, Any]]:
    """A ``config`` item as the kiosk checks it: (version, digest, settings) or refused."""
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**63:
        raise RemoteConfigError("version", "expected a whole number of at least 1")
    settings = check_settings(body.get("settings"))
    if body.get("digest") != digest(settings):
        raise RemoteConfigError("digest", "does not match the settings (SHA-256 of the JSON)")
    return version, str(body["digest"]), settings


def check_item_shape(body: dict[str, Any]) -> None:
    """The inbox's validator: only the shape, so a bad value reaches the handler and is
    *reported* as refused rather than silently skipped."""
    if not isinstance(body.get("settings"), dict):
        raise ValueError("settings: expected an object")
    if not isinstance(body.get("version"), int):
        raise ValueError("version: expected a whole number")


# -- the report record (kind ``config``) ---------------------------------------------------
_strict = with_config(ConfigDict(strict=True, extra="ignore"))


@_strict
class ConfigReportBody(TypedDict):
    version: Annotated[int, Field(ge=0, le=2**63 - 1)]
    digest: Annotated[str, Field(max_length=64, pattern=r"^[0-9a-f]{64}$")]
    state: Literal["applied", "refused"]
    field: NotRequired[Annotated[str, Field(max_length=64)] | None]
    reason: NotRequired[Annotated[str, Field(max_length=500)] | None]


CONFIG_REPORT = TypeAdapter(ConfigReportBody)
