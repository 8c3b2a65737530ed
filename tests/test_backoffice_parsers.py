"""hypothesis over the back office's parsers: portal code tables, FAQ/news items, staff text."""

from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from central.content import validate_item
from central.staff_text import BackofficeError, clean_text
from sync import dossier_status as ds
from sync.schemas import text_problem

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from([*ds.STATES, "done", "", "Received"]) | st.text(max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["codes", "code", "x"]),
        st.dictionaries(keys, json_value | st.integers(-5, 10_005), max_size=9) | json_value,
        max_size=2,
    )
)
def test_a_portal_code_table_is_valid_or_refused_with_its_own_error(data: dict[str, Any]) -> None:
    try:
        codes = ds.parse_portal_codes(data, "t.toml")
    except ds.PortalCodesError as exc:
        assert str(exc).startswith("t.toml: ")
        return
    values = list(codes.by_state.values())
    assert len(set(values)) == len(values)
    assert all(0 <= v <= ds.MAX_PORTAL_CODE for v in values)
    for state, code in codes.by_state.items():
        assert state in ds.STATES and codes.state_of(code) == state


fields = st.sampled_from(["id", "question", "answer", "tags", "procedure", "title", "body", "x"])


near_valid = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,70}\Z"),
        "question": st.text(max_size=320),
        "title": st.text(max_size=220),
        "answer": st.text(min_size=1, max_size=50) | st.text("Đáp án ờ\n", min_size=1),
        "body": st.text(min_size=1, max_size=50),
        "tags": st.lists(st.text(max_size=45), max_size=12)
        | st.lists(st.text("hộ tịch", min_size=1), max_size=3),
    }
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["faq", "news"]),
    st.tuples(
        st.just(False), st.dictionaries(fields, json_value | st.text(max_size=5000), max_size=6)
    )
    | st.tuples(st.just(True), near_valid),
)
def test_a_content_item_is_clean_or_refused_naming_it(
    kind: str, case: tuple[bool, dict[str, Any]]
) -> None:
    near, item = case
    if near:  # keep the fields of its kind
        wanted = {"faq": ("id", "question", "answer", "tags"), "news": ("id", "title", "body")}
        item = {k: item[k] for k in wanted[kind]}
    try:
        out = validate_item(kind, item, "item")  # type: ignore[arg-type]
    except BackofficeError as exc:
        assert str(exc).startswith("item")
        return
    for name, value in out.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                assert text_problem(text, multiline=name in ("answer", "body")) is None
                assert unicodedata.is_normalized("NFC", text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60), st.booleans())
def test_staff_text_is_nfc_bounded_and_free_of_control_characters(
    raw: str, multiline: bool
) -> None:
    try:
        text = clean_text("note", raw, max_chars=40, multiline=multiline)
    except BackofficeError as exc:
        assert str(exc).startswith("note: ")
        return
    assert 0 < len(text) <= 40 and text == text.strip()
    assert text_problem(text, multiline=multiline) is None
    assert clean_text("note", text, max_chars=40, multiline=multiline) == text  # idempotent
