"""The console's settings (``[console]`` in central.toml), as the web app uses them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from central.fleet.health import Thresholds

#: argon2id defaults: RFC 9106's second recommended option (t=3, 64 MiB, p=4).
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_PARALLELISM = 4


@dataclass(frozen=True, kw_only=True)
class ConsoleSettings:
    """Session lifetimes, lock-out limits, hashing cost; ``clock`` is for tests."""

    idle_timeout_s: float = 30 * 60.0
    absolute_timeout_s: float = 12 * 3600.0
    max_failures: int = 5  # per account, then locked for lockout_s
    lockout_s: float = 15 * 60.0
    client_free_failures: int = 10  # per client address, then each try waits longer
    client_window_s: float = 15 * 60.0
    client_max_wait_s: float = 300.0
    argon2_time_cost: int = ARGON2_TIME_COST
    argon2_memory_kib: int = ARGON2_MEMORY_KIB
    argon2_parallelism: int = ARGON2_PARALLELISM
    thresholds: Thresholds = field(default_factory=Thresholds)
    cookie_secure: bool | None = None  # None ("auto"): Secure when the request was HTTPS
    clock: Callable[[], float] = time.time
