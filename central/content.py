"""FAQ and news published from central to every kiosk (``faq`` and ``news`` downlink items).

Theory of operation
-------------------
An FAQ entry or a news item has a stable ``id`` chosen by staff (a short
slug). Publishing validates every item of a batch first (all or nothing:
one bad item publishes none and the error names it), then, in one
transaction, stores each, appends an audit row and one downlink item for
``*`` keyed by the id. Republishing an id replaces the entry (its downlink
item supersedes the old one, so a kiosk offline meanwhile gets only the
newest); republishing it unchanged writes nothing. Withdrawing sends the
entry once more with ``withdrawn: true`` so kiosks drop it from their cache.
``published_at`` is when central first published the id.

File format (``aps-central faq publish FILE`` / ``news publish FILE``): TOML,
one ``[[faq]]`` (or ``[[news]]``) table per item::

    [[faq]]
    id = "giay-to-khai-sinh"
    question = "Đăng ký khai sinh cần mang giấy tờ gì?"
    answer = '''
    Giấy chứng sinh (bản chính) và CCCD của cha hoặc mẹ.
    '''
    tags = ["khai sinh", "hộ tịch"]
    procedure = "1.001193"   # optional

    [[news]]
    id = "nghi-tet-2027"
    title = "Lịch nghỉ Tết Nguyên đán"
    body = "Bộ phận một cửa nghỉ từ ..."

Text is normalised to NFC and must be free of control characters.
"""

from __future__ import annotations

import json
import re
import sqlite3
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from central import audit, downlink_log, projection
from central.dossiers import now_iso
from central.staff_text import BackofficeError, NotFound, check_actor, clean_text
from sync.schemas import MESSAGE_CHARS, PROCEDURE_RE

Kind = Literal["faq", "news"]
ID_RE: Final = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z")
QUESTION_CHARS: Final = 300
TITLE_CHARS: Final = 200
ANSWER_CHARS: Final = MESSAGE_CHARS
MAX_TAGS: Final = 10
TAG_CHARS: Final = 40
MAX_ITEMS: Final = 500  # items per publish (one file)
MAX_FILE_BYTES: Final = 2 * 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS content (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    published_at TEXT NOT NULL,
    withdrawn INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
"""

_FIELDS: Final[Mapping[Kind, frozenset[str]]] = {
    "faq": frozenset({"id", "question", "answer", "tags", "procedure"}),
    "news": frozenset({"id", "title", "body"}),
}


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def _check_id(where: str, value: Any) -> str:
    if not isinstance(value, str) or ID_RE.match(value) is None:
        raise BackofficeError(
            f"{where}.id: {value!r}; expected a short id of a-z, 0-9, - and _ "
            f"(at most 64, starting with a letter or digit)"
        )
    return value


def validate_item(kind: Kind, item: Mapping[str, Any], where: str = "item") -> dict[str, Any]:
    """One FAQ entry or news item checked and normalised (without published_at)."""
    if not isinstance(item, Mapping):
        raise BackofficeError(f"{where}: expected a table of fields")
    unknown = sorted(set(item) - _FIELDS[kind])
    if unknown:
        raise BackofficeError(
            f"{where}: unknown field(s) {', '.join(unknown)}; "
            f"a {kind} item has {', '.join(sorted(_FIELDS[kind]))}"
        )
    ident = _check_id(where, item.get("id"))
    where = f"{where} {ident}"

    def text(name: str, limit: int, multiline: bool = False) -> str:
        value = item.get(name)
        if value is None:
            raise BackofficeError(f"{where}: {name} is missing")
        return clean_text(f"{where}.{name}", value, max_chars=limit, multiline=multiline)

    if kind == "news":
        return {
            "id": ident,
            "title": text("title", TITLE_CHARS),
            "body": text("body", ANSWER_CHARS, multiline=True),
        }
    tags_in = item.get("tags", [])
    if not isinstance(tags_in, list) or len(tags_in) > MAX_TAGS:
        raise BackofficeError(f"{where}.tags: expected a list of at most {MAX_TAGS} words")
    tags: list[str] = []
    for n, tag in enumerate(tags_in):
        t = clean_text(f"{where}.tags[{n}]", tag, max_chars=TAG_CHARS)
        if t not in tags:
            tags.append(t)
    procedure = item.get("procedure")
    if procedure is not None and (
        not isinstance(procedure, str) or PROCEDURE_RE.match(procedure) is None
    ):
        raise BackofficeError(
            f"{where}.procedure: {procedure!r}; expected a procedure code such as 1.001193"
        )
    return {
        "id": ident,
        "question": text("question", QUESTION_CHARS),
        "answer": text("answer", ANSWER_CHARS, multiline=True),
        "tags": tags,
        "procedure": procedure,
    }


def _publish(
    conn: sqlite3.Connection,
    kind: Kind,
    items: Sequence[Mapping[str, Any]],
    actor: str,
    now: float | None,
) -> list[dict[str, Any]]:
    who = check_actor(actor)
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise BackofficeError(f"{kind}: expected a list of items")
    if not items:
        raise BackofficeError(f"{kind}: no items to publish")
    if len(items) > MAX_ITEMS:
        raise BackofficeError(f"{kind}: {len(items)} items, more than {MAX_ITEMS} at once")
    checked = [validate_item(kind, item, f"{kind}[{n}]") for n, item in enumerate(items)]
    ids = [c["id"] for c in checked]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise BackofficeError(f"{kind}: id(s) {', '.join(repeated)} appear more than once")
    at = now_iso(now)
    out: list[dict[str, Any]] = []
    with projection.transaction(conn):
        for item in checked:
            old = conn.execute(
                "SELECT body, published_at, withdrawn FROM content WHERE kind = ? AND id = ?",
                (kind, item["id"]),
            ).fetchone()
            published_at = at if old is None else old[1]
            body = {**item, "published_at": published_at, "withdrawn": False}
            text = json.dumps(body, ensure_ascii=False, sort_keys=True)
            if old is not None and old[0] == text:
                out.append({**body, "changed": False})
                continue
            conn.execute(
                "INSERT INTO content (kind, id, body, published_at, withdrawn, updated_at,"
                " updated_by) VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (kind, id) DO UPDATE"
                " SET body = excluded.body, withdrawn = 0, updated_at = excluded.updated_at,"
                " updated_by = excluded.updated_by",
                (kind, item["id"], text, published_at, at, who),
            )
            cursor = downlink_log.append(conn, downlink_log.FLEET, kind, item["id"], body, now=now)
            audit.record(
                conn,
                who,
                f"{kind}.publish",
                f"{kind}:{item['id']}",
                {"new": old is None, "cursor": cursor},
                now=now,
            )
            out.append({**body, "changed": True, "cursor": cursor})
    return out


def publish_faq(
    conn: sqlite3.Connection,
    items: Sequence[Mapping[str, Any]],
    actor: str,
    *,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Publish FAQ entries (id, question, answer, tags, procedure) to every kiosk."""
    return _publish(conn, "faq", items, actor, now)


def publish_news(
    conn: sqlite3.Connection,
    items: Sequence[Mapping[str, Any]],
    actor: str,
    *,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Publish news items (id, title, body) to every kiosk."""
    return _publish(conn, "news", items, actor, now)


def _withdraw(
    conn: sqlite3.Connection, kind: Kind, item_id: str, actor: str, now: float | None
) -> dict[str, Any]:
    who = check_actor(actor)
    _check_id(kind, item_id)
    at = now_iso(now)
    with projection.transaction(conn):
        old = conn.execute(
            "SELECT body, withdrawn FROM content WHERE kind = ? AND id = ?", (kind, item_id)
        ).fetchone()
        if old is None:
            raise NotFound(f"{kind} {item_id}: never published")
        body = {**json.loads(old[0]), "withdrawn": True}
        if old[1]:
            return {**body, "changed": False}
        conn.execute(
            "UPDATE content SET body = ?, withdrawn = 1, updated_at = ?, updated_by = ?"
            " WHERE kind = ? AND id = ?",
            (json.dumps(body, ensure_ascii=False, sort_keys=True), at, who, kind, item_id),
        )
        cursor = downlink_log.append(conn, downlink_log.FLEET, kind, item_id, body, now=now)
        audit.record(
            conn, who, f"{kind}.withdraw", f"{kind}:{item_id}", {"cursor": cursor}, now=now
        )
    return {**body, "changed": True, "cursor": cursor}


def withdraw_faq(
    conn: sqlite3.Connection, faq_id: str, actor: str, *, now: float | None = None
) -> dict[str, Any]:
    return _withdraw(conn, "faq", faq_id, actor, now)


def withdraw_news(
    conn: sqlite3.Connection, news_id: str, actor: str, *, now: float | None = None
) -> dict[str, Any]:
    return _withdraw(conn, "news", news_id, actor, now)


def list_content(
    conn: sqlite3.Connection, kind: Kind, *, include_withdrawn: bool = False
) -> list[dict[str, Any]]:
    sql = "SELECT body FROM content WHERE kind = ?"
    if not include_withdrawn:
        sql += " AND withdrawn = 0"
    return [json.loads(r[0]) for r in conn.execute(sql + " ORDER BY id", (kind,))]


def load_file(path: Path | str, kind: Kind) -> list[dict[str, Any]]:
    """The ``[[faq]]`` or ``[[news]]`` items of a TOML file (module doc), not yet validated."""
    where = Path(path)
    try:
        raw = where.read_bytes()
    except OSError as exc:
        raise BackofficeError(f"cannot read {where}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise BackofficeError(f"{where}: larger than {MAX_FILE_BYTES} bytes; split it")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BackofficeError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BackofficeError(f"{where}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {kind})
    if unknown:
        raise BackofficeError(
            f"{where}: unexpected table(s) {', '.join(unknown)}; this file holds [[{kind}]] items"
        )
    items = data.get(kind)
    if not isinstance(items, list) or not items:
        raise BackofficeError(f"{where}: no [[{kind}]] items")
    return [dict(i) if isinstance(i, dict) else i for i in items]
