"""What one landing file may hold before it is refused as a whole: each limit a clear
failure of that file alone (the district's other files, and other districts, go on), each
settable from the environment (README, "Reliability"). Memory stays bounded by a chunk
(rows and bytes) whatever the file holds."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

MIB = 1 << 20


class LimitExceeded(Exception):
    """A file went past one of the limits: the file fails with this message."""


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise ValueError(f"{name} must be a whole number; got {text!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1; got {value}")
    return value


@dataclass(frozen=True)
class Limits:
    decompressed_bytes: int = 8 << 30  # a .gz may expand to at most this many bytes
    compression_ratio: int = 200  # ... and to at most this many times its size, past RATIO_FLOOR bytes
    line_bytes: int = 1 * MIB  # one CSV or JSON line
    json_depth: int = 32  # nesting of arrays and objects in one JSON line
    columns: int = 1_000  # a CSV header's fields, a JSON object's keys, a Parquet file's columns
    rows: int = 50_000_000  # rows of one file
    chunk_bytes: int = 64 * MIB  # text held for one chunk, whatever its row count
    raw_chars: int = 4_096  # characters of a rejected row kept in rejected_rows.raw

    RATIO_FLOOR = 64 * MIB  # a small file may expand more than the ratio: a day of repeated rows does

    @classmethod
    def from_environment(cls) -> Limits:
        return cls(
            decompressed_bytes=_env_int("ANALYTICS_MAX_DECOMPRESSED_BYTES", cls.decompressed_bytes),
            compression_ratio=_env_int("ANALYTICS_MAX_COMPRESSION_RATIO", cls.compression_ratio),
            line_bytes=_env_int("ANALYTICS_MAX_LINE_BYTES", cls.line_bytes),
            json_depth=_env_int("ANALYTICS_MAX_JSON_DEPTH", cls.json_depth),
            columns=_env_int("ANALYTICS_MAX_COLUMNS", cls.columns),
            rows=_env_int("ANALYTICS_MAX_ROWS", cls.rows),
            chunk_bytes=_env_int("ANALYTICS_MAX_CHUNK_BYTES", cls.chunk_bytes),
            raw_chars=_env_int("ANALYTICS_MAX_RAW_CHARS", cls.raw_chars),
        )


_CUT = re.compile(r"\.\.\. \[cut: ([\d,]+) characters in all\]$")


def bounded_raw(text: str, limit: int) -> str:
    """A rejected row's text as stored: at most `limit` characters, marked when cut (a text
    cut before, by a reader, keeps the length it had in all)."""
    if len(text) <= limit:
        return text
    before = _CUT.search(text)
    return f"{text[:limit]}... [cut: {before.group(1) if before else f'{len(text):,}'} characters in all]"


def json_depth(line: str, limit: int) -> int:
    """The deepest nesting of arrays and objects in a JSON text, counting only brackets
    outside strings; stops counting once past `limit` (linear in the line)."""
    if line.count("[") + line.count("{") <= limit:
        return 0  # cannot be deeper than its brackets
    depth = deepest = 0
    in_string = escaped = False
    for char in line:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest
