"""The console's "queue a job" form, read into what :func:`central.fleet.jobs.create` takes.

No I/O: :func:`read` turns the three text fields (``kind``, ``deadline``,
``older_than_days``) into a :class:`JobRequest` or raises :class:`JobFormError` naming
the field to fix, in Vietnamese (the admin reads it on the kiosk's page).

The console offers the kinds in :data:`OFFERED`: every kind a kiosk runs except
``update``, which only a rollout orders (``aps-central rollout``). The deadline is
written as on the command line (``15m``, ``2h``, ``1d``) and bounded the same way
(:func:`sync.jobs.parse_deadline`). The only argument a console kind takes is
``older_than_days`` of ``purge-synced`` (the kiosk falls back to its configured retention
when it is absent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sync.jobs import DEFAULT_DEADLINE_S, MAX_DEADLINE_S, JobError, parse_deadline

#: The kinds an admin may queue from the console, in the order the form lists them.
OFFERED: Final = (
    "print-test-slip",
    "resync-catalogue",
    "selftest",
    "collect-diagnostics",
    "restart-agent",
    "purge-synced",
)
#: Kinds only something else orders (not offered, refused if posted anyway).
NOT_OFFERED: Final = frozenset({"update"})

DEFAULT_DEADLINE: Final = f"{DEFAULT_DEADLINE_S // 60}m"
#: The kiosk's own bound on ``older_than_days`` (edge_agent/services/job_kinds.py).
MAX_PURGE_DAYS: Final = 3650
_DAYS_RE = re.compile(r"\A[0-9]{1,4}\Z")


class JobFormError(ValueError):
    """A field of the form is wrong; ``field`` is its name, ``message`` says how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = f"Trường «{field}»: {message}"


@dataclass(frozen=True, kw_only=True)
class JobRequest:
    kind: str
    deadline_s: int
    args: dict[str, str] = field(default_factory=dict)


def read(kind: str, deadline: str, older_than_days: str = "") -> JobRequest:
    """The form's fields as a job request; :class:`JobFormError` names the first bad field."""
    kind = kind.strip()
    if kind not in OFFERED:
        why = (
            "chỉ đợt cập nhật (rollout) mới giao việc này"
            if kind in NOT_OFFERED
            else "không có loại việc này"
        )
        raise JobFormError("kind", f"{kind!r}: {why}; chọn một trong: {', '.join(OFFERED)}.")
    text = deadline.strip() or DEFAULT_DEADLINE
    try:
        seconds = parse_deadline(text)
    except JobError:
        raise JobFormError(
            "deadline",
            f"{text!r} không hợp lệ; ghi một số và đơn vị s, m, h hoặc d (ví dụ 15m, 2h), "
            f"từ 30 giây đến {MAX_DEADLINE_S // 86400} ngày.",
        ) from None
    args: dict[str, str] = {}
    days = older_than_days.strip()
    if days:
        if kind != "purge-synced":
            raise JobFormError(
                "older_than_days", "chỉ dùng cho việc purge-synced; với việc này hãy để trống."
            )
        if not _DAYS_RE.match(days) or int(days) > MAX_PURGE_DAYS:
            raise JobFormError(
                "older_than_days",
                f"{days!r} không hợp lệ; ghi số ngày nguyên từ 0 đến {MAX_PURGE_DAYS}, "
                "hoặc để trống để theo cấu hình của ki-ốt.",
            )
        args["older_than_days"] = str(int(days))
    return JobRequest(kind=kind, deadline_s=seconds, args=args)
