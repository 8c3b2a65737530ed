"""Vietnamese syllables for the typing-engine tests: parse, spell as keys, place tones.

This is the tests' own, independent model of Vietnamese spelling: it takes a
syllable apart (onset, rhyme, tone), spells it as the keys a person types in
Telex or VNI, and, for generated syllables, writes where the tone mark goes.
The engine under test (edge_agent/ui/static/js/vn-input.js) shares no code
with it.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Method = Literal["telex", "vni"]
Style = Literal["new", "old"]

# Combining marks in NFD: the letter's own mark, then the tone.
CIRCUMFLEX, BREVE, HORN = "\u0302", "\u0306", "\u031b"
TONE_MARKS = ("", "\u0301", "\u0300", "\u0309", "\u0303", "\u0323")  # sắc huyền hỏi ngã nặng
TELEX_TONE = ("", "s", "f", "r", "x", "j")
VNI_TONE = ("", "1", "2", "3", "4", "5")

ONSETS = (
    "", "b", "c", "ch", "d", "đ", "g", "gh", "gi", "h", "k", "kh", "l", "m", "n", "ng",
    "ngh", "nh", "p", "ph", "qu", "r", "s", "t", "th", "tr", "v", "x",
)  # fmt: skip

# Every rhyme (vowels and final) without its tone, as written after a plain onset.
_RHYME_TABLE = """
    a ac ach ai am an ang anh ao ap at au ay
    ă ăc ăm ăn ăng ăp ăt
    â âc âm ân âng âp ât âu ây
    e ec em en eng eo ep et
    ê êch êm ên ênh êp êt êu
    i ia ich im in inh ip it iu iêc iêm iên iêng iêp iêt iêu
    o oc oi om on ong op ot oong ooc
    oa oac oach oai oam oan oang oanh oao oap oat oay oăc oăm oăn oăng oăt
    oe oen oeo oet
    ô ôc ôi ôm ôn ông ôp ôt
    ơ ơi ơm ơn ơp ơt
    u uc ui um un ung up ut ua uân uâng uât uây uê uêch uênh
    uôc uôi uôm uôn uông uôt uơ uy uya uych uyên uyêt uyn uynh uyp uyt uyu
    ư ưa ưc ưi ưm ưn ưng ưt ưu ươc ươi ươm ươn ương ươp ươt ươu
    y yêm yên yêt yêu
"""
RHYMES = frozenset(_RHYME_TABLE.split())
VOWELS = frozenset("aăâeêioôơuưy")
STOP_FINALS = ("c", "ch", "p", "t")


@dataclass(frozen=True)
class Syllable:
    """A lower-case syllable: onset, toneless rhyme, tone 0-5."""

    onset: str
    rhyme: str
    tone: int

    @property
    def plain(self) -> str:
        """The syllable without its tone ("gi" + "iêng" is written "giêng")."""
        rhyme = self.rhyme[1:] if self.onset == "gi" and self.rhyme.startswith("i") else self.rhyme
        return self.onset + rhyme


def split_tone(word: str) -> tuple[str, int]:
    """The word without its tone mark, and the tone (0 when none, -1 when two)."""
    tone = 0
    letters = []
    for ch in unicodedata.normalize("NFD", word):
        if ch in TONE_MARKS[1:]:
            tone = TONE_MARKS.index(ch) if tone == 0 else -1
        else:
            letters.append(ch)
    return unicodedata.normalize("NFC", "".join(letters)), tone


def rhyme_allowed(onset: str, rhyme: str, tone: int) -> bool:
    if rhyme not in RHYMES:
        return False
    if rhyme.endswith(STOP_FINALS) and tone not in (1, 5):
        return False
    if onset == "qu" and rhyme[0] in "uưo":
        return False
    # "gi" + "iêng" is written "giêng"; other rhymes on i take the onset g ("gìn").
    return not (onset == "gi" and rhyme[0] == "i" and not rhyme.startswith("iê"))


def parse(word: str) -> Syllable | None:
    """The syllable `word` spells (lower case, NFC), or None when it is not one."""
    plain, tone = split_tone(word)
    if tone < 0 or not plain:
        return None
    for onset in sorted(ONSETS, key=len, reverse=True):
        if not plain.startswith(onset):
            continue
        rest = plain[len(onset) :]
        if not rest or rest[0] not in VOWELS:
            continue
        if onset == "gi" and rhyme_allowed(onset, "i" + rest, tone):
            return Syllable(onset, "i" + rest, tone)
        if rhyme_allowed(onset, rest, tone):
            return Syllable(onset, rest, tone)
    return None


def tone_position(syl: Syllable, style: Style) -> int:
    """Index, in syl.plain, of the letter that carries the tone."""
    word = syl.plain
    start = len(syl.onset) if syl.onset != "gi" or syl.rhyme[0] != "i" else 1
    if syl.onset == "gi" and syl.rhyme[0] != "i":
        start = 2
    end = start
    while end < len(word) and word[end] in VOWELS:
        end += 1
    vowels = word[start:end]
    if "ươ" in vowels:
        return start + vowels.index("ươ") + 1
    marked = [i for i, v in enumerate(vowels) if v in "ăâêôơư"]
    if marked:
        return start + marked[-1]
    if len(vowels) == 1:
        return start
    if len(vowels) == 3:
        return start + 1
    if end < len(word):
        return start + 1
    if vowels in ("oa", "oe", "uy"):
        return start if style == "old" else start + 1
    return start


def write(syl: Syllable, style: Style) -> str:
    """The syllable as it is written, NFC, with its tone on the right letter."""
    word = syl.plain
    if syl.tone == 0:
        return word
    at = tone_position(syl, style)
    marked = word[at] + TONE_MARKS[syl.tone]
    return unicodedata.normalize("NFC", word[:at] + marked + word[at + 1 :])


def style_of(word: str) -> Style:
    """Which tone style a written syllable uses ("new" when both agree)."""
    syl = parse(word)
    if syl is not None and write(syl, "old") == word and write(syl, "new") != word:
        return "old"
    return "new"


def _letter_keys(ch: str, method: Method) -> str:
    parts = unicodedata.normalize("NFD", ch)
    base, marks = parts[0], parts[1:]
    if ch == "đ":
        return "d9" if method == "vni" else "dd"
    if not marks:
        return base
    mark = marks[0]
    if method == "vni":
        return base + {CIRCUMFLEX: "6", BREVE: "8", HORN: "7"}[mark]
    return base + {CIRCUMFLEX: base, BREVE: "w", HORN: "w"}[mark]


def spell(word: str, method: Method, *, tone_after_vowels: bool = False) -> str:
    """The keys that type `word`: each letter's mark right after it, the tone last.

    With tone_after_vowels the tone key comes right after the vowels instead
    (before the final consonant). A plain vowel doubled ("xoong") is typed
    with the undo: "o", "o" gives "ô", a third "o" gives back "oo".
    """
    plain, tone = split_tone(unicodedata.normalize("NFC", word))
    keys = []
    last_vowel = -1
    for i, ch in enumerate(plain):
        k = _letter_keys(ch, method)
        if method == "telex" and i and ch in "aeo" and plain[i - 1] == ch:
            k = ch + ch
        keys.append(k)
        if ch in VOWELS:
            last_vowel = i
    tone_key = (VNI_TONE if method == "vni" else TELEX_TONE)[tone]
    if tone_after_vowels and last_vowel >= 0:
        keys.insert(last_vowel + 1, tone_key)
        return "".join(keys)
    return "".join(keys) + tone_key


WORD = re.compile(r"[^\W\d_]+")


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _vietnamese(text: str) -> bool:
    """Text with at least one letter only Vietnamese has (a mark or đ)."""
    return any(ch != unicodedata.normalize("NFD", ch)[0] or ch in "đĐ" for ch in text)


def python_strings(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield node.value


def seed_files(root: Path) -> list[Path]:
    """The shared seed documents (../shared/seed/*.txt next to the checkout or above it)."""
    for parent in root.parents:
        seed = parent / "shared" / "seed"
        if seed.is_dir():
            return sorted(seed.glob("*.txt"))
    return []


def corpus_texts(root: Path) -> Iterator[str]:
    """The repository's Vietnamese text: catalogue, the agent's, central's and sync's
    strings, and the shared seed documents when the checkout has them beside it (a CI
    clone elsewhere does not)."""
    catalogue = json.loads((root / "edge_agent/data/catalogue.json").read_text(encoding="utf-8"))
    yield from (s for s in _strings(catalogue) if _vietnamese(s))
    for path in seed_files(root):
        yield path.read_text(encoding="utf-8")
    sources = sorted(
        p for pkg in ("edge_agent", "central", "sync") for p in (root / pkg).rglob("*.py")
    )
    yield from (s for s in python_strings(sources) if _vietnamese(s))


def corpus_words(root: Path) -> tuple[set[str], set[str]]:
    """(distinct syllables, distinct words that are not syllables), lower case NFC."""
    syllables: set[str] = set()
    others: set[str] = set()
    for text in corpus_texts(root):
        for token in WORD.findall(unicodedata.normalize("NFC", text)):
            word = token.lower()
            (syllables if parse(word) is not None else others).add(word)
    return syllables, others
