"""Console login, sessions, CSRF, Origin and lock-out, over HTTP on the real app and SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from central import backoffice_db
from central.backoffice_db import Target
from central.config import load_central_config
from central.web.console import auth, users
from central.web.server import ApiServer
from sync.config import ConfigError
from tests.console_seed import (
    NOW,
    ORIGIN,
    PASSWORD,
    app_for,
    console_settings,
    csrf_of,
    login,
    post,
    seed,
)
from tests.pg import CentralDb
from tests.stack import write_central_config


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(central_db: CentralDb) -> Target:
    """Central's database on each engine, seeded with the console's fleet and accounts."""
    seed(central_db.target)
    return central_db.target


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(db: Target, clock: Clock) -> Iterator[TestClient]:
    with TestClient(app_for(db, clock=clock, idle_timeout_s=600, absolute_timeout_s=3600)) as c:
        yield c


def _conn(db: Target) -> sqlite3.Connection:
    return backoffice_db.connect(db)


def test_a_page_without_a_session_sends_to_the_login_page(client: TestClient) -> None:
    r = client.get("/console/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=/console/"


def test_login_sets_a_strict_httponly_cookie_and_stores_only_its_hash(
    client: TestClient, db: Target
) -> None:
    r = login(client, "quan.tri")
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; HTTPS sets Secure (test below)
    session_id = client.cookies.get(auth.COOKIE)
    assert session_id
    stored = _conn(db).execute("SELECT id_hash FROM console_sessions").fetchall()
    assert len(stored) == 1 and session_id.encode() not in stored[0][0]
    page = client.get("/console/")
    assert page.status_code == 200 and "Ki-ốt theo cơ quan" in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]


def _cookies_over(db: Target, scheme: str, **settings: Any) -> list[str]:
    """Every Set-Cookie of the login form, a login and a logout over ``scheme``."""
    origin = f"{scheme}://testserver"
    with TestClient(app_for(db, **settings), base_url=origin) as c:
        # httpx keeps a Secure cookie from going back over plain HTTP: sent by hand.
        form = c.get("/console/login")
        token = csrf_of(form.text, "login_token")
        r = c.post(
            "/console/login",
            data={"name": "quan.tri", "password": PASSWORD, "login_token": token},
            headers={"Origin": origin, "Cookie": f"{auth.LOGIN_COOKIE}={token}"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        session = auth.COOKIE + "=" + r.cookies[auth.COOKIE]
        home = c.get("/console/", headers={"Cookie": session})
        out = c.post(
            "/console/logout",
            data={"csrf": csrf_of(home.text)},
            headers={"Origin": origin, "Cookie": session},
            follow_redirects=False,
        )
        assert out.status_code == 303
        answers = (form, r, out)
        return [v for a in answers for k, v in a.headers.multi_items() if k == "set-cookie"]


@pytest.mark.parametrize(
    ("scheme", "cookie_secure", "secure"),
    [
        ("https", None, True),  # "auto"
        ("http", None, False),
        ("http", True, True),  # a TLS proxy on another machine
        ("https", False, False),
    ],
)
def test_the_cookies_are_secure_as_cookie_secure_says(
    db: Target, scheme: str, cookie_secure: bool | None, secure: bool
) -> None:
    cookies = _cookies_over(db, scheme, cookie_secure=cookie_secure)
    # The form's token, the session and the token's deletion, the session's deletion.
    assert len(cookies) == 4
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert ("Secure" in cookie) is secure, cookie


def test_cookie_secure_is_read_from_the_console_section(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    path = write_central_config(tmp_path / "central.toml", db, 18830, kiosks=())
    given = {"auto": None, "true": True, "false": False}
    for toml, wanted in given.items():
        value = '"auto"' if toml == "auto" else toml
        path.write_text(
            f"{path.read_text(encoding='utf-8')}\n[console]\ncookie_secure = {value}\n",
            encoding="utf-8",
        )
        assert load_central_config(path).console.settings().cookie_secure is wanted
        path = write_central_config(tmp_path / "central.toml", db, 18830, kiosks=())
    assert load_central_config(path).console.settings().cookie_secure is None  # default
    with pytest.raises(ConfigError, match="cookie_secure"):
        load_central_config(path, {"console": {"cookie_secure": "sometimes"}})


def test_auto_honours_x_forwarded_proto_from_a_proxy_on_this_machine(db: Target) -> None:
    """uvicorn, as ``aps-central run`` serves the console, behind a loopback TLS proxy."""
    server = ApiServer(app_for(db), "127.0.0.1", 0)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.bound_port}", timeout=30) as c:
            proxied = c.get("/console/login", headers={"X-Forwarded-Proto": "https"})
            plain = c.get("/console/login")
    finally:
        server.stop()
    assert proxied.status_code == plain.status_code == 200
    assert "Secure" in proxied.headers["set-cookie"]
    assert "Secure" not in plain.headers["set-cookie"]


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(client: TestClient) -> None:
    wrong = login(client, "quan.tri", "not the password at all")
    unknown = login(client, "khong.co.ai", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert csrf_of(wrong.text, "login_token") != csrf_of(unknown.text, "login_token")
    strip = lambda t: t.replace(csrf_of(t, "login_token"), "")  # noqa: E731
    assert strip(wrong.text) == strip(unknown.text)
    assert auth.COOKIE not in client.cookies


def test_login_without_the_form_token_or_from_another_origin_is_refused(
    client: TestClient,
) -> None:
    client.get("/console/login")
    r = client.post(
        "/console/login",
        data={"name": "quan.tri", "password": PASSWORD},
        headers={"Origin": ORIGIN},
    )
    assert r.status_code == 403
    form = client.get("/console/login")
    r = client.post(
        "/console/login",
        data={
            "name": "quan.tri",
            "password": PASSWORD,
            "login_token": csrf_of(form.text, "login_token"),
        },
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    assert auth.COOKIE not in client.cookies


def test_a_post_without_the_csrf_token_or_with_a_wrong_one_is_refused(
    client: TestClient, db: Target
) -> None:
    login(client, "quan.tri")
    for data in ({}, {"csrf": "x" * 43}):
        r = client.post(
            "/console/logout", data=data, headers={"Origin": ORIGIN}, follow_redirects=False
        )
        assert r.status_code == 403
        assert "CSRF" in r.text
    assert client.get("/console/", follow_redirects=False).status_code == 200  # still in


def test_a_post_with_the_token_but_no_origin_is_refused(client: TestClient) -> None:
    login(client, "quan.tri")
    token = csrf_of(client.get("/console/").text)
    r = client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 403 and "Origin" in r.text
    r = client.post(
        "/console/logout",
        data={"csrf": token},
        headers={"Referer": f"{ORIGIN}/console/"},
        follow_redirects=False,
    )
    assert r.status_code == 303  # a same-origin Referer stands in for a missing Origin


def test_logout_deletes_the_session(client: TestClient, db: Target) -> None:
    login(client, "quan.tri")
    old = client.cookies.get(auth.COOKIE)
    r = post(client, "/console/logout", page="/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert _conn(db).execute("SELECT count(*) FROM console_sessions").fetchone()[0] == 0
    client.cookies.set(auth.COOKIE, old or "", path="/console")
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_an_idle_session_expires_and_a_used_one_lives_until_the_absolute_limit(
    client: TestClient, clock: Clock
) -> None:
    login(client, "quan.tri")
    clock.now += 599
    assert client.get("/console/", follow_redirects=False).status_code == 200
    clock.now += 601  # idle 601 s > 600
    assert client.get("/console/", follow_redirects=False).status_code == 303
    login(client, "quan.tri")
    for _ in range(6):  # used every 590 s: never idle, but 3540 s old, then 4130 s
        clock.now += 590
        assert client.get("/console/", follow_redirects=False).status_code == 200
    clock.now += 590
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_an_account_locks_after_n_failures_and_unlocks_after_the_time(
    client: TestClient, clock: Clock, db: Target
) -> None:
    for _ in range(5):
        assert login(client, "can.bo.a", "wrong password here").status_code == 401
    locked = login(client, "can.bo.a")
    assert locked.status_code == 401  # the right password, but locked
    assert users.require_user(_conn(db), "can.bo.a").locked(clock.now)
    clock.now += 15 * 60 + 1
    assert login(client, "can.bo.a").status_code == 303


def test_an_admin_unlocks_an_account_from_the_users_page(db: Target, clock: Clock) -> None:
    app = app_for(db, clock=clock)
    with TestClient(app) as staff, TestClient(app) as admin:
        for _ in range(5):
            login(staff, "can.bo.a", "wrong password here")
        assert login(staff, "can.bo.a").status_code == 401
        login(admin, "quan.tri")
        assert "Đang bị khoá" in admin.get("/console/users").text
        r = post(admin, "/console/users/can.bo.a/unlock", page="/console/users")
        assert r.status_code == 303
        assert login(staff, "can.bo.a").status_code == 303
        entry = (
            _conn(db)
            .execute("SELECT actor FROM audit WHERE action = 'console.user.unlock'")
            .fetchone()
        )
        assert entry == ("console:quan.tri",)


def test_many_failures_from_one_address_slow_it_down_whatever_the_names(
    db: Target, clock: Clock
) -> None:
    with TestClient(app_for(db, clock=clock, client_free_failures=3)) as c:
        for i in range(3):
            assert login(c, f"ten.{i}", "wrong password here").status_code == 401
        r = login(c, "quan.tri")  # 3 free failures spent: even the right password waits 1 s
        assert r.status_code == 429 and r.headers["Retry-After"] == "2"
        clock.now += 1.5
        assert login(c, "ten.x", "wrong password here").status_code == 401
        assert login(c, "quan.tri").status_code == 429  # now 2 s after the 4th failure
        clock.now += 2.5
        assert login(c, "quan.tri").status_code == 303


def test_a_disabled_account_cannot_log_in_and_loses_its_sessions(
    client: TestClient, db: Target
) -> None:
    login(client, "nguoi.xem")
    conn = _conn(db)
    users.set_disabled(conn, "test", "nguoi.xem")
    assert client.get("/console/", follow_redirects=False).status_code == 303
    assert login(client, "nguoi.xem").status_code == 401


def test_a_hash_made_with_old_parameters_is_rehashed_at_login(db: Target) -> None:
    conn = _conn(db)
    before = conn.execute(
        "SELECT password_hash FROM console_users WHERE name = 'quan.tri'"
    ).fetchone()[0]
    assert "t=1" in before
    with TestClient(app_for(db, argon2_time_cost=2)) as c:
        assert login(c, "quan.tri").status_code == 303
    after = conn.execute(
        "SELECT password_hash FROM console_users WHERE name = 'quan.tri'"
    ).fetchone()[0]
    assert after != before and "t=2" in after


def test_the_next_parameter_only_leads_inside_the_console(client: TestClient) -> None:
    form = client.get("/console/login?next=//evil.example/console/")
    assert 'value="/console/"' in form.text
    r = client.post(
        "/console/login",
        data={
            "name": "quan.tri",
            "password": PASSWORD,
            "next": "https://evil.example/",
            "login_token": csrf_of(form.text, "login_token"),
        },
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/console/"


def test_users_reject_bad_names_roles_offices_and_short_passwords(db: Target) -> None:
    conn = _conn(db)
    s = console_settings()
    with pytest.raises(users.UserError, match="name"):
        users.add_user(conn, "t", "Bad Name", PASSWORD, role="admin", office=None, settings=s)
    with pytest.raises(users.UserError, match="role"):
        users.add_user(conn, "t", "ok.name", PASSWORD, role="root", office=None, settings=s)
    with pytest.raises(users.UserError, match="office"):
        users.add_user(conn, "t", "ok.name", PASSWORD, role="staff", office=None, settings=s)
    with pytest.raises(users.UserError, match="at least 12"):
        users.add_user(conn, "t", "ok.name", "short", role="viewer", office=None, settings=s)
    with pytest.raises(users.UserError, match="exists"):
        users.add_user(conn, "t", "quan.tri", PASSWORD, role="viewer", office=None, settings=s)


def test_an_unknown_name_costs_the_same_argon2_verification(
    db: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    from argon2 import PasswordHasher

    calls: list[str] = []
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str, password: str) -> bool:
        calls.append(hash)
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    conn = _conn(db)
    s = console_settings()
    for name in ("quan.tri", "khong.co.ai", "Not A Name!"):
        assert users.check_login(conn, name, "wrong password here", client="c", settings=s) is None
    assert len(calls) == 3  # one verification each, a real hash or the dummy one
    assert len({h.split("$")[3] for h in calls}) == 1  # with the same parameters


def test_disabling_deletes_the_sessions_and_a_disabled_flag_alone_also_ends_them(
    client: TestClient, db: Target
) -> None:
    login(client, "nguoi.xem")
    conn = _conn(db)
    users.set_disabled(conn, "test", "nguoi.xem")
    assert conn.execute(
        "SELECT count(*) FROM console_sessions WHERE user = 'nguoi.xem'"
    ).fetchone() == (0,)
    users.set_disabled(conn, "test", "nguoi.xem", disabled=False)
    assert login(client, "nguoi.xem").status_code == 303
    # The flag set by other means (an old session row left behind): still refused.
    conn.execute("UPDATE console_users SET disabled = 1 WHERE name = 'nguoi.xem'")
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_a_new_login_replaces_the_old_session_and_purges_expired_ones(
    client: TestClient, db: Target, clock: Clock
) -> None:
    from tests.console_seed import app_for as make

    with TestClient(make(db, clock=clock, idle_timeout_s=600)) as other:
        login(other, "nguoi.xem")  # will expire
    clock.now += 700
    login(client, "quan.tri")
    first = client.cookies.get(auth.COOKIE)
    login(client, "quan.tri")
    assert client.cookies.get(auth.COOKIE) != first
    rows = _conn(db).execute('SELECT "user" FROM console_sessions').fetchall()
    assert rows == [("quan.tri",)]


def test_a_session_survives_a_restart_of_central(db: Target, clock: Clock) -> None:
    with TestClient(app_for(db, clock=clock)) as before:
        login(before, "quan.tri")
        cookie = before.cookies.get(auth.COOKIE)
    with TestClient(app_for(db, clock=clock)) as after:  # a new app: central restarted
        after.cookies.set(auth.COOKIE, cookie or "", path="/console")
        assert after.get("/console/", follow_redirects=False).status_code == 200
