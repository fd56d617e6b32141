"""``filler_text``: deterministic long text for tests and for ``[[len=N]]``.

Its line and paragraph lengths vary so that every branch of a message splitter gets exercised.
"""

from __future__ import annotations

_WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
]  # fmt: skip
# Line lengths and lines per paragraph cycle through these, so a long reply has short lines, long
# lines, single-line and many-line paragraphs: every branch of a message splitter gets exercised.
_LINE_LENGTHS = (72, 18, 133, 47, 260, 9, 95, 410, 61, 1500, 33, 120, 3000, 25)
_LINES_PER_PARAGRAPH = (3, 1, 5, 2, 4, 1, 7)


def filler_text(n: int) -> str:
    """Deterministic text of exactly ``n`` characters in numbered paragraphs (``p1 ...``, ``p2 ...``)
    of varied line lengths; it never starts or ends with whitespace."""
    paragraphs: list[str] = []
    total = 0
    word = line_no = 0
    while total < n:
        lines: list[str] = []
        for _ in range(_LINES_PER_PARAGRAPH[len(paragraphs) % len(_LINES_PER_PARAGRAPH)]):
            target = _LINE_LENGTHS[line_no % len(_LINE_LENGTHS)]
            line_no += 1
            line = f"p{len(paragraphs) + 1}" if not lines else ""
            while len(line) < target:
                w = _WORDS[word % len(_WORDS)]
                word += 1
                line = f"{line} {w}" if line else w
            lines.append(line)
        paragraph = "\n".join(lines)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    text = "\n\n".join(paragraphs)[:n]
    # A reply ending in whitespace is refused by the API when sent back as the final assistant turn.
    if text and text[-1].isspace():
        text = text[:-1] + "."
    return text
