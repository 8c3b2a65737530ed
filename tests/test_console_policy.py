"""Roles and office scopes: every console route has a policy, and staff of one office cannot
reach another office's kiosks, dossiers, support requests or questions, even by their ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from central.web.console.policy import ROUTE_POLICIES, Policy
from tests.console_seed import OFFICE_A, OFFICE_B, Seeded, app_for, fresh_target, login, post, seed


def console_routes(app: Any) -> list[APIRoute]:
    """Every route of the app under /console, through included routers too."""
    out: list[APIRoute] = []
    stack = list(app.routes)
    while stack:
        route = stack.pop()
        inner = getattr(route, "original_router", None)
        if inner is not None:
            stack.extend(inner.routes)
        elif isinstance(route, APIRoute) and route.path.startswith("/console"):
            out.append(route)
    return out


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """The console's fleet in central's database, on each engine."""
    with fresh_target(request.param, tmp_path_factory.mktemp("console")) as target:
        yield seed(target)


@pytest.fixture
def app(seeded: Seeded) -> Any:
    # One app per test: an app's shutdown closes its PostgreSQL pool for good.
    return app_for(seeded.db)


def _client(app: Any, name: str) -> Iterator[TestClient]:
    with TestClient(app) as c:
        assert login(c, name).status_code == 303
        yield c


@pytest.fixture
def staff_a(app: Any) -> Iterator[TestClient]:
    yield from _client(app, "can.bo.a")


@pytest.fixture
def viewer(app: Any) -> Iterator[TestClient]:
    yield from _client(app, "nguoi.xem")


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    yield from _client(app, "quan.tri")


def test_every_console_route_has_a_policy_and_every_policy_a_route(app: Any) -> None:
    names = {r.name for r in console_routes(app)}
    assert names, "no console routes found"
    assert names - set(ROUTE_POLICIES) == set(), "routes without a policy"
    assert set(ROUTE_POLICIES) - names == set(), "policies for routes that do not exist"


def test_a_route_without_a_policy_is_refused(app: Any, seeded: Seeded) -> None:
    from central.web.console import routes

    extra = app_for(seeded.db)

    @routes.router.get("/unlisted", name="console_unlisted")
    def unlisted() -> dict[str, str]:
        return {"secret": "data"}

    try:
        with TestClient(extra) as c:
            login(c, "quan.tri")
            r = c.get("/console/unlisted")
            assert r.status_code == 403 and "secret" not in r.text
    finally:
        routes.router.routes.pop()


def test_only_public_routes_answer_without_a_session(app: Any, seeded: Seeded) -> None:
    ids = _ids(seeded)
    with TestClient(app) as anon:
        for route in console_routes(app):
            path = route.path_format.format(**ids)  # "{kiosk:path}" -> "{kiosk}"
            for method in route.methods or ():
                r = anon.request(
                    method, path, headers={"Origin": "http://testserver"}, follow_redirects=False
                )
                if ROUTE_POLICIES[route.name] is Policy.PUBLIC:
                    assert r.status_code in (200, 403), (method, path)  # 403: login form token
                else:
                    assert r.status_code == 303, (method, path, r.status_code)
                    assert r.headers["location"].startswith("/console/login")


def _ids(s: Seeded, office: str = "b") -> dict[str, str]:
    b = office == "b"
    return {
        "kiosk": s.kiosk_b if b else s.kiosk_a,
        "n": str(s.support_b if b else s.support_a),
        "code": s.dossier_b if b else s.dossier_a,
        "alert_id": str(s.alert_b if b else s.alert_a),
        "job_id": s.job_b if b else s.job_a,
        "name": "can.bo.b",
    }


#: Routes with an id and the id of office B's thing they take (URL guessing by staff of A).
ID_ROUTES = {
    "console_kiosk": "kiosk",
    "console_kiosk_job_create": "kiosk",
    "console_job_cancel": "job_id",
    "console_support_request": "n",
    "console_support_take": "n",
    "console_support_resolve": "n",
    "console_dossier": "code",
    "console_dossier_status": "code",
    "console_inquiry": "code",
    "console_inquiry_answer": "code",
    "console_alert": "alert_id",
    "console_alert_acknowledge": "alert_id",
    "console_user_unlock": "name",
}


def test_the_url_guessing_matrix_covers_every_route_with_an_id(app: Any) -> None:
    with_ids = {r.name for r in console_routes(app) if "{" in r.path}
    assert with_ids == set(ID_ROUTES)


def test_staff_of_office_a_get_404_for_every_id_of_office_b(
    app: Any, seeded: Seeded, staff_a: TestClient
) -> None:
    ids = _ids(seeded, "b")
    ids_inquiry = {**ids, "code": seeded.inquiry_b}
    for route in console_routes(app):
        if route.name not in ID_ROUTES:
            continue
        values = ids_inquiry if "inquir" in route.name else ids
        path = route.path_format.format(**values)
        for method in route.methods or ():
            if method == "GET":
                r = staff_a.get(path, follow_redirects=False)
            else:
                r = post(
                    staff_a,
                    path,
                    {"staff": "lan", "answer": "x", "state": "received"},
                    page="/console/",
                )
            expected = 403 if ROUTE_POLICIES[route.name] is Policy.ADMIN else 404
            assert r.status_code == expected, (route.name, method, path, r.status_code)


def test_staff_of_office_a_reach_the_same_things_of_their_own_office(
    seeded: Seeded, staff_a: TestClient
) -> None:
    assert staff_a.get(f"/console/kiosks/{seeded.kiosk_a}").status_code == 200
    assert staff_a.get(f"/console/support/{seeded.support_a}").status_code == 200
    assert staff_a.get(f"/console/dossiers/{seeded.dossier_a}").status_code == 200
    assert staff_a.get(f"/console/inquiries/{seeded.inquiry_a}").status_code == 200
    assert staff_a.get(f"/console/alerts/{seeded.alert_a}").status_code == 200


def test_lists_show_staff_only_their_office_whatever_the_filter(
    seeded: Seeded, staff_a: TestClient
) -> None:
    for path in (
        "/console/",
        "/console/support?all=true",
        "/console/dossiers",
        "/console/inquiries?all=true",
        "/console/charts",
    ):
        text = staff_a.get(f"{path}{'&' if '?' in path else '?'}office={OFFICE_B}").text
        assert OFFICE_A in text, path
        assert OFFICE_B not in text, path
        assert "k-b-" not in text, path


def test_a_viewer_reads_every_office_and_changes_nothing(
    seeded: Seeded, viewer: TestClient
) -> None:
    fleet = viewer.get("/console/").text
    assert OFFICE_A in fleet and OFFICE_B in fleet
    assert viewer.get(f"/console/dossiers/{seeded.dossier_b}").status_code == 200
    page = viewer.get(f"/console/dossiers/{seeded.dossier_b}").text
    assert "Cập nhật trạng thái" not in page  # no form for a viewer
    r = post(
        viewer,
        f"/console/dossiers/{seeded.dossier_b}/status",
        {"state": "received"},
        page="/console/",
    )
    assert r.status_code == 403
    assert viewer.get("/console/users").status_code == 403


def test_staff_cannot_reach_admin_pages(staff_a: TestClient) -> None:
    assert staff_a.get("/console/users").status_code == 403
    r = post(staff_a, "/console/users/can.bo.a/unlock", page="/console/")
    assert r.status_code == 403


def test_the_admin_sees_both_offices(seeded: Seeded, admin: TestClient) -> None:
    for path in (
        f"/console/kiosks/{seeded.kiosk_b}",
        f"/console/support/{seeded.support_b}",
        f"/console/dossiers/{seeded.dossier_b}",
        f"/console/kiosks/{seeded.kiosk_a}",
    ):
        assert admin.get(path).status_code == 200, path
