"""Text from outside (test ids, skip reasons, tracebacks, stray runner output, stored
names) made safe to print on a terminal or in a log.

A test id is whatever the runner in the guest says it is: ESC starts a
terminal escape sequence (a window title, a cursor move, a colour that hides
what follows), CR goes back to the start of the line, LF starts a line of its
own (a forged "PASSED: ..." verdict), and some invisible characters reorder
or hide text (bidirectional overrides, zero-width marks). Each such character
is shown as its Python escape (\\x1b, \\r, \\n, \\u202e) instead.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls; the Unicode format characters a terminal or
# a browser acts on invisibly (Arabic letter mark, zero-width marks, line and
# paragraph separators, bidirectional embeddings, overrides and isolates,
# invisible operators, the byte-order mark, interlinear annotations); lone
# surrogates (unprintable, and an encoding error on output).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\ud800-\udfff]"
)

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """`text` on one line: every control or invisible character escaped, LF and TAB too."""
    value = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_escape, value)

