"""The landing folder: which files a district has, what kind and format each is, and
reading a file as chunks of text cells with line numbers.

Readers hash the bytes as they read them, so the ingest job can tell that a file changed
between the moment it was fingerprinted and the moment it was parsed.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analytics.landing_rows import KINDS, HeaderError, Kind, check_header

log = logging.getLogger(__name__)

# Longest first, so "x.csv.gz" is gz-compressed CSV and not an unknown ".gz".
FORMATS = (".csv.gz", ".csv")
CHUNK_ROWS = 100_000
_HASH_BLOCK = 1 << 20


class FileUnreadable(Exception):
    """The whole file cannot be read (no header, bad header, truncated archive, ...)."""


@dataclass(frozen=True)
class LandingFile:
    path: Path  # on disk
    relpath: str  # relative to LANDING_DIR, '/'-separated: what the manifest records
    district_id: str
    school: str | None  # the first folder under the district's folder
    kind: str | None  # None: the name does not start with a known kind
    format: str | None  # None: the ending is not a known format
    bytes: int
    modified_at: datetime

    @property
    def problem(self) -> str | None:
        if self.kind is None:
            return f"file name must start with one of {', '.join(KINDS)}"
        if self.format is None:
            return f"file name must end with one of {', '.join(FORMATS)}"
        return None


def classify(name: str) -> tuple[str | None, str | None]:
    """(kind, format) from a file name: kind from its start, format from its ending."""
    lower = name.lower()
    kind = next((k for k in sorted(KINDS, key=len, reverse=True) if lower.startswith(k)), None)
    fmt = next((f for f in FORMATS if lower.endswith(f)), None)
    return kind, fmt


def discover(landing_dir: Path, district_id: str) -> list[LandingFile]:
    """Every regular file under LANDING_DIR/<district_id>/, oldest first (then by path).

    Hidden files and folders (a sync tool's partial downloads) are left alone.
    """
    root = Path(landing_dir) / district_id
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed while we looked
                continue
            if not path.is_file():
                continue
            parts = path.relative_to(root).parts
            kind, fmt = classify(name)
            found.append(LandingFile(
                path=path,
                relpath="/".join((district_id, *parts)),
                district_id=district_id,
                school=parts[0] if len(parts) > 1 else None,
                kind=kind,
                format=fmt,
                bytes=stat.st_size,
                modified_at=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
            ))
    return sorted(found, key=lambda f: (f.modified_at, f.relpath))


def fingerprint(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of the file as it is now."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class HashingReader(io.RawIOBase):
    """A binary stream that hashes every byte read through it and stops after `limit` bytes,
    so a file that a sync is still appending to is read only as far as it was fingerprinted."""

    def __init__(self, raw, limit: int):
        self._raw = raw
        self._left = limit
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)[: self._left]
        count = self._raw.readinto(view) if len(view) else 0
        if count:
            self.digest.update(view[:count])
            self._left -= count
        return count

    def drain(self) -> str:
        """Read up to the limit (hashing) and return the hex digest of everything read."""
        while self.readinto(bytearray(min(_HASH_BLOCK, self._left) or 1)):
            pass
        return self.digest.hexdigest()


@dataclass
class Chunk:
    cells: pd.DataFrame  # object-dtype text cells per header column, plus line and raw
    malformed: pd.DataFrame  # line, reason, raw: rows whose field count is wrong


def _text_stream(binary: io.RawIOBase, fmt: str) -> io.TextIOBase:
    """Decoded text of a CSV-family file; undecodable bytes become lone surrogates."""
    stream = io.BufferedReader(binary, _HASH_BLOCK)
    if fmt == ".csv.gz":
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _csv_chunks(text: io.TextIOBase, kind: Kind, chunk_rows: int, notes: list[str]) -> Iterator[Chunk]:
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        raise FileUnreadable("the file is empty: a header row is required")
    names, extra = check_header(kind, header)
    if extra:
        notes.append(f"extra columns ignored: {', '.join(extra)}")
    width = len(names)
    while True:
        rows: list[list[str]] = []
        lines: list[int] = []
        bad: list[tuple[int, str, str]] = []
        for row in reader:
            if not row:  # a blank line
                continue
            if len(row) != width:
                bad.append((reader.line_num, f"expected {width} fields, got {len(row)}", ",".join(row)))
            else:
                rows.append(row)
                lines.append(reader.line_num)
            if len(rows) + len(bad) >= chunk_rows:
                break
        if not rows and not bad:
            return
        columns = list(zip(*rows)) if rows else [()] * width
        cells = pd.DataFrame({name: pd.Series(col, dtype=object) for name, col in zip(names, columns)})
        cells["line"] = pd.Series(lines, dtype="Int64")
        cells["raw"] = pd.Series([",".join(r) for r in rows], dtype=object)
        malformed = pd.DataFrame(bad, columns=["line", "reason", "raw"]).astype({"line": "Int64"})
        yield Chunk(cells=cells, malformed=malformed)


class FileReader:
    """Reads one landing file as chunks of text cells; use as a context manager.

    Iterating `chunks()` parses the first `size` bytes (the fingerprinted ones) and raises
    FileUnreadable when the whole file cannot be read. `notes` collects remarks (extra
    columns). After iterating, `unchanged(sha)` tells whether the file stayed as fingerprinted.
    """

    def __init__(self, file: LandingFile, size: int, chunk_rows: int = CHUNK_ROWS):
        self.file = file
        self.size = size
        self.kind = KINDS[file.kind]
        self.chunk_rows = chunk_rows
        self.notes: list[str] = []

    def __enter__(self) -> FileReader:
        self._handle = open(self.file.path, "rb", buffering=0)
        self._hasher = HashingReader(self._handle, self.size)
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.close()

    def chunks(self) -> Iterator[Chunk]:
        try:
            text = _text_stream(self._hasher, self.file.format)
            yield from _csv_chunks(text, self.kind, self.chunk_rows, self.notes)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise FileUnreadable(f"the compressed file is truncated or corrupt ({exc})") from None
        except csv.Error as exc:
            raise FileUnreadable(f"not valid CSV: {exc}") from None
        except HeaderError as exc:
            raise FileUnreadable(str(exc)) from None

    def unchanged(self, sha: str) -> bool:
        """Whether the bytes read are the fingerprinted ones and the file has not grown since."""
        return self._hasher.drain() == sha and os.fstat(self._handle.fileno()).st_size == self.size
