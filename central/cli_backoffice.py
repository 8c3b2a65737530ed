"""``aps-central dossier|inquiry|faq|news|report``: the back office from the command line.

A thin layer over :mod:`central.dossiers`, :mod:`central.answers`,
:mod:`central.content` and :mod:`central.reports` (the HTTP API calls the
same functions). Every change is audited with the actor ``cli:<unix user>``.
The database is ``central.database`` of ``--config``; it must exist (central
creates it when it first runs), so a wrong path is an error, not a new file.
A refused request exits 1 with the reason on stderr and changes nothing.
"""

from __future__ import annotations

import getpass
import json
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from central import answers, audit, backoffice_db, content, dossiers, downlink_log, reports
from central.cli_db import open_backoffice
from central.config import CentralConfig, load_central_config
from central.staff_text import BackofficeError
from sync.config import ConfigError
from sync.dossier_status import LABELS_VI, STATES, parse_state

DEFAULT_CONFIG = "/etc/aps/central.toml"
F = TypeVar("F", bound=Callable[..., Any])


def _config_option(f: F) -> F:
    return click.option(
        "--config",
        "config_path",
        default=DEFAULT_CONFIG,
        show_default=True,
        help="Central's TOML configuration file.",
    )(f)


def _json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def actor() -> str:
    """``cli:<unix user>``: who made a change from this command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


@contextmanager
def _open(config_path: str) -> Iterator[tuple[CentralConfig, sqlite3.Connection]]:
    try:
        cfg = load_central_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    conn = open_backoffice(cfg.central, config_path)
    try:
        yield cfg, conn
    except BackofficeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        conn.close()


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


# -- dossier ------------------------------------------------------------------------------


@click.group()
def dossier() -> None:
    """Dossiers at central: search, status changes, payments, duplicates."""


def _line(d: dict[str, Any]) -> str:
    paid = "paid" if d["paid"] else "unpaid"
    held = "" if d["received"] else "  (record not received yet)"
    return (
        f"{d['code']}  {d['state']}  {paid}  {d['day'] or '-'}  {d['procedure'] or '-'}  "
        f"{d['applicant_name'] or '-'}{held}"
    )


@dossier.command("search")
@_config_option
@click.option("--code", default=None, help="A whole dossier code or its beginning.")
@click.option("--office", default=None, help="The office (agency code, e.g. 000.00.14.H56).")
@click.option("--day", default=None, help="Day of reception, YYYY-MM-DD.")
@click.option("--state", default=None, help=f"One of: {', '.join(STATES)}.")
@click.option("--limit", default=100, show_default=True, help="At most this many dossiers.")
@_json_option
def dossier_search(
    config_path: str,
    code: str | None,
    office: str | None,
    day: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List dossiers matching every filter given, newest first."""
    with _open(config_path) as (_, conn):
        found = dossiers.search_dossiers(
            conn, code=code, office=office, day=day, state=state, limit=limit
        )
    if as_json:
        _echo_json(found)
        return
    for d in found:
        click.echo(_line(d))
    click.echo(f"{len(found)} dossier(s)", err=True)


@dossier.command("show")
@_config_option
@click.argument("code")
def dossier_show(config_path: str, code: str) -> None:
    """Print one dossier with its payments, allowed next states and history (JSON)."""
    with _open(config_path) as (_, conn):
        _echo_json(dossiers.get_dossier(conn, code))


@dossier.command("status")
@_config_option
@click.argument("code")
@click.argument("state")
@click.option("--note", default=None, help="A note for the citizen (Vietnamese), shown on screen.")
@click.option(
    "--portal-code", default=None, help="The portal's status code, if the back office sent one."
)
def dossier_status(
    config_path: str, code: str, state: str, note: str | None, portal_code: str | None
) -> None:
    """Set a dossier's STATE; it flows down to every kiosk of the dossier's office.

    A dossier central has not received yet is accepted and held until its record arrives.
    """
    with _open(config_path) as (cfg, conn):
        out = dossiers.set_status(
            conn,
            code,
            state,
            actor=actor(),
            note=note,
            portal_code=portal_code,
            portal_codes=cfg.dossiers.portal_codes(),
        )
    label = LABELS_VI[parse_state(out["state"])]
    what = "set" if out["changed"] else "unchanged (already so)"
    held = "; held until its record reaches central" if out["held"] else ""
    click.echo(f"{code}: {out['state']} ({label}) {what}{held}")


@dossier.command("pay")
@_config_option
@click.argument("code")
@click.option("--amount", type=int, required=True, help="Amount paid, in dong.")
@click.option("--reference", required=True, help="The bank's or portal's transaction id.")
@click.option(
    "--paid-at", default=None, help="When it was paid (ISO 8601 with offset); default now."
)
@click.option(
    "--source", default="cli", show_default=True, help="Where the confirmation came from."
)
def dossier_pay(
    config_path: str, code: str, amount: int, reference: str, paid_at: str | None, source: str
) -> None:
    """Record a confirmed payment (once per reference; a repeat records nothing)."""
    when = paid_at or datetime.now(UTC).astimezone().isoformat(timespec="seconds")
    with _open(config_path) as (_, conn):
        out = dossiers.record_payment(
            conn,
            code,
            amount_vnd=amount,
            reference=reference,
            paid_at=when,
            actor=actor(),
            source=source,
        )
    if out["replayed"]:
        click.echo(f"{code}: payment {reference} was already recorded; nothing changed")
        return
    state = "paid" if out["paid"] else f"not fully paid (fee {out['fee_vnd']} VND)"
    click.echo(f"{code}: {out['paid_amount']} VND received in total, {state}")


@dossier.command("duplicates")
@_config_option
@click.option("--window-h", type=float, default=None, help="Hours apart; default [dossiers].")
@click.option("--office", default=None, help="Only dossiers of this office.")
@click.option("--day", default=None, help="Only dossiers received that day, YYYY-MM-DD.")
@click.option("--all", "include_settled", is_flag=True, help="Include withdrawn/rejected pairs.")
@_json_option
def dossier_duplicates(
    config_path: str,
    window_h: float | None,
    office: str | None,
    day: str | None,
    include_settled: bool,
    as_json: bool,
) -> None:
    """List likely duplicate filings (same applicant and procedure, or unconfirmed_before)."""
    with _open(config_path) as (cfg, conn):
        window = cfg.dossiers.duplicate_window_s if window_h is None else window_h * 3600.0
        found = dossiers.duplicates(
            conn, window_s=window, office=office, day=day, include_settled=include_settled
        )
    if as_json:
        _echo_json(found)
        return
    for p in found["pairs"]:
        click.echo(
            f"{p['code']} likely repeats {p['duplicate_of']} ({p['reason']}, "
            f"{p['apart_s']:.0f} s apart): {p['applicant_name']}, {p['procedure']}"
        )
    click.echo(
        f"{len(found['pairs'])} pair(s); {found['unconfirmed_before']} dossier(s) filed after "
        f"an unconfirmed filing",
        err=True,
    )


# -- inquiry ------------------------------------------------------------------------------


@click.group()
def inquiry() -> None:
    """Questions, feedback and petitions from kiosks, and their answers."""


@inquiry.command("list")
@_config_option
@click.option("--office", default=None, help="Only inquiries from kiosks of this office.")
@click.option("--category", type=click.Choice(["question", "feedback", "petition"]), default=None)
@click.option("--unanswered", is_flag=True, help="Only those without an answer, oldest first.")
@click.option("--limit", default=100, show_default=True, help="At most this many.")
@_json_option
def inquiry_list(
    config_path: str,
    office: str | None,
    category: str | None,
    unanswered: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List inquiries (newest first, or oldest unanswered first)."""
    with _open(config_path) as (_, conn):
        found = answers.list_inquiries(
            conn, office=office, category=category, unanswered=unanswered, limit=limit
        )
    if as_json:
        _echo_json(found)
        return
    for i in found:
        state = "answered" if i["answered"] else "open"
        message = i["message"].replace("\n", " ")[:80]
        click.echo(
            f"{i['lookup_code'] or '-'}  {i['category']}  {state}  {i['office'] or '-'}  "
            f"{i['day']}  {message}"
        )
    click.echo(f"{len(found)} inquiry(ies)", err=True)


@inquiry.command("answer")
@_config_option
@click.argument("lookup")
@click.argument("text")
@click.option("--by", "answered_by", default=None, help="Display name shown with the answer.")
@click.option("--office", default=None, help="Only needed if two offices used this code.")
def inquiry_answer(
    config_path: str, lookup: str, text: str, answered_by: str | None, office: str | None
) -> None:
    """Answer inquiry LOOKUP with TEXT ('-' reads it from stdin); it goes to its office."""
    if text == "-":
        text = sys.stdin.read()
    with _open(config_path) as (_, conn):
        out = answers.answer(
            conn, lookup, text, actor=actor(), answered_by=answered_by, office=office
        )
    click.echo(f"{lookup}: answered; sent to {out['audience']}")


# -- faq and news -------------------------------------------------------------------------


def _content_group(kind: content.Kind, what: str) -> click.Group:
    group = click.Group(kind, help=f"{what} published to every kiosk.")

    @group.command("publish")
    @_config_option
    @click.argument("file", type=click.Path(dir_okay=False))
    def publish(config_path: str, file: str) -> None:
        """Publish every item of a TOML FILE (docs/backoffice.md); all or none."""
        with _open(config_path) as (_, conn):
            items = content.load_file(file, kind)
            fn = content.publish_faq if kind == "faq" else content.publish_news
            out = fn(conn, items, actor())
        changed = sum(1 for o in out if o["changed"])
        click.echo(f"{kind}: {changed} published, {len(out) - changed} unchanged")

    @group.command("withdraw")
    @_config_option
    @click.argument("item_id")
    def withdraw(config_path: str, item_id: str) -> None:
        """Withdraw item ITEM_ID from every kiosk."""
        with _open(config_path) as (_, conn):
            fn = content.withdraw_faq if kind == "faq" else content.withdraw_news
            out = fn(conn, item_id, actor())
        click.echo(f"{kind} {item_id}: {'withdrawn' if out['changed'] else 'already withdrawn'}")

    @group.command("list")
    @_config_option
    @click.option("--all", "include_withdrawn", is_flag=True, help="Include withdrawn items.")
    def list_(config_path: str, include_withdrawn: bool) -> None:
        """Print the published items (JSON)."""
        with _open(config_path) as (_, conn):
            _echo_json(content.list_content(conn, kind, include_withdrawn=include_withdrawn))

    return group


faq = _content_group("faq", "Frequently asked questions")
news = _content_group("news", "News")


# -- report -------------------------------------------------------------------------------


@click.group()
def report() -> None:
    """Reports per office and day: ratings, dossiers."""


def _range_options(f: F) -> F:
    for option in (
        click.option("--until", default=None, help="Last day, YYYY-MM-DD."),
        click.option("--since", default=None, help="First day, YYYY-MM-DD."),
        click.option("--office", default=None, help="Only this office."),
        click.option("--day", default=None, help="Only this day, YYYY-MM-DD."),
    ):
        f = option(f)
    return f


@report.command("ratings")
@_config_option
@_range_options
@_json_option
def report_ratings(
    config_path: str,
    day: str | None,
    office: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Satisfaction ratings per office and day: counts and shares."""
    with _open(config_path) as (_, conn):
        rows = reports.ratings(conn, day=day, office=office, since=since, until=until)
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        parts = ", ".join(
            f"{reports.LEVEL_LABELS_VI[k]} {n} ({r['shares'][k]:.0%})"
            for k, n in r["counts"].items()
        )
        click.echo(f"{r['day']}  {r['office']}  {r['total']}: {parts}")


@report.command("dossiers")
@_config_option
@_range_options
@_json_option
def report_dossiers(
    config_path: str,
    day: str | None,
    office: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Dossiers per office, day and state."""
    with _open(config_path) as (_, conn):
        rows = reports.dossier_counts(conn, day=day, office=office, since=since, until=until)
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['day']}  {r['office']}  {r['state']}: {r['count']} ({r['paid']} paid)")


# -- kiosks and their offices ----------------------------------------------------------------


@click.group()
def kiosk() -> None:
    """Which one-stop office each kiosk serves (the audience of statuses and answers)."""


@kiosk.command("set-office")
@_config_option
@click.argument("kiosk_id", metavar="KIOSK")
@click.argument("office", metavar="AGENCY")
def kiosk_set_office(config_path: str, kiosk_id: str, office: str) -> None:
    """Put KIOSK in the office AGENCY (the agency id its dossier codes start with).

    Until enrolment records it, a kiosk's first claim is trusted and a later
    different claim is refused; run this when a kiosk really moved office.
    """
    if not re.fullmatch(r"[0-9A-Z][0-9A-Z.]{2,30}", office):
        raise click.ClickException(
            f"AGENCY {office!r}: expected the agency id that starts the office's dossier "
            "codes, e.g. 000.00.14.H56"
        )
    with _open(config_path) as (_cfg, conn), backoffice_db.transaction(conn):
        before = downlink_log.office_of(conn, kiosk_id)
        downlink_log.assign_office(conn, kiosk_id, office, source="admin")
        audit.record(
            conn, actor(), "kiosk.office", f"kiosk:{kiosk_id}", {"from": before, "to": office}
        )
    click.echo(f"kiosk {kiosk_id}: office {office}" + (f" (was {before})" if before else ""))


@kiosk.command("offices")
@_config_option
@_json_option
def kiosk_offices(config_path: str, as_json: bool) -> None:
    """List kiosks with their office and where central learnt it."""
    with _open(config_path) as (_cfg, conn):
        rows = conn.execute(
            "SELECT kiosk, office, since, source FROM kiosk_offices ORDER BY office, kiosk"
        ).fetchall()
    items = [{"kiosk": k, "office": o, "since": s, "source": src} for k, o, s, src in rows]
    if as_json:
        _echo_json(items)
        return
    for it in items:
        click.echo(f"{it['kiosk']}\t{it['office']}\t{it['source']}")
