"""A progress bar for long work, drawn only when the output is a terminal: cron and
container logs get the plain log lines alone."""
from __future__ import annotations

import sys
from typing import TextIO

from analytics.printable import printable


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stderr
        self.label, self.total, self.width = label, total, width
        self.enabled = total > 1 and getattr(self.stream, "isatty", lambda: False)()

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        filled = round(self.width * done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {printable(note)[:40]:<40}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (len(self.label) + self.width + 60) + "\r")
            self.stream.flush()
