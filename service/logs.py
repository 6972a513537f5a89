"""Log lines for a terminal and a cron log: trigger.py puts `LogFormatter` on the root
logger's handlers (the only place logging is configured).

One record is one line: its message is made printable (`analytics.printable`: a file name
with a newline, or a student id with an ANSI escape, is written escaped) and its secrets
are masked (`config.secrets`). A traceback that follows a record keeps its lines, each
indented and made printable, so no text of a record can begin a line that reads as a
record of its own.
"""
from __future__ import annotations

import logging

from analytics.printable import printable
from config.secrets import RedactingFormatter, redact

CONTINUATION = "    "  # the start of every line of a record after its first (a traceback)


class LogFormatter(RedactingFormatter):
    """Wraps a logging formatter: the message printable and masked, continuation lines
    indented, the whole masked again (a secret in a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        shown = logging.makeLogRecord(record.__dict__)
        shown.msg, shown.args = printable(redact(record.getMessage())), None
        render = self.inner.format  # the wrapped formatter's own method
        first, newline, rest = render(shown).partition("\n")
        if newline:
            first += "".join(f"\n{CONTINUATION}{printable(line)}" for line in rest.split("\n"))
        return redact(first)
