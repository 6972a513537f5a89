"""The contract's identifier rules (CONTRACT.md, "Identifiers").

Identifiers become table and column names, so these checks stand between outside text and
SQL: nothing that fails them may reach a `Table`.
"""
from __future__ import annotations

import re
from typing import Any

# Checked with fullmatch: "$" alone would also accept a trailing newline.
DISTRICT_ID = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
APP_ID = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
STUDENT_ID_MAX = 64


def check_district_id(value: Any) -> str | None:
    """None when `value` is a valid district id, else a message saying what was expected."""
    if not isinstance(value, str) or not DISTRICT_ID.fullmatch(value):
        return f"district id must match {DISTRICT_ID.pattern}; got {value!r}"
    return None


def check_app_id(value: Any) -> str | None:
    """None when `value` is a valid app id, else a message saying what was expected."""
    if not isinstance(value, str) or not APP_ID.fullmatch(value):
        return f"app id must match {APP_ID.pattern}; got {value!r}"
    return None
