"""Who may call which console route, and which office's data they see.

One table, :data:`ROUTE_POLICIES`, maps every console route (by its name) to a
:class:`Policy`. The guard (:func:`central.web.console.routes.guard`) looks the route up
on every request and refuses a route that is not in the table, so a new page without a
policy cannot be reached (and ``tests/test_console_policy.py`` fails).

Roles:

- ``admin``: everything, every office (queuing and cancelling remote jobs too);
- ``viewer``: read-only, every office;
- ``staff``: read-only for the kiosks of their office; their office's support queue,
  questions and petitions, dossier statuses and ratings, read and answer. What belongs to
  another office does not exist for them: the page answers 404, as for an unknown id.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from central.web.console.users import Role, User


class Policy(StrEnum):
    PUBLIC = "public"  # the login page and the stylesheet
    SIGNED_IN = "signed-in"  # logging out
    READ = "read"  # any role; staff see their own office only
    OFFICE_WORK = "office-work"  # admin, or staff for their own office
    ADMIN = "admin"


ROUTE_POLICIES: dict[str, Policy] = {
    "console_css": Policy.PUBLIC,
    "console_login_form": Policy.PUBLIC,
    "console_login": Policy.PUBLIC,
    "console_logout": Policy.SIGNED_IN,
    "console_fleet": Policy.READ,
    "console_kiosk": Policy.READ,
    "console_kiosk_job_create": Policy.ADMIN,
    "console_job_cancel": Policy.ADMIN,
    "console_alerts": Policy.READ,
    "console_alert": Policy.READ,
    "console_alert_acknowledge": Policy.ADMIN,
    "console_charts": Policy.READ,
    "console_support": Policy.READ,
    "console_support_request": Policy.READ,
    "console_support_take": Policy.OFFICE_WORK,
    "console_support_resolve": Policy.OFFICE_WORK,
    "console_inquiries": Policy.READ,
    "console_inquiry": Policy.READ,
    "console_inquiry_answer": Policy.OFFICE_WORK,
    "console_dossiers": Policy.READ,
    "console_dossier": Policy.READ,
    "console_dossier_status": Policy.OFFICE_WORK,
    "console_users": Policy.ADMIN,
    "console_user_unlock": Policy.ADMIN,
}

_ALLOWED: dict[Policy, frozenset[Role]] = {
    Policy.SIGNED_IN: frozenset(Role),
    Policy.READ: frozenset(Role),
    Policy.OFFICE_WORK: frozenset({Role.ADMIN, Role.STAFF}),
    Policy.ADMIN: frozenset({Role.ADMIN}),
}


def allows(policy: Policy, user: User | None) -> bool:
    if policy is Policy.PUBLIC:
        return True
    return user is not None and user.role in _ALLOWED[policy]


@dataclass(frozen=True)
class Scope:
    """The offices a user sees: ``office`` None means every office."""

    office: str | None

    def sees(self, office: str | None) -> bool:
        return self.office is None or office == self.office

    @property
    def all_offices(self) -> bool:
        return self.office is None


def scope_of(user: User) -> Scope:
    return Scope(user.office if user.role is Role.STAFF else None)


def may_work(user: User) -> bool:
    """Can this user change anything (answer, take, set a status)?"""
    return user.role in _ALLOWED[Policy.OFFICE_WORK]
