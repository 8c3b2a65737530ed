"""Remote jobs from the console: an admin queues one on a kiosk's page and cancels a queued
one, audited as the console user; staff and viewers are refused, by the form or by a
crafted request; a missing CSRF token is refused; bad fields are refused naming them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central import audit, backoffice_db
from central.fleet import jobs
from central.web.console import job_form
from sync.jobs import JOB_KINDS
from tests.console_seed import NOW, ORIGIN, Seeded, app_for, csrf_of, login, post, seed
from tests.pg import CentralDb

KIOSK = "k-a-ok"
PAGE = f"/console/kiosks/{KIOSK}"
CREATE = f"{PAGE}/jobs"


@pytest.fixture
def seeded(central_db: CentralDb) -> Seeded:
    return seed(central_db.target)


def _client(seeded: Seeded, name: str) -> Iterator[TestClient]:
    with TestClient(app_for(seeded.db)) as c:
        assert login(c, name).status_code == 303
        yield c


@pytest.fixture
def admin(seeded: Seeded) -> Iterator[TestClient]:
    yield from _client(seeded, "quan.tri")


@pytest.fixture
def staff(seeded: Seeded) -> Iterator[TestClient]:
    yield from _client(seeded, "can.bo.a")  # office A, where k-a-ok is


@pytest.fixture
def viewer(seeded: Seeded) -> Iterator[TestClient]:
    yield from _client(seeded, "nguoi.xem")


def _jobs(seeded: Seeded, kiosk: str = KIOSK) -> list[jobs.Job]:
    conn = backoffice_db.connect(seeded.db)
    try:
        return jobs.list_jobs(conn, kiosk=kiosk, now=NOW)
    finally:
        conn.close()


def _audit(seeded: Seeded, target: str) -> list[tuple[str, str]]:
    """(actor, action) of every audit row about ``target``, oldest first."""
    conn = backoffice_db.connect(seeded.db)
    try:
        return [(e["actor"], e["action"]) for e in reversed(audit.entries(conn, target=target))]
    finally:
        conn.close()


def test_an_admin_queues_a_job_and_it_is_audited_as_them(seeded: Seeded, admin: TestClient) -> None:
    form = admin.get(PAGE).text
    assert 'action="/console/kiosks/k-a-ok/jobs"' in form and 'value="15m"' in form
    assert 'value="update"' not in form  # only a rollout orders an update
    r = post(admin, CREATE, {"kind": "selftest", "deadline": "30m"}, page=PAGE)
    assert r.status_code == 303 and r.headers["location"] == PAGE
    (job,) = _jobs(seeded)
    assert (job.kind, job.state.value, job.actor) == ("selftest", "queued", "console:quan.tri")
    assert job.deadline_at - job.created_at == 30 * 60 and job.args == {}
    assert _audit(seeded, f"job:{job.id}") == [("console:quan.tri", "job.create")]
    text = admin.get(PAGE).text
    jobs_part = text[text.index('id="h-jobs"') : text.index('id="h-support"')]
    assert "Tự kiểm tra" in jobs_part and "Đang chờ" in jobs_part
    assert f'action="/console/jobs/{job.id}/cancel"' in jobs_part


def test_purge_synced_takes_its_days_and_the_deadline_has_a_default(
    seeded: Seeded, admin: TestClient
) -> None:
    r = post(admin, CREATE, {"kind": "purge-synced", "older_than_days": "30"}, page=PAGE)
    assert r.status_code == 303
    (job,) = _jobs(seeded)
    assert job.args == {"older_than_days": "30"}
    assert job.deadline_at - job.created_at == 15 * 60


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"kind": "update"}, "kind"),
        ({"kind": "format-disk"}, "kind"),
        ({}, "kind"),
        ({"kind": "selftest", "deadline": "0s"}, "deadline"),
        ({"kind": "selftest", "deadline": "8d"}, "deadline"),
        ({"kind": "selftest", "deadline": "soon"}, "deadline"),
        ({"kind": "purge-synced", "older_than_days": "-1"}, "older_than_days"),
        ({"kind": "purge-synced", "older_than_days": "4000"}, "older_than_days"),
        ({"kind": "purge-synced", "older_than_days": "ba"}, "older_than_days"),
        ({"kind": "selftest", "older_than_days": "3"}, "older_than_days"),
        ({"kind": "selftest", "deadline": "9" * 30}, "deadline"),  # over the form's bound
    ],
)
def test_a_bad_field_is_refused_on_the_page_naming_it(
    seeded: Seeded, admin: TestClient, fields: dict[str, str], named: str
) -> None:
    r = post(admin, CREATE, fields, page=PAGE)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert f"«{named}»" in r.text
    assert _jobs(seeded) == []


def test_what_the_admin_typed_stays_in_the_form_after_a_refusal(admin: TestClient) -> None:
    r = post(admin, CREATE, {"kind": "purge-synced", "deadline": "99x"}, page=PAGE)
    assert r.status_code == 400
    assert 'role="alert"' in r.text and "«deadline»" in r.text
    assert 'value="99x"' in r.text and 'value="purge-synced" selected' in r.text


def test_an_unknown_kiosk_is_404_and_a_revoked_one_takes_no_job(
    seeded: Seeded, admin: TestClient
) -> None:
    r = post(admin, "/console/kiosks/k-nowhere/jobs", {"kind": "selftest"}, page=PAGE)
    assert r.status_code == 404 and "Không tìm thấy" in r.text
    revoked = "/console/kiosks/k-a-revoked"
    assert 'action="/console/kiosks/k-a-revoked/jobs"' not in admin.get(revoked).text
    r = post(admin, f"{revoked}/jobs", {"kind": "selftest"}, page=PAGE)
    assert r.status_code == 409 and "thu hồi" in r.text
    assert _jobs(seeded, "k-nowhere") == [] and _jobs(seeded, "k-a-revoked") == []


@pytest.mark.parametrize("who", ["staff", "viewer"])
def test_staff_and_viewers_see_no_form_and_are_refused_when_they_craft_one(
    seeded: Seeded, request: pytest.FixtureRequest, who: str
) -> None:
    client: TestClient = request.getfixturevalue(who)
    page = client.get("/console/kiosks/k-a-degraded").text
    assert "Giao việc" not in page and "/cancel" not in page
    r = post(client, CREATE, {"kind": "selftest"}, page=PAGE)
    assert r.status_code == 403 and "không có quyền" in r.text
    r = post(client, f"/console/jobs/{seeded.job_a}/cancel", page=PAGE)
    assert r.status_code == 403
    assert _jobs(seeded) == []
    assert _jobs(seeded, "k-a-degraded")[0].state.value == "queued"


def _raw_post(client: TestClient, path: str, data: dict[str, str]) -> Any:
    return client.post(path, data=data, headers={"Origin": ORIGIN}, follow_redirects=False)


def test_a_missing_or_wrong_csrf_token_is_refused(seeded: Seeded, admin: TestClient) -> None:
    token = csrf_of(admin.get(PAGE).text)
    for data in ({"kind": "selftest"}, {"kind": "selftest", "csrf": token[:-2] + "xx"}):
        assert _raw_post(admin, CREATE, data).status_code == 403
        cancel = _raw_post(
            admin, f"/console/jobs/{seeded.job_a}/cancel", {"csrf": data.get("csrf", "")}
        )
        assert cancel.status_code == 403 and "CSRF" in cancel.text
    assert _jobs(seeded) == []
    assert _jobs(seeded, "k-a-degraded")[0].state.value == "queued"


def test_an_admin_cancels_a_queued_job_and_not_a_finished_one(
    seeded: Seeded, admin: TestClient
) -> None:
    page = "/console/kiosks/k-a-degraded"
    r = post(admin, f"/console/jobs/{seeded.job_a}/cancel", page=page)
    assert r.status_code == 303 and r.headers["location"] == page
    (job,) = _jobs(seeded, "k-a-degraded")
    assert job.state.value == "cancelled"
    assert _audit(seeded, f"job:{job.id}") == [
        ("seed", "job.create"),
        ("console:quan.tri", "job.cancel"),
    ]
    text = admin.get(page).text
    assert "Đã huỷ" in text and "/cancel" not in text  # no button on a finished job
    again = post(admin, f"/console/jobs/{seeded.job_a}/cancel", page=page)
    assert again.status_code == 409
    assert "chỉ huỷ được việc đang chờ" in again.text and "is cancelled" in again.text
    assert _audit(seeded, f"job:{job.id}")[-1] == ("console:quan.tri", "job.cancel")


def test_a_job_past_its_deadline_cannot_be_cancelled(seeded: Seeded, admin: TestClient) -> None:
    conn = backoffice_db.connect(seeded.db)
    try:
        (old,) = jobs.create(
            conn, "selftest", kiosks=[KIOSK], deadline_s=1800, actor="seed", now=NOW - 7200
        )
    finally:
        conn.close()
    assert "/cancel" not in admin.get(PAGE).text
    r = post(admin, f"/console/jobs/{old.id}/cancel", page=PAGE)
    assert r.status_code == 409 and "timed-out" in r.text and "Quá hạn" in r.text
    assert [e[1] for e in _audit(seeded, f"job:{old.id}")] == ["job.create", "job.timed-out"]


def test_an_unknown_job_is_404(admin: TestClient) -> None:
    for job_id in ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "abc", "x" * 80):
        r = post(admin, f"/console/jobs/{job_id}/cancel", page=PAGE)
        assert r.status_code == 404, job_id


# -- the form, without I/O --------------------------------------------------------------------


def test_the_console_offers_every_kind_but_update() -> None:
    assert set(job_form.OFFERED) == set(JOB_KINDS) - job_form.NOT_OFFERED


def test_read_turns_the_form_into_a_request() -> None:
    wanted = job_form.read("purge-synced", " 2h ", "007")
    assert (wanted.kind, wanted.deadline_s, wanted.args) == (
        "purge-synced",
        7200,
        {"older_than_days": "7"},
    )
    assert job_form.read("restart-agent", "").deadline_s == 15 * 60
    assert job_form.read("selftest", "30s").deadline_s == 30
    with pytest.raises(job_form.JobFormError) as caught:
        job_form.read("selftest", "29s")
    assert caught.value.field == "deadline" and "«deadline»" in caught.value.message
