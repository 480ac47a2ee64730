"""Final-answer extraction: the content of the last ``\\boxed{...}`` / ``\\fbox{...}``.

MATH golds and model answers are both read this way. Braces are matched by counting, so
nested LaTeX such as ``\\boxed{\\frac{1}{2}}`` comes out whole; an unbalanced box (a
truncated generation) yields ``None`` instead of a half answer. The scan is linear in the
text length, so adversarial inputs (deep nesting, huge strings) cannot make it slow.
"""

from __future__ import annotations

import re

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at ``text[start] == '{'``, or None if unclosed."""
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def has_box(text: str) -> bool:
    """Whether ``text`` contains a ``\\boxed``/``\\fbox`` command at all."""
    return _BOX.search(text) is not None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed``/``\\fbox`` in ``text``; None when there is none.

    Handles ``\\boxed{...}``, ``\\boxed {...}`` and the brace-less ``\\boxed 2$`` that a
    few MATH solutions use (the argument then runs to the next ``$`` or whitespace).
    A last box whose braces never close gives None: the answer was cut off.
    Returns the stripped content, which may be the empty string (``\\boxed{}``).
    """
    matches = list(_BOX.finditer(text))
    if not matches:
        return None
    pos = matches[-1].end()
    rest = text[pos:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        content = _braced(text, pos + len(rest) - len(stripped))
        return None if content is None else content.strip()
    if rest[:1].isspace():
        token = re.match(r"[^\s$]*", stripped).group(0)
        return token or None
    return None
