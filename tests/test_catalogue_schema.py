"""The catalogue document's schema (sync.catalogue): bounds, paths in errors, fee rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.catalogue import bundled_document
from sync.catalogue import (
    MAX_DOCUMENT_BYTES,
    CatalogueInvalid,
    FeeInputError,
    FlatFee,
    PerCopyFee,
    PerPageFee,
    compute_fee,
    encoded_size,
    is_newer,
    parse_catalogue_document,
)
from sync.schemas import FEE_VND_MAX, MAX_COPIES, MAX_PAGES

DOC = bundled_document()


def doc_with(**changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(DOC)
    d.update(changes)
    return d


def test_the_bundled_catalogue_is_valid_complete_and_cites_its_sources() -> None:
    doc = parse_catalogue_document(DOC)
    assert len(doc.procedures) >= 20
    assert encoded_size(DOC) < MAX_DOCUMENT_BYTES // 2
    names = " ".join(p.name for p in doc.procedures)
    for needed in (
        "khai sinh",
        "kết hôn",
        "khai tử",
        "nhận cha, mẹ, con",
        "tình trạng hôn nhân",
        "trích lục",
        "bản sao",
        "chữ ký",
        "hợp đồng",
        "trú",
        "trợ cấp",
    ):
        assert needed in names.lower(), needed
    ids = {s.id for s in doc.sources}
    assert all(set(p.sources) <= ids for p in doc.procedures)
    # Province-dependent fees and unverified facts are said so in the data.
    assert any(p.fee.varies_by_province for p in doc.procedures)
    assert any(not p.verified and p.note for p in doc.procedures)
    copies = doc.procedure("2.000815")
    assert copies is not None and isinstance(copies.fee, PerPageFee)
    assert (
        copies.fee.first_pages,
        copies.fee.first_page_vnd,
        copies.fee.next_page_vnd,
        copies.fee.max_per_copy_vnd,
    ) == (2, 2000, 1000, 200_000)
    # Eligibility flags are data, consistent with the seed's defaults.
    for p in doc.procedures:
        assert p.thursday == (1 <= p.time_limit.working_days <= 5)
        assert p.no_wait_day == (p.time_limit.working_days in (3, 5, 7))


def test_round_trip() -> None:
    doc = parse_catalogue_document(DOC)
    again = parse_catalogue_document(json.loads(json.dumps(doc.to_json())))
    assert again == doc


@pytest.mark.parametrize(
    ("mutate", "path", "rule"),
    [
        (lambda d: d["procedures"][0]["fee"].update(kind="gratis"), "procedures[0].fee", "tag"),
        (
            lambda d: d["procedures"][14]["fee"].update(first_page_vnd=-1),
            "procedures[14].fee.first_page_vnd",
            "greater than or equal to 0",
        ),
        (
            lambda d: d["procedures"][3]["time_limit"].update(working_days=366),
            "procedures[3].time_limit.working_days",
            "less than or equal to 365",
        ),
        (lambda d: d["procedures"][0].update(nmae="x"), "procedures[0].nmae", "Extra inputs"),
        (
            lambda d: d["procedures"][0].update(name="Khai\u200bsinh"),
            "procedures[0].name",
            "U+200B",
        ),
        (
            lambda d: d["procedures"][0].update(name="Đăng ky\u0301 khai sinh"),
            "procedures[0].name",
            "NFC",
        ),
        (
            lambda d: d["procedures"][1].update(code=d["procedures"][0]["code"]),
            "procedures",
            "twice",
        ),
        (lambda d: d["procedures"][0].update(sources=["nowhere"]), "document", "nowhere"),
        (
            lambda d: d["procedures"][0]["form"][0].update(type="choice"),
            "procedures[0].form[0]",
            "at least one choice",
        ),
        (
            lambda d: d["procedures"][0]["form"][0].update(from_card="blood_type"),
            "procedures[0].form[0].from_card",
            "full_name",
        ),
        (
            lambda d: d["procedures"][14]["fee"].update(pages_field="so_trangg"),
            "procedures[14]",
            "so_trangg",
        ),
        (lambda d: d.update(version="v2"), "version", "dotted numbers"),
        (
            lambda d: d["procedures"][0].update(no_wait_day="yes"),
            "procedures[0].no_wait_day",
            "bool",
        ),
        (
            lambda d: d["procedures"][0]["time_limit"].update(working_days=True),
            "procedures[0].time_limit.working_days",
            "integer",
        ),
        (lambda d: d.update(procedures=[]), "procedures", "at least 1"),
    ],
)
def test_a_bad_document_names_the_path_and_the_rule(mutate: Any, path: str, rule: str) -> None:
    d = copy.deepcopy(DOC)
    mutate(d)
    with pytest.raises(CatalogueInvalid) as err:
        parse_catalogue_document(d)
    assert err.value.path == path, str(err.value)
    assert rule in err.value.rule, str(err.value)
    assert isinstance(err.value, ValueError) and path in str(err.value)


def test_size_depth_and_shape_bounds() -> None:
    big = copy.deepcopy(DOC)
    for p in big["procedures"]:
        p["guidance"] = "Hướng dẫn " * 390  # under the 4,000-character field limit
    big["procedures"] = big["procedures"] * 3
    for i, p in enumerate(big["procedures"]):
        p["code"] = f"9.{i:06d}"
    assert encoded_size(big) > MAX_DOCUMENT_BYTES
    with pytest.raises(CatalogueInvalid, match="196608") as err:
        parse_catalogue_document(big)
    assert err.value.path == "document"
    deep = doc_with(note=None)
    deep["procedures"][0]["form"][2]["choices"] = [["Nam"]]
    with pytest.raises(CatalogueInvalid, match="deeper"):
        parse_catalogue_document(deep)
    with pytest.raises(CatalogueInvalid, match="JSON object"):
        parse_catalogue_document([DOC])


def test_versions_compare_number_by_number() -> None:
    assert is_newer("2026.12.10", "2026.12.9")
    assert not is_newer("2026.12.1", "2026.12.1")
    assert is_newer("2027", "2026.12.31")
    with pytest.raises(CatalogueInvalid):
        is_newer("2026-12", "2026.1")


# -- fees ----------------------------------------------------------------------------------

COPIES_RULE = PerPageFee(
    kind="per-page",
    first_pages=2,
    first_page_vnd=2000,
    next_page_vnd=1000,
    max_per_copy_vnd=200_000,
)


@pytest.mark.parametrize(
    ("pages", "copies", "amount"),
    [
        (1, 1, 2000),
        (2, 1, 4000),
        (3, 1, 5000),
        (5, 2, 14000),
        (198, 1, 200_000),
        (199, 1, 200_000),
        (10_000, 3, 600_000),
        (2, 3, 12000),
    ],
)
def test_certification_of_copies_scale(pages: int, copies: int, amount: int) -> None:
    q = compute_fee(COPIES_RULE, pages=pages, copies=copies)
    assert (q.amount_vnd, q.rule_name, q.pages, q.copies) == (amount, "per-page", pages, copies)
    assert "đồng" in q.explanation_vi
    assert q.detail() == {
        "rule": "per-page",
        "amount_vnd": amount,
        "pages": pages,
        "copies": copies,
    }


vnd = st.integers(min_value=0, max_value=FEE_VND_MAX)
per_page_rules = st.builds(
    PerPageFee,
    kind=st.just("per-page"),
    first_pages=st.integers(min_value=0, max_value=1000),
    first_page_vnd=vnd,
    next_page_vnd=vnd,
    max_per_copy_vnd=st.none() | vnd,
)
pages_st = st.integers(min_value=1, max_value=MAX_PAGES)
copies_st = st.integers(min_value=1, max_value=MAX_COPIES)


@settings(max_examples=300, deadline=None)
@given(rule=per_page_rules, pages=pages_st, copies=copies_st)
def test_per_page_fee_is_monotone_capped_and_bounded(
    rule: PerPageFee, pages: int, copies: int
) -> None:
    q = compute_fee(rule, pages=pages, copies=copies)
    assert 0 <= q.amount_vnd <= FEE_VND_MAX
    if pages < MAX_PAGES:
        assert compute_fee(rule, pages=pages + 1, copies=copies).amount_vnd >= q.amount_vnd or (
            rule.next_page_vnd < 0
        )
    if copies < MAX_COPIES:
        assert compute_fee(rule, pages=pages, copies=copies + 1).amount_vnd >= q.amount_vnd
    one = compute_fee(rule, pages=pages, copies=1).amount_vnd
    if rule.max_per_copy_vnd is not None:
        assert one <= rule.max_per_copy_vnd
    assert q.amount_vnd == min(one * copies, FEE_VND_MAX)


@settings(max_examples=200, deadline=None)
@given(amount=vnd, pages=pages_st, copies=copies_st)
def test_flat_per_copy_and_per_case(amount: int, pages: int, copies: int) -> None:
    assert (
        compute_fee(FlatFee(kind="flat", amount_vnd=amount), pages=pages, copies=copies).amount_vnd
        == amount
    )
    per_copy = compute_fee(PerCopyFee(kind="per-copy", amount_vnd=amount), copies=copies)
    assert per_copy.amount_vnd == min(amount * copies, FEE_VND_MAX)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pages": 0}, "pages"),
        ({"pages": MAX_PAGES + 1}, "pages"),
        ({"pages": 1, "copies": 0}, "copies"),
        ({"pages": 1, "copies": MAX_COPIES + 1}, "copies"),
        ({}, "pages"),
        ({"pages": True}, "pages"),
    ],
)
def test_fee_inputs_out_of_range_name_the_input(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(FeeInputError) as err:
        compute_fee(COPIES_RULE, **kwargs)
    assert err.value.field == field


# -- generated documents -----------------------------------------------------------------

LETTERS = "abcdefghiklmnopqrstuvxyăâđêôơưáàảãạếềểễệốồổỗộớờởỡợúùủũụứừửữựíìỉĩịýỳỷỹỵ"
texts = st.text(alphabet=LETTERS, min_size=1, max_size=30).map(lambda s: s.strip() or "a")
slugs = st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z", fullmatch=True)
fees = st.one_of(
    st.fixed_dictionaries({"kind": st.just("free")}),
    st.fixed_dictionaries({"kind": st.just("flat"), "amount_vnd": vnd}),
    st.fixed_dictionaries({"kind": st.just("per-copy"), "amount_vnd": vnd}),
    st.fixed_dictionaries({"kind": st.just("per-case"), "amount_vnd": vnd}),
    st.fixed_dictionaries(
        {
            "kind": st.just("per-page"),
            "first_pages": st.integers(0, 1000),
            "first_page_vnd": vnd,
            "next_page_vnd": vnd,
        },
        optional={"max_per_copy_vnd": vnd, "varies_by_province": st.booleans()},
    ),
)
fields = st.one_of(
    st.fixed_dictionaries(
        {"name": slugs, "label": texts, "type": st.just("text")},
        optional={"max_len": st.integers(1, 2000), "required": st.booleans()},
    ),
    st.fixed_dictionaries(
        {
            "name": slugs,
            "label": texts,
            "type": st.just("int"),
            "min": st.integers(-5, 0),
            "max": st.integers(1, 10**6),
        }
    ),
    st.fixed_dictionaries(
        {
            "name": slugs,
            "label": texts,
            "type": st.just("choice"),
            "choices": st.lists(texts, min_size=1, max_size=5, unique=True),
        }
    ),
    st.fixed_dictionaries(
        {
            "name": slugs,
            "label": texts,
            "type": st.sampled_from(["date", "bool", "phone", "id_number"]),
        },
        optional={"from_card": st.sampled_from(["full_name", "id_number", "date_of_birth", "sex"])},
    ),
)
procedures = st.fixed_dictionaries(
    {
        "name": texts,
        "field": texts,
        "time_limit": st.fixed_dictionaries({"working_days": st.integers(0, 365)}),
        "fee": fees,
        "form": st.lists(fields, max_size=6, unique_by=lambda f: f["name"]),
        "papers": st.lists(
            st.fixed_dictionaries(
                {
                    "name": texts,
                    "kind": st.sampled_from(["original", "copy"]),
                    "count": st.integers(1, 20),
                }
            ),
            max_size=4,
        ),
        "no_wait_day": st.booleans(),
        "thursday": st.booleans(),
        "basis": texts,
        "sources": st.just(["s1"]),
        "guidance": st.text(alphabet=LETTERS + "\n ", max_size=200),
    }
)
documents = st.builds(
    lambda procs, version: {
        "version": ".".join(str(v) for v in version),
        "sources": [{"id": "s1", "title": "Nguồn"}],
        "procedures": [{**p, "code": f"1.{i:06d}"} for i, p in enumerate(procs)],
    },
    st.lists(procedures, min_size=1, max_size=5),
    st.lists(st.integers(0, 10**9 - 1), min_size=1, max_size=6),
)


@settings(max_examples=150, deadline=None)
@given(doc=documents)
def test_generated_documents_round_trip(doc: dict[str, Any]) -> None:
    parsed = parse_catalogue_document(doc)
    data = parsed.to_json()
    assert parse_catalogue_document(json.loads(json.dumps(data, ensure_ascii=False))) == parsed
    for p in parsed.procedures:
        q = compute_fee(p.fee, pages=3, copies=2)
        assert 0 <= q.amount_vnd <= FEE_VND_MAX and q.rule_name == p.fee.kind


@settings(max_examples=100, deadline=None)
@given(doc=documents, which=st.sampled_from(["name", "field", "basis"]), extra=st.integers(1, 50))
def test_an_over_long_text_is_refused_naming_its_path(
    doc: dict[str, Any], which: str, extra: int
) -> None:
    limit = {"name": 200, "field": 100, "basis": 300}[which]
    doc["procedures"][0][which] = "a" * (limit + extra)
    with pytest.raises(CatalogueInvalid) as err:
        parse_catalogue_document(doc)
    assert err.value.path == f"procedures[0].{which}" and str(limit) in err.value.rule


def test_the_procedure_count_bound() -> None:
    tiny = {
        "name": "Thủ tục",
        "field": "Hộ tịch",
        "time_limit": {"working_days": 1},
        "fee": {"kind": "free"},
        "no_wait_day": False,
        "thursday": True,
        "basis": "Luật",
        "sources": ["s1"],
    }
    doc = {
        "version": "1",
        "sources": [{"id": "s1", "title": "Nguồn"}],
        "procedures": [{**tiny, "code": f"1.{i:06d}"} for i in range(500)],
    }
    assert len(parse_catalogue_document(doc).procedures) == 500
    doc["procedures"].append({**tiny, "code": "2.000000"})
    with pytest.raises(CatalogueInvalid) as err:
        parse_catalogue_document(doc)
    assert err.value.path == "procedures" and "500" in err.value.rule
