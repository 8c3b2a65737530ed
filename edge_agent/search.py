"""Search that forgives missing diacritics and common typing, for procedures, FAQ, news.

Theory of operation
-------------------
Citizens type on a kiosk keyboard, often without Vietnamese input: "khai sinh"
must find "Đăng ký khai sinh", "chung thuc ban sao" must find "Chứng thực bản
sao từ bản chính". Both the documents and the query go through one
:func:`normalize`: NFD, combining marks dropped (the tone and vowel marks),
``đ`` -> ``d``, lower case, everything that is not a letter or digit a space.
Normalising twice changes nothing, and a query with its diacritics removed
normalises exactly like the query with them, so dropping diacritics never
loses a match.

Leftovers of Telex or VNI typing without an input method ("khai sinhf",
"ke6t ho6n") are forgiven word by word: a query word that is in no document
but is a known word once its trailing tone key (``s f r x j`` in Telex, a
digit in VNI) is dropped, is read as that word.

Ranking, per document field (each field has a weight):

- the whole query as a phrase in the field: (8 + 2 x the share of the
  field's words it covers) x weight;
- every query word in the field: 3 x weight;
- each query word found: 1 x weight (a word that is a prefix of a field word,
  the citizen still typing, counts half).

The score is the sum over fields; ties keep the documents' given order. A
document that matches no query word is not returned.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.catalogue import Catalogue

MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 12

_NON_WORD = re.compile(r"[^0-9a-z]+")
_TELEX_TONES = frozenset("sfrxj")


def normalize(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: diacritics, đ and punctuation gone."""
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    stripped = stripped.replace("đ", "d").replace("Đ", "D").lower()
    return " ".join(_NON_WORD.sub(" ", stripped).split())


def words(text: str) -> list[str]:
    return normalize(text).split()


@dataclass(frozen=True, kw_only=True)
class Hit:
    id: str
    score: float


@dataclass(frozen=True)
class _Field:
    text: str  # normalised, padded with spaces for whole-word phrase tests
    words: frozenset[str]
    weight: float


class SearchIndex:
    """An in-memory index over ``documents``: ``[(id, [(text, weight), ...]), ...]``."""

    def __init__(self, documents: Sequence[tuple[str, Sequence[tuple[str, float]]]]) -> None:
        self._docs: list[tuple[str, list[_Field]]] = []
        vocabulary: set[str] = set()
        for doc_id, fields in documents:
            built = []
            for text, weight in fields:
                ws = words(text)
                vocabulary.update(ws)
                built.append(_Field(text=f" {' '.join(ws)} ", words=frozenset(ws), weight=weight))
            self._docs.append((doc_id, built))
        self._vocabulary = frozenset(vocabulary)

    def _repair(self, word: str) -> str:
        """A Telex/VNI leftover ("sinhf", "ho6n") read as the word it was meant to be."""
        if word in self._vocabulary or len(word) < 2:
            return word
        candidates = []
        if word[-1] in _TELEX_TONES:
            candidates.append(word[:-1])
        digits_out = re.sub(r"[0-9]", "", word)
        if digits_out and digits_out != word and not word.isdigit():
            candidates.append(digits_out)
        for c in candidates:
            if c in self._vocabulary:
                return c
        return word

    def query_words(self, query: str) -> list[str]:
        out: list[str] = []
        for w in words(query[:MAX_QUERY_CHARS]):
            w = self._repair(w)
            if w not in out:
                out.append(w)
        return out[:MAX_QUERY_WORDS]

    def search(self, query: str, *, limit: int = 20) -> list[Hit]:
        qwords = self.query_words(query)
        if not qwords:
            return []
        phrase = f" {' '.join(qwords)} "
        scored: list[tuple[float, int, str]] = []
        for order, (doc_id, fields) in enumerate(self._docs):
            score = 0.0
            matched: set[str] = set()
            for f in fields:
                found = 0.0
                whole = 0
                for w in qwords:
                    if w in f.words:
                        found += 1.0
                        whole += 1
                        matched.add(w)
                    elif len(w) >= 2 and any(fw.startswith(w) for fw in f.words):
                        found += 0.5
                        matched.add(w)
                if found == 0:
                    continue
                score += found * f.weight
                if whole == len(qwords):
                    score += 3 * f.weight
                    if phrase in f.text:
                        # The phrase covering more of the field (a shorter name) ranks first.
                        score += (8 + 2 * len(qwords) / len(f.words)) * f.weight
            if matched:
                scored.append((score, order, doc_id))
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [Hit(id=doc_id, score=score) for score, _, doc_id in scored[:limit]]


def procedure_index(catalogue: Catalogue) -> SearchIndex:
    """An index over a catalogue's procedures: name 4, each keyword 3, code 2, field 1,
    guidance 0.5."""
    return SearchIndex(
        [
            (
                p.code,
                [
                    (p.name, 4.0),
                    *((k, 3.0) for k in p.keywords),
                    (p.code, 2.0),
                    (p.field, 1.0),
                    (p.guidance, 0.5),
                ],
            )
            for p in catalogue.procedures.values()
        ]
    )
