"""Garbage at the console: random cookies, form fields and ids never give a 5xx, never a
session, never a page of data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.console_seed import ORIGIN, app_for, csrf_of, fresh_target, login, seed

text = st.text(max_size=300)
cookie_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=';,"\\'),
    max_size=200,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The seeded console on each engine's central database."""
    with fresh_target(request.param, tmp_path_factory.mktemp("garbage")) as db:
        seed(db)
        # The garbage logins all come from "testclient": its brake would refuse the admin's.
        yield app_for(db, client_free_failures=10_000)


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        assert login(c, "quan.tri").status_code == 303
        yield c


FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(session=cookie_text)
def test_a_random_session_cookie_is_no_session(client: TestClient, session: str) -> None:
    client.cookies.clear()
    client.cookies.set("aps_console", session, path="/console")
    r = client.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=text, password=text, token=text, next_=text)
def test_random_login_forms_are_refused_cleanly(
    client: TestClient, name: str, password: str, token: str, next_: str
) -> None:
    client.cookies.clear()
    form = client.get("/console/login")
    for login_token in (token, csrf_of(form.text, "login_token")):
        r = client.post(
            "/console/login",
            data={"name": name, "password": password, "login_token": login_token, "next": next_},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert r.status_code in (401, 403, 422, 429), r.status_code
        assert "aps_console" not in client.cookies


@FAST
@given(segment=st.text(min_size=1, max_size=80).filter(lambda s: s not in (".", "..")))
@example(segment="/")  # found by hypothesis: "%2F" decodes to a path separator
@example(segment="a/")
@example(segment="a/b")
@example(segment=" ")
@example(segment="\x00")
@example(segment="%")
@example(segment="?")
def test_random_ids_are_404_pages_for_a_signed_in_admin(admin: TestClient, segment: str) -> None:
    client = admin
    for prefix in ("kiosks", "support", "dossiers", "alerts", "inquiries"):
        r: Any = client.get(f"/console/{prefix}/{quote(segment, safe='')}", follow_redirects=False)
        assert r.status_code in (200, 400, 404), (prefix, segment, r.status_code)
        assert r.status_code < 500


@pytest.mark.parametrize("prefix", ["kiosks", "support", "dossiers", "alerts", "inquiries"])
def test_an_id_ending_in_an_encoded_slash_is_not_found(admin: TestClient, prefix: str) -> None:
    # "%2F" is decoded to "/" before routing: the id is looked up and is not there (an
    # inquiry code of the wrong shape is refused, 400), never redirected to the same path
    # with its slash cut off (which is another page: here a seeded kiosk's).
    for seeded in ("k-a-ok", "1", "x"):
        r = admin.get(f"/console/{prefix}/{seeded}%2F", follow_redirects=False)
        expected = (400, 404) if prefix == "inquiries" else (404,)
        assert r.status_code in expected, (prefix, seeded, r.status_code, r.headers)
        assert "location" not in r.headers


@FAST
@given(kind=text, deadline=text, days=text, job_id=st.text(min_size=1, max_size=80))
def test_random_job_forms_and_job_ids_are_clean_refusals(
    admin: TestClient, kind: str, deadline: str, days: str, job_id: str
) -> None:
    token = csrf_of(admin.get("/console/kiosks/k-a-ok").text)
    r = admin.post(
        "/console/kiosks/k-a-ok/jobs",
        data={"csrf": token, "kind": kind, "deadline": deadline, "older_than_days": days},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert r.status_code in (303, 400), (kind, deadline, days, r.status_code)
    r = admin.post(
        f"/console/jobs/{quote(job_id, safe='')}/cancel",
        data={"csrf": token},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert r.status_code in (404, 405), (job_id, r.status_code)
