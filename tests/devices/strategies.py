"""Hypothesis strategies shared by the device tests."""

from __future__ import annotations

from datetime import date

from hypothesis import strategies as st

from drivers.identity import Identity

VIETNAMESE_LETTERS = (
    "aàáảãạăằắẳẵặâầấẩẫậbcdđeèéẻẽẹêềếểễệghiìíỉĩịklmnoòóỏõọôồốổỗộơờớởỡợpqrstuùúủũụưừứửữựvxyỳýỷỹỵ"
)
_letters = VIETNAMESE_LETTERS + VIETNAMESE_LETTERS.upper()

digits12 = st.text("0123456789", min_size=12, max_size=12)
digits9 = st.text("0123456789", min_size=9, max_size=9)
words = st.text(_letters, min_size=1, max_size=8)
names = st.lists(words, min_size=1, max_size=5).map(" ".join)
addresses = st.lists(
    st.text(_letters + "0123456789,./-", min_size=1, max_size=10), min_size=1, max_size=8
).map(" ".join)
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))


@st.composite
def qr_identities(draw: st.DrawFn) -> Identity:
    """Identities a CCCD QR can carry (NFC text, no '|', stripped fields)."""
    return Identity(
        id_number=draw(digits12),
        old_id_number=draw(st.none() | digits9),
        full_name=draw(names),
        date_of_birth=draw(dates),
        sex=draw(st.sampled_from(["M", "F"])),
        address=draw(addresses),
        issue_date=draw(dates),
        expiry_date=None,
        document_number=None,
        nationality=None,
        source="qr",
    )


@st.composite
def chip_identities(draw: st.DrawFn) -> Identity:
    """Identities a chip reader can report: every field, any may be absent."""
    return Identity(
        id_number=draw(digits12),
        old_id_number=draw(st.none() | digits9),
        full_name=draw(names),
        date_of_birth=draw(dates),
        sex=draw(st.sampled_from(["M", "F", "X"])),
        address=draw(st.none() | addresses),
        issue_date=draw(st.none() | dates),
        expiry_date=draw(st.none() | dates),
        document_number=draw(st.none() | digits9),
        nationality=draw(st.none() | st.just("VNM")),
        source="chip",
    )
