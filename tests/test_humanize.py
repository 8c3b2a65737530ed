"""central.humanize.age: exact cells, then the rule itself with hypothesis."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.humanize import SHORT, STEPS, VIETNAMESE, age

UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
VI_S = {"ngày": 86400, "giờ": 3600, "phút": 60, "giây": 1}
#: The most one unit reads before the next one up takes over.
MOST = {1: 59, 60: 59, 3600: 23}

seconds_st = st.floats(min_value=-1e3, max_value=1e9, allow_nan=False)


@pytest.mark.parametrize(
    ("seconds", "one", "two", "vietnamese"),
    [
        (None, "-", "-", "-"),
        (-5.0, "0s", "0s", "0 giây"),
        (0.0, "0s", "0s", "0 giây"),
        (59.9, "59s", "59s", "59 giây"),
        (60.0, "1m", "1m", "1 phút"),
        (3599.0, "59m", "59m", "59 phút"),
        (3600.0, "1h", "1h00m", "1 giờ"),
        (3 * 3600 + 5 * 60 + 7, "3h", "3h05m", "3 giờ"),
        (86399.0, "23h", "23h59m", "23 giờ"),
        (2 * 86400 + 4 * 3600 + 59, "2d", "2d04h", "2 ngày"),
        (400 * 86400.0, "400d", "400d00h", "400 ngày"),
    ],
)
def test_cells(seconds: float | None, one: str, two: str, vietnamese: str) -> None:
    assert age(seconds) == one
    assert age(seconds, parts=2) == two
    assert age(seconds, units=VIETNAMESE) == vietnamese


def test_two_parts_in_vietnamese_and_a_wrong_parts() -> None:
    assert age(3 * 3600 + 5 * 60, parts=2, units=VIETNAMESE) == "3 giờ 5 phút"
    assert age(None, never="chưa bao giờ") == "chưa bao giờ"
    with pytest.raises(ValueError, match="parts is 1 or 2"):
        age(10.0, parts=3)


def _read(text: str) -> list[tuple[int, int]]:
    """``3h05m`` -> [(3, 3600), (5, 60)]."""
    found = re.fullmatch(r"(\d+)([dhms])(?:(\d\d)([hm]))?", text)
    assert found is not None, text
    out = [(int(found[1]), UNIT_S[found[2]])]
    if found[3] is not None:
        out.append((int(found[3]), UNIT_S[found[4]]))
    return out


@given(seconds_st)
def test_one_part_is_the_largest_unit_rounded_down(seconds: float) -> None:
    [(value, unit)] = _read(age(seconds))
    s = max(0, int(seconds))
    assert value * unit <= s < (value + 1) * unit
    assert value <= MOST.get(unit, value)  # 60 minutes read 1h, 24 hours 1d
    assert unit == 1 or value >= 1


@given(seconds_st)
def test_two_parts_are_exact_down_to_the_second_unit(seconds: float) -> None:
    read = _read(age(seconds, parts=2))
    s = max(0, int(seconds))
    low = sum(v * u for v, u in read)
    finest = read[-1][1]
    assert low <= s < low + finest
    assert [u for _, u in read] in ([1], [60], [3600, 60], [86400, 3600])
    if len(read) == 2:
        assert read[1][0] < read[0][1] // read[1][1]  # 05m < 60, 04h < 24


@given(seconds_st, seconds_st)
def test_an_older_thing_never_reads_younger(a: float, b: float) -> None:
    early, late = sorted((a, b))
    (v1, u1), (v2, u2) = _read(age(early))[0], _read(age(late))[0]
    assert v1 * u1 <= v2 * u2


@given(seconds_st)
def test_the_console_and_the_cli_say_the_same_number(seconds: float) -> None:
    [(value, unit)] = _read(age(seconds, units=SHORT))
    number, name = age(seconds, units=VIETNAMESE).split(" ")
    assert (int(number), VI_S[name]) == (value, unit)
    assert unit in STEPS
