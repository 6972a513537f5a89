"""Outside text shown to people: on a terminal, in a log line, in a spreadsheet.

Student ids, file names and the values quoted in reasons come from landing files and stay
verbatim in the tables; these functions neutralise them only where they are shown.
`printable` writes every character that would act on a terminal or a log (C0 controls such
as ESC, CR, LF and TAB; DEL; C1 controls; the line and paragraph separators; the
bidirectional controls; lone surrogates, which undecodable bytes become) as a Python-style
escape, `\\x1b`, `\\n`, `\\u202e`, so one value is one line and colours or cursor moves
never reach the screen. `spreadsheet_cell` adds a leading apostrophe to a text cell that a
spreadsheet would take for a formula (OWASP's CSV injection guidance: a first character
`=`, `+`, `-`, `@`, TAB or CR), then makes it printable.
"""
from __future__ import annotations

import re
from typing import Any

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                          "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match) -> str:
    ch = match[0]
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: Any) -> str:
    """`text` (made text with str) with every control character escaped, e.g.
    'a\\x1b[31mb\\nc' -> 'a\\\\x1b[31mb\\\\nc': one line, inert on a terminal."""
    text = text if isinstance(text, str) else str(text)
    return _UNPRINTABLE.sub(_escape, text)


def spreadsheet_cell(value: Any) -> Any:
    """A cell for a CSV download: text that starts like a formula gets a leading apostrophe,
    so a spreadsheet shows it instead of running it; text is made printable; other values
    (numbers, missing) are returned as they are."""
    if not isinstance(value, str):
        return value
    return printable("'" + value if value.startswith(FORMULA_STARTS) else value)
