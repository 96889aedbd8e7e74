"""The numbers in a generated page's prose, to prove none of them is typed by hand.

Prose is what is neither a table row, a heading nor inside a fenced block (tables and model
output are built from the figures by construction). The proof is a difference: render the
same text from two sets of inputs that differ in every measurement and every constant, and a
number still the same at the same place did not come from them.

    unchanged(render(inputs_a), render(inputs_b))  # -> the suspects, [] when all is derived
"""

from __future__ import annotations

import re

# A number standing alone: "1,390", "0.66", "$25", "76x", "99%"; not the digits of a name
# ("S3", "p50", "C14N", "5xx", "1b") nor an issue reference ("#6").
NUMBER = re.compile(r"(?<![\w.#])\$?\d[\d,]*(?:\.\d+)?(?=x\b|[^\w]|$)")


def prose(markdown: str) -> str:
    """The lines of `markdown` outside tables, headings and fenced blocks."""
    kept: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            continue
        if fenced or stripped.startswith(("|", "#")):
            continue
        kept.append(line)
    return "\n".join(kept)


def numbers(text: str) -> list[str]:
    """Every number of `text`, in order, as written (trailing list commas dropped)."""
    return [match.group(0).lstrip("$").rstrip(",") for match in NUMBER.finditer(text)]


def unchanged(first: str, second: str) -> list[str]:
    """Numbers of the prose of `first` that stand unchanged, at the same place, in `second`.

    Both must come from the same template: a different count of numbers is an error (a
    branch of the text changed with the inputs; the inputs should keep every branch alike).
    """
    a, b = numbers(prose(first)), numbers(prose(second))
    if len(a) != len(b):
        raise ValueError(f"the two texts have {len(a)} and {len(b)} numbers:\n{a}\n{b}")
    return [x for x, y in zip(a, b, strict=True) if x == y]
