"""The account lock-out as a state machine: random logins (right, wrong, unknown names),
clock steps and admin unlocks against a small model of what must happen."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from central import backoffice_db
from central.web.console import users
from central.web.console.settings import ConsoleSettings

PASSWORD = "mật khẩu đủ dài 2026"
MAX_FAILURES = 3
LOCKOUT_S = 100.0


class Lockout(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.now = 1_000_000.0
        self.settings = ConsoleSettings(
            max_failures=MAX_FAILURES,
            lockout_s=LOCKOUT_S,
            client_free_failures=10_000,  # the per-address brake is tested elsewhere
            argon2_time_cost=1,
            argon2_memory_kib=8192,
            argon2_parallelism=1,
            clock=lambda: self.now,
        )
        self.conn = backoffice_db.connect(Path(self.dir.name) / "c.db")
        users.ensure_schema(self.conn)
        users.add_user(
            self.conn, "t", "lan", PASSWORD, role="viewer", office=None, settings=self.settings
        )
        # the model
        self.failures = 0
        self.locked_until: float | None = None

    def teardown(self) -> None:
        self.conn.close()
        self.dir.cleanup()

    def _locked(self) -> bool:
        return self.locked_until is not None and self.now < self.locked_until

    def _try(self, password: str) -> users.User | None:
        return users.check_login(self.conn, "lan", password, client="c", settings=self.settings)

    @rule()
    def right_password(self) -> None:
        got = self._try(PASSWORD)
        if self._locked():
            assert got is None
        else:
            assert got is not None and got.name == "lan"
            self.failures, self.locked_until = 0, None

    @rule(password=st.sampled_from(["wrong password 1", "", "x" * 2000]))
    def wrong_password(self, password: str) -> None:
        assert self._try(password) is None
        if not self._locked():
            self.failures += 1
            if self.failures >= MAX_FAILURES:
                self.failures, self.locked_until = 0, self.now + LOCKOUT_S

    @rule(name=st.sampled_from(["nobody", "LAN", "lan ", "", "a" * 300]))
    def unknown_name(self, name: str) -> None:
        got = users.check_login(self.conn, name, PASSWORD, client="c", settings=self.settings)
        assert got is None  # never another account, never the model's account

    @rule(seconds=st.sampled_from([1.0, 50.0, 99.0, 101.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def admin_unlocks(self) -> None:
        users.unlock(self.conn, "admin", "lan")
        self.failures, self.locked_until = 0, None

    @invariant()
    def stored_state_matches(self) -> None:
        user = users.require_user(self.conn, "lan")
        assert user.locked(self.now) == self._locked()
        assert user.failures == self.failures


Lockout.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestLockout = Lockout.TestCase
