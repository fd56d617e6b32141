"""Turning what someone asks for into an FTS5 query, and a hit's passage into a snippet around it.

Words are taken as words, whatever they contain: each becomes an FTS5 string ("..."), so `AND`,
`NEAR`, `*`, `-`, column filters or a stray quote in a question are searched for, never obeyed (a
query can't fail on syntax, nor reach outside its chat: the chat's range is a bound parameter beside
it). A "quoted phrase" stays a phrase. The index stems English words, so "decided" finds "decide".

The snippet is cut from the passage the store gives back (the index holds no text): the window of
about `width` characters that holds the most of the query's words, cut at word boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

MAX_TERMS = 12
_PHRASE = re.compile(r'"([^"]*)"')
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


class Query(msgspec.Struct, frozen=True, gc=False):
    """The words of a search: `terms` (a word, or a phrase's words joined by a space), lower case."""

    terms: tuple[str, ...]

    def all_of(self) -> str:
        return " AND ".join(_quoted(term) for term in self.terms)

    def any_of(self) -> str:
        return " OR ".join(_quoted(term) for term in self.terms)

    @property
    def words(self) -> list[str]:
        return [word for term in self.terms for word in term.split()]


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def parse_query(text: str) -> Query | None:
    """The terms of `text` (phrases first, in order), or None when it holds no word at all."""
    terms: list[str] = []
    for phrase in _PHRASE.findall(text):
        words = _WORD.findall(phrase.casefold())
        if words:
            terms.append(" ".join(words))
    for word in _WORD.findall(_PHRASE.sub(" ", text).casefold()):
        if word not in terms:
            terms.append(word)
    return Query(tuple(terms[:MAX_TERMS])) if terms else None


def _stem(word: str) -> str:
    """Enough of a word to find its other forms in the text ("decid" for decided, decides, deciding)."""
    return word if len(word) <= 4 else word[: max(4, len(word) - 3)]


def snippet(text: str, words: Sequence[str], width: int) -> str:
    """About `width` characters of `text` around the most of `words`, on one line, "…" where cut."""
    flat = _SPACE.sub(" ", text).strip()
    if len(flat) <= width:
        return flat
    stems = sorted({_stem(w) for w in words if w}, key=len, reverse=True)
    found: list[tuple[int, str]] = []
    if stems:
        pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(s) for s in stems) + ")", re.IGNORECASE)
        found = [(m.start(), m.group(1).casefold()) for m in pattern.finditer(flat)]
    start = 0
    if found:
        lead = width // 4  # some words before the first match, for context
        best = -1
        for position, _ in found:
            begin = max(0, position - lead)
            covered = {stem for at, stem in found if begin <= at < begin + width}
            if len(covered) > best:
                best, start = len(covered), begin
    end = min(len(flat), start + width)
    start = max(0, end - width)
    if start > 0:
        space = flat.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > end - 20 else end
    return ("…" if start > 0 else "") + flat[start:end].strip() + ("…" if end < len(flat) else "")
