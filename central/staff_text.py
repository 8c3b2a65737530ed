"""What staff type into the back office (notes, answers, FAQ, news): checked before use.

Staff text reaches citizens' screens, so it obeys the citizen-text rules of
:mod:`sync.schemas`: NFC (it is normalised here, as the kiosk normalises what
a citizen types), no control or format characters (refused, never dropped),
and bounded. A failure is a :class:`BackofficeError` naming the field, the
rule and the fix.
"""

from __future__ import annotations

from central import CentralError
from sync.schemas import normalize_text, text_problem


class BackofficeError(CentralError, ValueError):
    """A back-office request that cannot be done; the message says why and what to do."""


class NotFound(BackofficeError):
    """The dossier, inquiry or item named does not exist (HTTP 404)."""


class Conflict(BackofficeError):
    """The request contradicts what central holds (HTTP 409): an illegal transition,
    a payment reference already used for another dossier or amount."""


MAX_ACTOR_CHARS = 200


def check_actor(actor: str) -> str:
    """Who makes a change (``cli:<user>``, an API token's name): required, one line."""
    if not isinstance(actor, str) or not actor.strip():
        raise BackofficeError("actor: empty; every change names who made it")
    return clean_text("actor", actor, max_chars=MAX_ACTOR_CHARS)


def clean_text(
    field: str,
    value: str,
    *,
    max_chars: int,
    multiline: bool = False,
    required: bool = True,
) -> str:
    """``value`` normalised (NFC, trimmed); raise unless it is acceptable text."""
    if not isinstance(value, str):
        raise BackofficeError(f"{field}: expected text, not {type(value).__name__}")
    text = normalize_text(value, multiline=multiline)
    if required and not text:
        raise BackofficeError(f"{field}: empty; give some text")
    if len(text) > max_chars:
        raise BackofficeError(
            f"{field}: {len(text)} characters, longer than {max_chars}; shorten it"
        )
    problem = text_problem(text, multiline=multiline)
    if problem is not None:
        raise BackofficeError(f"{field}: {problem[1]}; remove it and send the text again")
    return text


def optional_text(
    field: str, value: str | None, *, max_chars: int, multiline: bool = False
) -> str | None:
    """:func:`clean_text`, with None (or only whitespace) meaning no text."""
    if value is None:
        return None
    text = clean_text(field, value, max_chars=max_chars, multiline=multiline, required=False)
    return text or None
