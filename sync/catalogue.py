"""The procedure catalogue document: the wire contract between central and the kiosks.

Central validates a catalogue with :func:`parse_catalogue_document` before it
publishes it (``aps-central catalogue publish``), and every kiosk validates it
again before applying it (``edge_agent.catalogue.CatalogueStore.apply``): the
two sides share this one schema, so a document central accepts is one a
kiosk of the same release accepts.

Theory of operation
-------------------
The document is plain JSON (docs/catalogue.md describes every key)::

    {"version": "2026.12.1", "published_at": "...", "sources": [{"id", "title", "url"}],
     "procedures": [{"code", "name", "field", "time_limit", "fee", "papers", "form",
                     "guidance", "keywords", "no_wait_day", "thursday", "basis",
                     "sources", "verified", "note"}]}

Every string, list and number is bounded (the constants below), the whole
document must fit in one downlink item (``MAX_DOCUMENT_BYTES``, 192 KiB of
compact UTF-8 JSON, the same budget as one state reply) and nest at most
``MAX_DOCUMENT_DEPTH`` levels. Unknown keys are refused (a typo in a fee
would otherwise silently become "free"). Texts follow the citizen-text rules
of :mod:`sync.schemas`: NFC, no control or format characters.

The fee rule is a tagged union on ``kind``: ``free``, ``flat`` (one amount per
dossier), ``per-page`` (the certification-of-copies scale: a price for the
first pages, another for the rest, an optional cap per copy, times the
copies), ``per-copy`` and ``per-case``. The kind names are the ``rule`` values
of a dossier's ``fee`` detail (``sync.schemas.FeeDetail``).
:func:`compute_fee` is the one place a fee is computed.

A version is dotted numbers (``2026.12.1``) so "newer" has one meaning:
:func:`version_key` compares them number by number.

A refusal is a :class:`CatalogueInvalid` (a ValueError) naming the path of
the first bad value (``procedures[3].fee.first_page_vnd``) and the rule.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sync.schemas import (
    DATETIME_RE,
    FEE_VND_MAX,
    FORM_KEY_RE,
    FORM_VALUE_CHARS,
    MAX_COPIES,
    MAX_PAGES,
    PROCEDURE_RE,
    SLUG_RE,
    format_path,
    parse_datetime,
    text_problem,
)

# -- bounds ------------------------------------------------------------------------------

MAX_DOCUMENT_BYTES = 192 * 1024  # compact UTF-8 JSON: fits one downlink item
MAX_DOCUMENT_DEPTH = 6  # document 1, procedures 2, procedure 3, form 4, field 5, choices 6
MAX_PROCEDURES = 500
MAX_SOURCES = 50
MAX_PAPERS = 30
MAX_FORM_FIELDS = 40
MAX_CHOICES = 50
MAX_KEYWORDS = 20
MAX_SOURCE_REFS = 10
VERSION_CHARS = 64
VERSION_PARTS = 6
NAME_CHARS = 200
FIELD_CHARS = 100
LABEL_CHARS = 100
CHOICE_CHARS = 100
HELP_CHARS = 300
NOTE_CHARS = 500
BASIS_CHARS = 300
GUIDANCE_CHARS = 4000
KEYWORD_CHARS = 60
PAPER_CHARS = 200
TITLE_CHARS = 300
URL_CHARS = 500
MAX_WORKING_DAYS = 365
MAX_PAPER_COUNT = 20
MAX_FIRST_PAGES = 1000

VERSION_RE = re.compile(r"\A[0-9]{1,9}(?:\.[0-9]{1,9}){0,5}\Z")
CUTOFF_RE = re.compile(r"\A(?:[01][0-9]|2[0-3]):[0-5][0-9]\Z")
URL_RE = re.compile(r"\Ahttps?://[^\s]{1,490}\Z")

#: Identity fields a form field may be filled from (``from_card``): what the
#: CCCD QR, MRZ or chip give (``drivers.identity``).
CARD_FIELDS = (
    "full_name",
    "id_number",
    "old_id_number",
    "date_of_birth",
    "sex",
    "nationality",
    "place_of_origin",
    "address",
    "issue_date",
    "expiry_date",
)
FIELD_TYPES = ("text", "date", "choice", "int", "bool", "phone", "id_number")
FEE_KINDS = ("free", "flat", "per-page", "per-copy", "per-case")


class CatalogueInvalid(ValueError):
    """A catalogue document breaks its schema: ``path`` says where, ``rule`` what."""

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(f"catalogue {path}: {rule}")
        self.path = path
        self.rule = rule


class FeeInputError(ValueError):
    """Pages or copies given to :func:`compute_fee` are out of range; names which."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"fee {field}: {rule}")
        self.field = field
        self.rule = rule


# -- field types -------------------------------------------------------------------------


def _single(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise PydanticCustomError(problem[0], problem[1])
    if value != value.strip() or "  " in value:
        raise PydanticCustomError("spaces", "has leading, trailing or repeated spaces")
    return value


def _multi(value: str) -> str:
    problem = text_problem(value, multiline=True)
    if problem is not None:
        raise PydanticCustomError(problem[0], problem[1])
    return value


def _pattern(regex: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.match(value):
            raise PydanticCustomError("pattern", rule)
        return value

    return AfterValidator(check)


_SINGLE = AfterValidator(_single)

Name = Annotated[str, Field(min_length=1, max_length=NAME_CHARS), _SINGLE]
Label = Annotated[str, Field(min_length=1, max_length=LABEL_CHARS), _SINGLE]
Note = Annotated[str, Field(min_length=1, max_length=NOTE_CHARS), _SINGLE]
Title = Annotated[str, Field(min_length=1, max_length=TITLE_CHARS), _SINGLE]
FieldName = Annotated[str, Field(min_length=1, max_length=FIELD_CHARS), _SINGLE]
Choice = Annotated[str, Field(min_length=1, max_length=CHOICE_CHARS), _SINGLE]
Help = Annotated[str, Field(min_length=1, max_length=HELP_CHARS), _SINGLE]
Keyword = Annotated[str, Field(min_length=1, max_length=KEYWORD_CHARS), _SINGLE]
PaperName = Annotated[str, Field(min_length=1, max_length=PAPER_CHARS), _SINGLE]
Basis = Annotated[str, Field(min_length=1, max_length=BASIS_CHARS), _SINGLE]
Guidance = Annotated[str, Field(max_length=GUIDANCE_CHARS), AfterValidator(_multi)]
Vnd = Annotated[int, Field(ge=0, le=FEE_VND_MAX)]
Slug = Annotated[
    str, Field(max_length=40), _pattern(SLUG_RE, "expected a short id of a-z, 0-9, - and _")
]
Version = Annotated[
    str,
    Field(max_length=VERSION_CHARS),
    _pattern(VERSION_RE, "expected a version of dotted numbers such as 2026.12.1"),
]


def _datetime(value: str) -> str:
    if DATETIME_RE.fullmatch(value) is None or parse_datetime(value) is None:
        raise PydanticCustomError(
            "datetime",
            "expected an ISO 8601 date-time with a UTC offset, e.g. 2026-12-01T08:00+07:00",
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Source(_Model):
    """Where facts in the catalogue come from (a legal text, a procedure page)."""

    id: Slug
    title: Title
    url: (
        Annotated[str, Field(max_length=URL_CHARS), _pattern(URL_RE, "expected an http(s) URL")]
        | None
    ) = None


class TimeLimit(_Model):
    """The legal time limit, in working days from a complete dossier (0: the same day)."""

    working_days: Annotated[int, Field(ge=0, le=MAX_WORKING_DAYS)]
    # A dossier received after this hour counts as received the next working day;
    # absent: the office's cut-off (agent.toml [office] cutoff).
    same_day_cutoff: Annotated[str, _pattern(CUTOFF_RE, "expected a time HH:MM")] | None = None
    # The longer limit when verification is needed (e.g. marriage: up to 5 working days).
    extended_working_days: Annotated[int, Field(ge=0, le=MAX_WORKING_DAYS)] | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _extended_is_longer(self) -> TimeLimit:
        if (
            self.extended_working_days is not None
            and self.extended_working_days < self.working_days
        ):
            raise PydanticCustomError(
                "range",
                "extended_working_days ({ext}) is shorter than working_days ({wd})",
                {"ext": self.extended_working_days, "wd": self.working_days},
            )
        return self


class _FeeBase(_Model):
    varies_by_province: bool = False
    verified: bool = True
    note: Note | None = None
    # The form fields that give the number of pages and of copies, if any.
    pages_field: Annotated[str, _pattern(FORM_KEY_RE, "expected a form field name")] | None = None
    copies_field: Annotated[str, _pattern(FORM_KEY_RE, "expected a form field name")] | None = None


class FreeFee(_FeeBase):
    kind: Literal["free"]


class FlatFee(_FeeBase):
    """One amount per dossier, whatever the pages or copies."""

    kind: Literal["flat"]
    amount_vnd: Vnd


class PerPageFee(_FeeBase):
    """Per page of each copy: ``first_pages`` at one price, the rest at another, capped."""

    kind: Literal["per-page"]
    first_pages: Annotated[int, Field(ge=0, le=MAX_FIRST_PAGES)]
    first_page_vnd: Vnd
    next_page_vnd: Vnd
    max_per_copy_vnd: Vnd | None = None


class PerCopyFee(_FeeBase):
    kind: Literal["per-copy"]
    amount_vnd: Vnd


class PerCaseFee(_FeeBase):
    """One amount per case (one signature, one contract): the same for any copies."""

    kind: Literal["per-case"]
    amount_vnd: Vnd


FeeRule = Annotated[
    FreeFee | FlatFee | PerPageFee | PerCopyFee | PerCaseFee, Field(discriminator="kind")
]


class Paper(_Model):
    """A paper the citizen brings: the original (to show or to hand in) or a copy."""

    name: PaperName
    kind: Literal["original", "copy"]
    count: Annotated[int, Field(ge=1, le=MAX_PAPER_COUNT)] = 1
    note: Note | None = None


class FormFieldSpec(_Model):
    name: Annotated[
        str, Field(max_length=64), _pattern(FORM_KEY_RE, "expected a field name of a-z, 0-9 and _")
    ]
    label: Label
    type: Literal["text", "date", "choice", "int", "bool", "phone", "id_number"]
    required: bool = False
    max_len: Annotated[int, Field(ge=1, le=FORM_VALUE_CHARS)] | None = None
    min: Annotated[int, Field(ge=-(10**15), le=10**15)] | None = None
    max: Annotated[int, Field(ge=-(10**15), le=10**15)] | None = None
    choices: Annotated[list[Choice], Field(max_length=MAX_CHOICES)] = []
    from_card: (
        Literal[
            "full_name",
            "id_number",
            "old_id_number",
            "date_of_birth",
            "sex",
            "nationality",
            "place_of_origin",
            "address",
            "issue_date",
            "expiry_date",
        ]
        | None
    ) = None
    help: Help | None = None

    @model_validator(mode="after")
    def _coherent(self) -> FormFieldSpec:
        if self.type == "choice":
            if not self.choices:
                raise PydanticCustomError("choices", "a choice field needs at least one choice")
            if len(set(self.choices)) != len(self.choices):
                raise PydanticCustomError("choices", "choices repeat a value")
        elif self.choices:
            raise PydanticCustomError("choices", "only a choice field has choices")
        if (self.min is not None or self.max is not None) and self.type != "int":
            raise PydanticCustomError("range", "only an int field has min/max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("range", "min is greater than max")
        if self.max_len is not None and self.type != "text":
            raise PydanticCustomError("max_len", "only a text field has max_len")
        return self


class ProcedureSpec(_Model):
    code: Annotated[
        str,
        Field(max_length=32),
        _pattern(PROCEDURE_RE, "expected a procedure code such as 1.001193"),
    ]
    name: Name
    field: FieldName
    time_limit: TimeLimit
    fee: FeeRule
    papers: Annotated[list[Paper], Field(max_length=MAX_PAPERS)] = []
    form: Annotated[list[FormFieldSpec], Field(max_length=MAX_FORM_FIELDS)] = []
    guidance: Guidance = ""
    keywords: Annotated[list[Keyword], Field(max_length=MAX_KEYWORDS)] = []
    no_wait_day: bool
    thursday: bool
    basis: Basis
    sources: Annotated[list[Slug], Field(min_length=1, max_length=MAX_SOURCE_REFS)]
    verified: bool = True
    note: Note | None = None

    @model_validator(mode="after")
    def _fields(self) -> ProcedureSpec:
        names = [f.name for f in self.form]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise PydanticCustomError(
                    "duplicate", "form field '{name}' appears twice", {"name": n}
                )
        ints = {f.name for f in self.form if f.type == "int"}
        for key in ("pages_field", "copies_field"):
            ref = getattr(self.fee, key)
            if ref is not None and ref not in ints:
                raise PydanticCustomError(
                    "reference",
                    "fee.{key} names '{ref}', which is not an int field of this form",
                    {"key": key, "ref": ref},
                )
        return self


class CatalogueDocument(_Model):
    version: Version
    published_at: Annotated[str, Field(max_length=40), AfterValidator(_datetime)] | None = None
    note: Note | None = None
    sources: Annotated[list[Source], Field(max_length=MAX_SOURCES)] = []
    procedures: Annotated[list[ProcedureSpec], Field(min_length=1, max_length=MAX_PROCEDURES)]

    @field_validator("procedures")
    @classmethod
    def _unique_codes(cls, value: list[ProcedureSpec]) -> list[ProcedureSpec]:
        seen: set[str] = set()
        for p in value:
            if p.code in seen:
                raise PydanticCustomError(
                    "duplicate", "procedure code {code} appears twice", {"code": p.code}
                )
            seen.add(p.code)
        return value

    @model_validator(mode="after")
    def _sources_exist(self) -> CatalogueDocument:
        known = {s.id for s in self.sources}
        if len(known) != len(self.sources):
            raise PydanticCustomError("duplicate", "two sources have the same id")
        for p in self.procedures:
            for ref in p.sources:
                if ref not in known:
                    raise PydanticCustomError(
                        "reference",
                        "procedure {code} cites source '{ref}', which is not in sources",
                        {"code": p.code, "ref": ref},
                    )
        return self

    def to_json(self) -> dict[str, Any]:
        """The document as JSON data (defaults filled in, None values left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def procedure(self, code: str) -> ProcedureSpec | None:
        for p in self.procedures:
            if p.code == code:
                return p
        return None


# -- parsing -----------------------------------------------------------------------------


def encoded_size(obj: Any) -> int:
    """Bytes of ``obj`` as compact UTF-8 JSON (how the downlink log stores it)."""
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _depth(obj: Any) -> int:
    if isinstance(obj, dict):
        return 1 + max((_depth(v) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((_depth(v) for v in obj), default=0)
    return 0


def parse_catalogue_document(obj: Any) -> CatalogueDocument:
    """Validate decoded JSON as a catalogue document, or raise CatalogueInvalid.

    The size and depth bounds are checked first, on the data as given.
    """
    if not isinstance(obj, dict):
        raise CatalogueInvalid("document", "expected a JSON object")
    try:
        size = encoded_size(obj)
    except (TypeError, ValueError) as exc:
        raise CatalogueInvalid("document", f"not JSON data: {exc}") from None
    if size > MAX_DOCUMENT_BYTES:
        raise CatalogueInvalid(
            "document",
            f"{size} bytes encoded, more than {MAX_DOCUMENT_BYTES} (one downlink item): "
            "shorten guidance texts or split the catalogue",
        )
    if _depth(obj) > MAX_DOCUMENT_DEPTH:
        raise CatalogueInvalid("document", f"nested deeper than {MAX_DOCUMENT_DEPTH} levels")
    try:
        return CatalogueDocument.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = tuple(
            part for part in first["loc"] if not (isinstance(part, str) and part in FEE_KINDS)
        )
        path = format_path(loc) or "document"
        raise CatalogueInvalid(path, first["msg"]) from None


def version_key(version: str) -> tuple[int, ...]:
    """``"2026.12.1"`` -> ``(2026, 12, 1)``: versions compare number by number."""
    if not VERSION_RE.match(version):
        raise CatalogueInvalid("version", "expected a version of dotted numbers such as 2026.12.1")
    return tuple(int(p) for p in version.split("."))


def is_newer(version: str, than: str) -> bool:
    return version_key(version) > version_key(than)


# -- fees --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FeeQuote:
    """A fee computed from a rule: ``rule_name`` is the ``fee.rule`` of a dossier body."""

    amount_vnd: int
    rule_name: str
    pages: int | None
    copies: int | None
    explanation_vi: str

    def detail(self) -> dict[str, Any]:
        """The ``fee`` object of a dossier body (``sync.schemas.FeeDetail``)."""
        out: dict[str, Any] = {"rule": self.rule_name, "amount_vnd": self.amount_vnd}
        if self.pages is not None:
            out["pages"] = self.pages
        if self.copies is not None:
            out["copies"] = self.copies
        return out


def vnd(amount: int) -> str:
    """``15000`` -> ``"15.000 đồng"``."""
    return f"{amount:,}".replace(",", ".") + " đồng"


def _count(name: str, value: int | None, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise FeeInputError(name, "expected a whole number")
    if not low <= value <= high:
        raise FeeInputError(name, f"must be between {low} and {high}, got {value}")
    return value


def per_copy_page_fee(rule: PerPageFee, pages: int) -> int:
    first = min(pages, rule.first_pages)
    amount = first * rule.first_page_vnd + (pages - first) * rule.next_page_vnd
    if rule.max_per_copy_vnd is not None:
        amount = min(amount, rule.max_per_copy_vnd)
    return amount


def compute_fee(
    rule: FreeFee | FlatFee | PerPageFee | PerCopyFee | PerCaseFee,
    *,
    pages: int | None = None,
    copies: int | None = None,
) -> FeeQuote:
    """The fee for ``pages`` pages and ``copies`` copies under ``rule``.

    ``pages`` (1..MAX_PAGES) matters only for ``per-page``, where it is required;
    ``copies`` (1..MAX_COPIES) for ``per-page`` and ``per-copy`` (default 1).
    Never above FEE_VND_MAX: the amount is capped there (a dossier body could
    not carry more).
    """
    copies_n = _count("copies", copies, 1, MAX_COPIES, 1)
    if isinstance(rule, FreeFee):
        return FeeQuote(
            amount_vnd=0, rule_name="free", pages=None, copies=None, explanation_vi="Miễn phí."
        )
    if isinstance(rule, FlatFee):
        return FeeQuote(
            amount_vnd=rule.amount_vnd,
            rule_name="flat",
            pages=None,
            copies=None,
            explanation_vi=f"Lệ phí {vnd(rule.amount_vnd)} cho một hồ sơ.",
        )
    if isinstance(rule, PerCaseFee):
        return FeeQuote(
            amount_vnd=rule.amount_vnd,
            rule_name="per-case",
            pages=None,
            copies=None,
            explanation_vi=f"Phí {vnd(rule.amount_vnd)} cho một trường hợp.",
        )
    if isinstance(rule, PerCopyFee):
        amount = min(rule.amount_vnd * copies_n, FEE_VND_MAX)
        return FeeQuote(
            amount_vnd=amount,
            rule_name="per-copy",
            pages=None,
            copies=copies_n,
            explanation_vi=f"{vnd(rule.amount_vnd)}/bản × {copies_n} bản = {vnd(amount)}.",
        )
    if pages is None:
        raise FeeInputError("pages", "required for a per-page fee: give the number of pages")
    pages_n = _count("pages", pages, 1, MAX_PAGES, 1)
    one = per_copy_page_fee(rule, pages_n)
    amount = min(one * copies_n, FEE_VND_MAX)
    first = min(pages_n, rule.first_pages)
    parts = []
    if first:
        parts.append(f"{first} trang × {vnd(rule.first_page_vnd)}")
    if pages_n > first:
        parts.append(f"{pages_n - first} trang × {vnd(rule.next_page_vnd)}")
    text = (
        " + ".join(parts)
        + f" = {vnd(first * rule.first_page_vnd + (pages_n - first) * rule.next_page_vnd)}/bản"
    )
    if rule.max_per_copy_vnd is not None and one == rule.max_per_copy_vnd:
        text += f", tối đa {vnd(rule.max_per_copy_vnd)}/bản"
    text += f"; {copies_n} bản: {vnd(amount)}."
    return FeeQuote(
        amount_vnd=amount, rule_name="per-page", pages=pages_n, copies=copies_n, explanation_vi=text
    )


def describe_fee_vi(rule: FreeFee | FlatFee | PerPageFee | PerCopyFee | PerCaseFee) -> str:
    """The rule in words for the screen, e.g. "2.000 đồng/trang; từ trang 3: 1.000 đồng/trang"."""
    if isinstance(rule, FreeFee):
        text = "Miễn phí"
    elif isinstance(rule, FlatFee):
        text = f"{vnd(rule.amount_vnd)}/hồ sơ"
    elif isinstance(rule, PerCaseFee):
        text = f"{vnd(rule.amount_vnd)}/trường hợp"
    elif isinstance(rule, PerCopyFee):
        text = f"{vnd(rule.amount_vnd)}/bản"
    else:
        text = f"{vnd(rule.first_page_vnd)}/trang"
        if rule.next_page_vnd != rule.first_page_vnd:
            text += f"; từ trang thứ {rule.first_pages + 1}: {vnd(rule.next_page_vnd)}/trang"
        if rule.max_per_copy_vnd is not None:
            text += f"; tối đa {vnd(rule.max_per_copy_vnd)}/bản"
    if rule.varies_by_province:
        text += " (mức thu do tỉnh quy định)"
    return text
