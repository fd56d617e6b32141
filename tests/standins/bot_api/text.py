"""Telegram's clean-up of every message text (tdlib's fix_formatted_text), and UTF-16 lengths.

Control characters become spaces, ``\\r`` goes, blanks are trimmed, entities that may not nest are cut
or dropped. Whatever produced the text (plain text, the HTML parser, explicit entities, a user typing),
the result is what Telegram would store and show, measured in UTF-16 code units as Telegram counts.
"""

from __future__ import annotations

from typing import Any, Final

_SPLITTABLE: Final = frozenset({"bold", "italic", "underline", "strikethrough", "spoiler"})
_BLOCKQUOTES: Final = frozenset({"blockquote", "expandable_blockquote"})
_PRE_LIKE: Final = frozenset({"code", "pre"})
# tdlib's sort order among entities starting at the same place with the same length.
_PRIORITY: Final = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _sort_key(e: dict[str, Any]) -> tuple[int, int, int]:
    return (e["offset"], -e["length"], _PRIORITY.get(e["type"], 50))


def _subtract(segments: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in segments:
        if hi <= a or b <= lo:
            out.append((a, b))
            continue
        if a < lo:
            out.append((a, lo))
        if hi < b:
            out.append((hi, b))
    return out


def _fix_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Applies Telegram's nesting rules.

    Continuous entities (code, pre, links, custom emoji...) can't contain each other, so inner
    ones are dropped; blockquotes can't nest and can't straddle a continuous entity;
    bold/italic/underline/strikethrough/spoiler may nest anywhere except inside code or pre, so
    the parts inside those are cut away, and touching pieces of the same type are merged.
    (Telegram additionally splits formatting at link boundaries; that is not reproduced.)
    """
    ents = sorted((e for e in entities if e["length"] > 0), key=_sort_key)
    splittable = [e for e in ents if e["type"] in _SPLITTABLE]
    quotes = [e for e in ents if e["type"] in _BLOCKQUOTES]
    continuous = [e for e in ents if e["type"] not in _SPLITTABLE and e["type"] not in _BLOCKQUOTES]

    def non_intersecting(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        end = 0
        for e in items:
            if e["offset"] >= end:
                kept.append(e)
                end = e["offset"] + e["length"]
        return kept

    continuous = non_intersecting(continuous)
    quotes = non_intersecting(quotes)
    if quotes:

        def straddles(c: dict[str, Any]) -> bool:
            c0, c1 = c["offset"], c["offset"] + c["length"]
            for q in quotes:
                q0, q1 = q["offset"], q["offset"] + q["length"]
                if c0 < q1 and q0 < c1 and not (q0 <= c0 and c1 <= q1):
                    return True
            return False

        continuous = [c for c in continuous if not straddles(c)]

    pre_ranges = [(e["offset"], e["offset"] + e["length"]) for e in continuous if e["type"] in _PRE_LIKE]
    pieces: dict[str, list[tuple[int, int]]] = {}
    for e in splittable:
        segments = [(e["offset"], e["offset"] + e["length"])]
        for lo, hi in pre_ranges:
            segments = _subtract(segments, lo, hi)
        pieces.setdefault(e["type"], []).extend(segments)
    merged: list[dict[str, Any]] = []
    for etype, segs in pieces.items():
        segs.sort()
        current: list[int] | None = None
        for a, b in segs:
            if current is not None and a <= current[1]:
                current[1] = max(current[1], b)
                continue
            if current is not None:
                merged.append({"type": etype, "offset": current[0], "length": current[1] - current[0]})
            current = [a, b]
        if current is not None:
            merged.append({"type": etype, "offset": current[0], "length": current[1] - current[0]})
    return sorted(continuous + quotes + merged, key=_sort_key)


# Characters tdlib's strip_empty_characters turns into spaces, and ones it considers empty.
_SPACE_LIKE: Final = frozenset(
    "\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202e\u202f\u205f\u2800\u3000\ufffc"
)
_EMPTY_LIKE: Final = frozenset(" \n\u200b\u200c\u200d\u200e\u200f\u202e\ufeff\u00a0")


def _is_empty_text(text: str) -> bool:
    for ch in text:
        if ch in _SPACE_LIKE or ch in _EMPTY_LIKE or 0xE0000 <= ord(ch) <= 0xE01FF:
            continue
        return False
    return True


def finalize_text(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's fix_formatted_text: clean characters, fix nesting, trim blanks.

    Returns ("", []) when nothing visible is left; callers turn that into their own error.
    """
    # 1. Control characters become spaces; \r, U+2028..U+202E and a few combining marks go away.
    chars: list[str] = []
    pos_map: list[int] = []  # old UTF-16 position -> new UTF-16 position
    new16 = 0
    for ch in text:
        o = ord(ch)
        width = 2 if o > 0xFFFF else 1
        pos_map.extend([new16] * width)
        if o == 0x0D or 0x2028 <= o <= 0x202E or o in (0x0333, 0x033F, 0x030A):
            continue
        if o < 0x20 and o != 0x0A:
            ch = " "
        chars.append(ch)
        new16 += width
    pos_map.append(new16)
    moved: list[dict[str, Any]] = []
    for e in entities:
        start, end = e["offset"], e["offset"] + e["length"]
        if start < 0 or end > len(pos_map) - 1 or e["length"] <= 0:
            continue
        ne = dict(e)
        ne["offset"] = pos_map[start]
        ne["length"] = pos_map[end] - pos_map[start]
        if ne["length"] > 0:
            moved.append(ne)
    fixed = _fix_entities(moved)

    # 2. Trim: trailing blanks always, leading blanks up to the first entity.
    cleaned = "".join(chars)
    stripped_right = cleaned.rstrip(" \n")
    if not stripped_right or _is_empty_text(cleaned):
        return "", []
    end16 = utf16_len(stripped_right)
    trimmed: list[dict[str, Any]] = []
    for e in fixed:
        if e["offset"] >= end16:
            continue
        if e["offset"] + e["length"] > end16:
            e = {**e, "length": end16 - e["offset"]}
        trimmed.append(e)
    first_entity = min((e["offset"] for e in trimmed), default=len(stripped_right))
    lead = 0
    while lead < first_entity and stripped_right[lead] in " \n":
        lead += 1
    result = stripped_right[lead:]
    for e in trimmed:
        e["offset"] -= lead
    return result, sorted(trimmed, key=_sort_key)
