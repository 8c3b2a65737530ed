"""Alert kinds, their defaults, and the rules in force per office.

Theory of operation
-------------------
Every alert kind (:data:`KINDS`) has a default severity, timing and its own thresholds.
central.toml ``[alerts.rules.<kind>]`` overrides the defaults for the whole fleet; the
``alert_rules`` table (``aps-central alerts rules set``, audited) overrides them again for
one office. :func:`effective_rule` folds the three layers: a key an office sets wins, a key
it does not set falls through to the config, then to the kind's default. A rule is a frozen
:class:`Rule`; the engine never sees the layers.

Timing keys, common to every kind (seconds or minutes, as named):

- ``open_after_s``: the cause must be present this long before an alert opens;
- ``hold_down_s``: the cause must have been gone this long before the alert clears (a cause
  that returns within it keeps the same alert: no flapping);
- ``renotify_min``: while open and unacknowledged, notify again this often (0: never);
- ``escalate_after_min``: open and unacknowledged this long: escalate once (0: never).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from central import audit

__all__ = [
    "COMMON_DEFAULTS",
    "KINDS",
    "SEVERITIES",
    "KindSpec",
    "Rule",
    "RuleError",
    "effective_rule",
    "effective_rules",
    "ensure_schema",
    "office_overrides",
    "parse_assignments",
    "set_rule",
]

SEVERITIES = ("info", "warning", "critical")

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_rules (
    office TEXT NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    enabled INTEGER,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (office, kind)
);
"""


class RuleError(ValueError):
    """A rule change or a config override was refused; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True)
class KindSpec:
    severity: str
    summary: str  # English, for docs and `alerts rules`
    params: Mapping[str, float] = field(default_factory=dict)  # kind-specific thresholds
    timing: Mapping[str, float] = field(default_factory=dict)  # overrides COMMON_DEFAULTS


COMMON_DEFAULTS: Mapping[str, float] = {
    "open_after_s": 0.0,
    "hold_down_s": 120.0,
    "renotify_min": 60.0,
    "escalate_after_min": 60.0,
}

KINDS: Mapping[str, KindSpec] = {
    "offline": KindSpec(
        severity="critical",
        summary="not heard from (heartbeat or status) for longer than `minutes`",
        params={"minutes": 5.0},
    ),
    "paper-out": KindSpec(severity="critical", summary="the receipt printer is out of paper"),
    "paper-low": KindSpec(
        severity="warning",
        summary="the receipt printer's paper is near its end",
        timing={"renotify_min": 0.0, "escalate_after_min": 0.0},
    ),
    "cover-open": KindSpec(
        severity="warning", summary="the printer's cover is open", timing={"open_after_s": 60.0}
    ),
    "backlog": KindSpec(
        severity="warning",
        summary="more than `records` records queued, or the oldest older than `hours`",
        params={"records": 200.0, "hours": 1.0},
    ),
    "disk-low": KindSpec(
        severity="warning", summary="less than `mib` MiB free on disk", params={"mib": 500.0}
    ),
    "clock-off": KindSpec(
        severity="warning",
        summary="the kiosk's clock is off by more than `seconds`",
        params={"seconds": 120.0},
    ),
    "device-fault": KindSpec(
        severity="warning",
        summary="a device is in any other state than ok (unplugged, error, not answering...)",
        timing={"open_after_s": 30.0},
    ),
    "software-behind": KindSpec(
        severity="info",
        summary="the agent's version differs from the one the kiosk should run",
        timing={"open_after_s": 3600.0, "renotify_min": 0.0, "escalate_after_min": 0.0},
    ),
    "catalogue-behind": KindSpec(
        severity="info",
        summary="the kiosk's catalogue is not the published one",
        timing={"open_after_s": 1800.0, "renotify_min": 0.0, "escalate_after_min": 0.0},
    ),
    "duplicate-identity": KindSpec(
        severity="critical",
        summary="two boxes use one kiosk identity (seen within the last `hours`)",
        params={"hours": 24.0},
    ),
    "sequence-gap": KindSpec(
        severity="warning",
        summary="records the kiosk committed have not reached central for `minutes`",
        params={"minutes": 60.0},
    ),
    "dead-letters": KindSpec(
        severity="warning",
        summary="at least `count` messages from the kiosk dead-lettered in the last `minutes`",
        params={"count": 1.0, "minutes": 60.0},
    ),
    "support-unanswered": KindSpec(
        severity="warning",
        summary="a support request not acknowledged or resolved after `minutes`",
        params={"minutes": 15.0},
    ),
}


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One kind's rule as it applies to one office (all layers folded)."""

    kind: str
    office: str | None
    enabled: bool = True
    severity: str = "warning"
    open_after_s: float = 0.0
    hold_down_s: float = 120.0
    renotify_min: float = 60.0
    escalate_after_min: float = 60.0
    params: Mapping[str, float] = field(default_factory=dict)

    def param(self, name: str) -> float:
        return float(self.params[name])

    def as_dict(self) -> dict[str, Any]:
        return {
            "office": self.office,
            "kind": self.kind,
            "enabled": self.enabled,
            "severity": self.severity,
            "open_after_s": self.open_after_s,
            "hold_down_s": self.hold_down_s,
            "renotify_min": self.renotify_min,
            "escalate_after_min": self.escalate_after_min,
            **dict(self.params),
        }


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def _keys(kind: str) -> set[str]:
    return {"severity", "enabled", *COMMON_DEFAULTS, *KINDS[kind].params}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RuleError("kind", f"unknown alert kind {kind!r}; one of {', '.join(KINDS)}")


def check_values(kind: str, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate one kind's overrides; returns them normalised (floats, bool, severity)."""
    _check_kind(kind)
    out: dict[str, Any] = {}
    allowed = _keys(kind)
    for key, value in values.items():
        name = f"{where}.{key}"
        if key not in allowed:
            raise RuleError(
                name, f"not a setting of {kind}; use one of {', '.join(sorted(allowed))}"
            )
        if key == "severity":
            if value not in SEVERITIES:
                raise RuleError(name, f"{value!r} is not one of {', '.join(SEVERITIES)}")
            out[key] = value
        elif key == "enabled":
            if not isinstance(value, bool):
                raise RuleError(name, f"{value!r} is not true or false")
            out[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RuleError(name, f"{value!r} is not a number")
            number = float(value)
            if not math.isfinite(number) or number < 0 or number > 10_000_000:
                raise RuleError(name, f"{value!r} must be a number from 0 to 10000000")
            out[key] = number
    return out


def parse_assignments(kind: str, pairs: list[str]) -> dict[str, Any]:
    """``["minutes=10", "severity=critical"]`` -> validated overrides (CLI input)."""
    _check_kind(kind)
    raw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise RuleError(pair, "write settings as key=value, e.g. minutes=10")
        if key == "severity":
            raw[key] = text
        elif key == "enabled":
            if text.lower() not in ("true", "false"):
                raise RuleError(key, f"{text!r} is not true or false")
            raw[key] = text.lower() == "true"
        else:
            try:
                raw[key] = float(text)
            except ValueError:
                raise RuleError(key, f"{text!r} is not a number") from None
    return check_values(kind, raw, kind)


def check_config_rules(rules: Mapping[str, Mapping[str, Any]]) -> None:
    """central.toml ``[alerts.rules.<kind>]`` tables (raises :class:`RuleError`)."""
    for kind, values in rules.items():
        if kind not in KINDS:
            raise RuleError(
                f"alerts.rules.{kind}", f"unknown alert kind; one of {', '.join(KINDS)}"
            )
        check_values(kind, values, f"alerts.rules.{kind}")


def office_overrides(conn: sqlite3.Connection, office: str | None = None) -> list[dict[str, Any]]:
    """The rows of ``alert_rules`` (of one office), oldest first; empty without the table."""
    sql = "SELECT office, kind, params, enabled, updated_at, updated_by FROM alert_rules"
    args: tuple[Any, ...] = ()
    if office is not None:
        sql, args = sql + " WHERE office = ?", (office,)
    try:
        rows = conn.execute(sql + " ORDER BY office, kind", args).fetchall()
    except sqlite3.OperationalError:
        return []
    return [
        {
            "office": o,
            "kind": k,
            "params": json.loads(p),
            "enabled": None if e is None else bool(e),
            "updated_at": at,
            "updated_by": by,
        }
        for o, k, p, e, at, by in rows
    ]


def effective_rule(
    kind: str,
    office: str | None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    override: Mapping[str, Any] | None = None,
) -> Rule:
    spec = KINDS[kind]
    merged: dict[str, Any] = {"severity": spec.severity, "enabled": True}
    merged.update(COMMON_DEFAULTS)
    merged.update(spec.timing)
    merged.update(spec.params)
    merged.update((config or {}).get(kind, {}))
    merged.update(override or {})
    params = {k: float(merged[k]) for k in spec.params}
    return Rule(
        kind=kind,
        office=office,
        enabled=bool(merged["enabled"]),
        severity=str(merged["severity"]),
        open_after_s=float(merged["open_after_s"]),
        hold_down_s=float(merged["hold_down_s"]),
        renotify_min=float(merged["renotify_min"]),
        escalate_after_min=float(merged["escalate_after_min"]),
        params=params,
    )


class RuleBook:
    """Every office's rules, read once per evaluation round: ``book.rule(office, kind)``."""

    def __init__(
        self,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        overrides: list[dict[str, Any]] | None = None,
    ) -> None:
        self.config = config or {}
        self._office: dict[tuple[str, str], dict[str, Any]] = {}
        for row in overrides or []:
            if row["kind"] not in KINDS:
                continue  # a kind a newer central knew; ignored, not fatal
            values = dict(row["params"])
            if row["enabled"] is not None:
                values["enabled"] = row["enabled"]
            self._office[(row["office"], row["kind"])] = values
        self._cache: dict[tuple[str | None, str], Rule] = {}

    @classmethod
    def load(
        cls, conn: sqlite3.Connection, config: Mapping[str, Mapping[str, Any]] | None = None
    ) -> RuleBook:
        return cls(config, office_overrides(conn))

    def rule(self, office: str | None, kind: str) -> Rule:
        key = (office, kind)
        if key not in self._cache:
            override = self._office.get((office, kind)) if office is not None else None
            self._cache[key] = effective_rule(kind, office, self.config, override)
        return self._cache[key]


def effective_rules(
    conn: sqlite3.Connection,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    office: str | None = None,
) -> list[Rule]:
    """Every kind's rule for ``office`` (None: the fleet-wide defaults)."""
    book = RuleBook.load(conn, config)
    return [book.rule(office, kind) for kind in KINDS]


def set_rule(
    conn: sqlite3.Connection,
    office: str,
    kind: str,
    values: Mapping[str, Any],
    *,
    actor: str,
    disable: bool = False,
    now: float,
) -> dict[str, Any]:
    """Merge ``values`` into the office's override of ``kind`` (audited); returns the row.

    ``disable`` turns the kind off for the office; setting ``enabled=true`` turns it on.
    ``conn`` is outside any transaction (autocommit, as :mod:`central.backoffice_db`).
    """
    if not office or len(office) > 64:
        raise RuleError("office", "give the office's code (1 to 64 characters), e.g. --office HN01")
    checked = check_values(kind, values, kind)
    ensure_schema(conn)
    audit.ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT params, enabled FROM alert_rules WHERE office = ? AND kind = ?",
            (office, kind),
        ).fetchone()
        params: dict[str, Any] = json.loads(row[0]) if row else {}
        enabled: bool | None = None if row is None or row[1] is None else bool(row[1])
        if "enabled" in checked:
            enabled = bool(checked.pop("enabled"))
        if disable:
            enabled = False
        params.update(checked)
        conn.execute(
            "INSERT INTO alert_rules (office, kind, params, enabled, updated_at, updated_by)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (office, kind) DO UPDATE SET"
            " params = excluded.params, enabled = excluded.enabled,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (office, kind, json.dumps(params, sort_keys=True), enabled, now, actor),
        )
        audit.record(
            conn,
            actor,
            "alert-rule.set",
            f"alert-rule:{office}:{kind}",
            {"params": params, "enabled": enabled, "changed": dict(values), "disable": disable},
            now=now,
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return {"office": office, "kind": kind, "params": params, "enabled": enabled}
