"""Which values of the environment are secrets, and text with them masked: no passphrase,
password or token may reach a table, a log line or a message, even when a file quotes it
(a landing file that is a copy of the process's environment, a URL in an error)."""
from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

MASK = "***"
# Names of variables that are secrets in themselves, and the URLs whose password is one.
SECRET_NAME = re.compile(r"(PASSPHRASE|PASSWORD|SECRET|TOKEN|_KEY$)", re.IGNORECASE)
URL_NAMES = ("DATABASE_URL", "TEST_DATABASE_URL", "BENCH_DATABASE_URL", "ANALYTICS_SMTP_URL", "ANALYTICS_WEBHOOK_URL")
SHORTEST = 4  # shorter values would mask ordinary text


def secret_values(environ=None) -> list[str]:
    """The environment's secret values, longest first (so a longer one is masked whole)."""
    environ = os.environ if environ is None else environ
    found = set()
    for name, value in environ.items():
        if not value:
            continue
        if SECRET_NAME.search(name):
            found.add(value)
        if name in URL_NAMES or "://" in value:  # any URL's password: a reporting database's, whatever its variable
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.add(password)
            if name == "ANALYTICS_WEBHOOK_URL":  # its path or query is the token
                found.add(value)
    return sorted((v for v in found if len(v) >= SHORTEST), key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every secret value of the environment replaced by ***."""
    for value in secret_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFormatter:
    """Wraps a logging formatter so that every line it formats has the secrets masked
    (tracebacks included); trigger.py puts it on the root logger's handlers."""

    def __init__(self, inner):
        self.inner = inner

    def format(self, record) -> str:
        render = self.inner.format  # the wrapped formatter's own method
        return redact(render(record))

    def __getattr__(self, name):
        return getattr(self.inner, name)
