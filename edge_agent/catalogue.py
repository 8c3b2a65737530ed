"""The procedure catalogue: procedures, their papers, fees, limits and form schema.

Central pushes the catalogue (retained, versioned) on ``aps/v1/fleet/down/catalogue``;
the kiosk caches the newest version it has seen and falls back to the copy
shipped with the agent (``edge_agent/data/catalogue.json``) when it has none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

from edge_agent import CitizenError


class FormError(CitizenError):
    """A form field is missing or breaks its rule; names the field and the limit."""

    def __init__(self, field: str, message: str, message_vi: str) -> None:
        super().__init__(f"form.{field}: {message}", message_vi)
        self.field = field


@dataclass(frozen=True, kw_only=True)
class FormField:
    name: str
    label: str
    type: str
    required: bool = False
    max_len: int | None = None
    choices: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True, kw_only=True)
class Procedure:
    code: str
    name: str
    same_day: bool
    working_days: int
    fee_vnd: int
    papers: tuple[str, ...]
    form: tuple[FormField, ...]

    def validate(self, form: dict[str, Any]) -> dict[str, Any]:
        """Return the cleaned form, or raise FormError naming the field."""
        clean: dict[str, Any] = {}
        known = {f.name for f in self.form}
        for name in form:
            if name not in known:
                raise FormError(name, "unknown field", f"Trường '{name}' không thuộc mẫu đơn này.")
        for f in self.form:
            value = form.get(f.name)
            if value is None or (isinstance(value, str) and not value.strip()):
                if f.required:
                    raise FormError(f.name, "required", f"Vui lòng nhập «{f.label}».")
                continue
            clean[f.name] = _check(f, value)
        return clean


def _check(f: FormField, value: Any) -> Any:
    if f.type == "text":
        if not isinstance(value, str):
            raise FormError(f.name, "expected text", f"«{f.label}» phải là chữ.")
        value = " ".join(value.split())
        if f.max_len is not None and len(value) > f.max_len:
            raise FormError(
                f.name,
                f"longer than {f.max_len} characters",
                f"«{f.label}» dài quá {f.max_len} ký tự.",
            )
        return value
    if f.type == "date":
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise FormError(
                f.name, "expected a date YYYY-MM-DD", f"«{f.label}» không phải ngày hợp lệ."
            ) from None
    if f.type == "choice":
        if value not in f.choices:
            raise FormError(
                f.name,
                f"expected one of {list(f.choices)}",
                f"Vui lòng chọn «{f.label}» trong danh sách.",
            )
        return value
    if f.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise FormError(f.name, "expected a whole number", f"«{f.label}» phải là số.")
        if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
            raise FormError(
                f.name,
                f"must be between {f.min} and {f.max}",
                f"«{f.label}» phải từ {f.min} đến {f.max}.",
            )
        return value
    raise FormError(f.name, f"unknown field type {f.type!r}", "Mẫu đơn bị lỗi.")


@dataclass(frozen=True, kw_only=True)
class Catalogue:
    version: str
    procedures: dict[str, Procedure]

    def get(self, code: str) -> Procedure:
        try:
            return self.procedures[code]
        except KeyError:
            raise CitizenError(
                f"unknown procedure {code!r} (catalogue {self.version})",
                "Không tìm thấy thủ tục này. Vui lòng hỏi cán bộ tại quầy.",
            ) from None


def parse_catalogue(data: dict[str, Any]) -> Catalogue:
    procs: dict[str, Procedure] = {}
    for p in data["procedures"]:
        procs[p["code"]] = Procedure(
            code=p["code"],
            name=p["name"],
            same_day=bool(p["time_limit"]["same_day"]),
            working_days=int(p["time_limit"]["working_days"]),
            fee_vnd=int(p["fee_vnd"]),
            papers=tuple(p.get("papers", ())),
            form=tuple(
                FormField(
                    name=f["name"],
                    label=f["label"],
                    type=f["type"],
                    required=bool(f.get("required", False)),
                    max_len=f.get("max_len"),
                    choices=tuple(f.get("choices", ())),
                    min=f.get("min"),
                    max=f.get("max"),
                )
                for f in p["form"]
            ),
        )
    return Catalogue(version=str(data["version"]), procedures=procs)


def bundled_catalogue() -> Catalogue:
    text = resources.files("edge_agent").joinpath("data/catalogue.json").read_text("utf-8")
    return parse_catalogue(json.loads(text))
