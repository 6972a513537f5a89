"""The landing folder: which files a district has, what kind and format each is, and
reading a file as chunks of text cells with line numbers.

Every format is read in chunks of at most CHUNK_ROWS rows, so memory follows the chunk
size, not the file. Streams are read only as far as the file was fingerprinted, and the
fingerprint is taken again afterwards, so a file that changed while it was read is caught.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import os
import stat
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from analytics.landing_rows import KINDS, NUL_SHOWN, HeaderError, Kind, check_header
from readers.decrypt import DecryptionError, decrypted
from readers.limits import Limits, LimitExceeded, bounded_raw, json_depth

log = logging.getLogger(__name__)

# Longest first, so "x.csv.gz" is gz-compressed CSV and not an unknown ".gz". Each may
# also carry a further ".gpg" ending: OpenPGP-encrypted.
FORMATS = (".csv.gz", ".csv", ".parquet", ".jsonl")
ENCRYPTED = ".gpg"
CHUNK_ROWS = 100_000
_HASH_BLOCK = 1 << 20


class FileUnreadable(Exception):
    """The whole file cannot be read (no header, bad header, truncated archive, ...)."""


class NeedsExactReader(Exception):
    """The fast CSV reader met something only the exact reader reads as specified (a row
    with the wrong number of fields, a blank or multi-line row, bytes that are not UTF-8,
    a NUL, an unusual header): the caller rolls back what it wrote and reads the file again
    with `fast=False`."""


@dataclass(frozen=True)
class LandingFile:
    path: Path  # on disk
    relpath: str  # relative to LANDING_DIR, '/'-separated: what the manifest records
    district_id: str
    school: str | None  # the first folder under the district's folder
    kind: str | None  # None: the name does not start with a known kind
    format: str | None  # ".csv", ".csv.gz", ".parquet" or ".jsonl"; None: not a known ending
    encrypted: bool  # a further ".gpg" ending
    bytes: int
    modified_at: datetime
    refused: str | None = None  # why discovery will not read it (a link out of the folder, a FIFO...)
    source: str | None = None  # None: one of our landing files; else a school-server file (readers/clix.py)

    @property
    def ending(self) -> str | None:
        """The format as the manifest records it, e.g. ".parquet.gpg"."""
        return None if self.format is None else self.format + (ENCRYPTED if self.encrypted else "")

    @property
    def problem(self) -> str | None:
        if self.refused:
            return self.refused
        if self.source is not None:
            return None
        if self.kind is None:
            return f"file name must start with one of {', '.join(KINDS)}"
        if self.format is None:
            return f"file name must end with one of {', '.join(FORMATS)}, each optionally followed by {ENCRYPTED}"
        return None


def classify(name: str) -> tuple[str | None, str | None, bool]:
    """(kind, format, encrypted) from a file name: kind from its start, format from its ending."""
    lower = name.lower()
    kind = next((k for k in sorted(KINDS, key=len, reverse=True) if lower.startswith(k)), None)
    encrypted = lower.endswith(ENCRYPTED)
    if encrypted:
        lower = lower.removesuffix(ENCRYPTED)
    fmt = next((f for f in FORMATS if lower.endswith(f)), None)
    return kind, fmt, encrypted


def discover(landing_dir: Path, district_id: str, enter=None) -> list[LandingFile]:
    """Every regular file under LANDING_DIR/<district_id>/, oldest first (then by path).

    Hidden files and folders (a sync tool's partial downloads) are left alone. Discovery
    never leaves the district's folder: a symbolic link is read only when it resolves to a
    regular file inside that same folder; a link out of it (to /etc, to the process's
    environment, to another district's folder), a link to a folder, a mount point, a FIFO,
    socket or device is listed with `refused` set, and is never opened. `enter(parts)`, when
    given, says whether to enter the folder at those path parts (under the district's folder).
    """
    root = Path(landing_dir) / district_id
    if not root.is_dir():
        return []
    inside = root.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: linked folders are not entered
        here = Path(dirpath)
        entered = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            folder = here / name
            if folder.is_symlink():
                found.append(_refused(root, district_id, folder, "a symbolic link to a folder: not followed "
                                                                 "(sync the folder itself into the district's folder)"))
            elif os.path.ismount(folder):
                found.append(_refused(root, district_id, folder, "a mount point: not entered"))
            elif enter is None or enter(folder.relative_to(root).parts):
                entered.append(name)
        dirnames[:] = entered
        for name in filenames:
            if name.startswith("."):
                continue
            path = here / name
            try:
                status = path.lstat()
            except FileNotFoundError:  # removed while we looked
                continue
            read_from = path
            if stat.S_ISLNK(status.st_mode):
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    found.append(_refused(root, district_id, path, "a symbolic link whose target does not exist"))
                    continue
                if not target.is_relative_to(inside):
                    found.append(_refused(root, district_id, path, "a symbolic link to a file outside the "
                                                                   "district's folder: not followed"))
                    continue
                status, read_from = target.stat(), target
            if not stat.S_ISREG(status.st_mode):
                found.append(_refused(root, district_id, path, "not a regular file (a FIFO, socket or device): "
                                                               "not read"))
                continue
            parts = path.relative_to(root).parts
            kind, fmt, encrypted = classify(name)
            found.append(LandingFile(
                path=read_from,
                relpath="/".join((district_id, *parts)),
                district_id=district_id,
                school=parts[0] if len(parts) > 1 else None,
                kind=kind,
                format=fmt,
                encrypted=encrypted,
                bytes=status.st_size,
                modified_at=datetime.fromtimestamp(status.st_mtime, tz=timezone.utc),
            ))
    return sorted(found, key=lambda f: (f.modified_at, f.relpath))


def _refused(root: Path, district_id: str, path: Path, why: str) -> LandingFile:
    """An entry discovery lists but never opens: its own (lstat) size and time, no kind."""
    parts = path.relative_to(root).parts
    try:
        status = path.lstat()
        size, mtime = status.st_size, status.st_mtime
    except OSError:
        size, mtime = 0, 0.0
    log.warning("%s: %s: %s", district_id, "/".join(parts), why)
    return LandingFile(path=path, relpath="/".join((district_id, *parts)), district_id=district_id,
                       school=parts[0] if len(parts) > 1 else None, kind=None, format=None, encrypted=False,
                       bytes=size, modified_at=datetime.fromtimestamp(mtime, tz=timezone.utc), refused=why)


def open_regular(path: Path):
    """The file for reading, refusing to follow a symbolic link put in its place since
    discovery (O_NOFOLLOW) and anything but a regular file."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        os.set_blocking(descriptor, True)
        return open(descriptor, "rb", buffering=0, closefd=True)
    except BaseException:
        os.close(descriptor)
        raise


def fingerprint(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of the file as it is now."""
    digest = hashlib.sha256()
    size = 0
    with open_regular(path) as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class BoundedReader(io.RawIOBase):
    """A binary stream that ends after `limit` bytes, so a file that a sync is still
    appending to is read only as far as it was fingerprinted."""

    def __init__(self, raw, limit: int):
        self._raw = raw
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)[: self._left]
        count = self._raw.readinto(view) if len(view) else 0
        self._left -= count or 0
        return count


@dataclass
class Chunk:
    cells: pd.DataFrame  # object-dtype text cells per header column, plus line and raw
    malformed: pd.DataFrame  # line, reason, raw: rows whose field count is wrong


class _Expansion(io.RawIOBase):
    """A decompressed stream that refuses to grow past the limits: a small `.gz` that would
    expand to gigabytes (a bomb) fails once it passes them, having held one block."""

    def __init__(self, raw, compressed: int, limits: Limits):
        self._raw = raw
        self.out = 0
        by_ratio = max(Limits.RATIO_FLOOR, limits.compression_ratio * max(compressed, 1))
        if limits.decompressed_bytes <= by_ratio:
            self.cap, self.why = limits.decompressed_bytes, "ANALYTICS_MAX_DECOMPRESSED_BYTES"
        else:
            self.cap, self.why = by_ratio, (f"{limits.compression_ratio} times its {compressed:,} bytes: "
                                            "ANALYTICS_MAX_COMPRESSION_RATIO")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._raw.readinto(buffer) or 0
        self.out += count
        if self.out > self.cap:
            raise LimitExceeded(f"the compressed file expands to more than {self.cap:,} bytes ({self.why}); "
                                "not read further")
        return count


def _decompressed(stream, fmt: str, compressed: int, limits: Limits):
    if fmt != ".csv.gz":
        return stream
    return io.BufferedReader(_Expansion(gzip.GzipFile(fileobj=stream, mode="rb"), compressed, limits), _HASH_BLOCK)


def _text_stream(binary: io.RawIOBase, fmt: str, compressed: int, limits: Limits) -> io.TextIOBase:
    """Decoded text of a CSV or JSON-lines file; undecodable bytes become lone surrogates."""
    stream = _decompressed(io.BufferedReader(binary, _HASH_BLOCK), fmt, compressed, limits)
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _bounded_lines(text: io.TextIOBase, limit: int) -> Iterator[str]:
    """The text's lines, each read with a bound: a line longer than `limit` characters (a
    2 GB line, a file without line ends) fails the file having held `limit` of it."""
    number = 0
    while True:
        line = text.readline(limit + 2)
        if not line:
            return
        number += 1
        if len(line.rstrip("\r\n")) > limit:
            raise LimitExceeded(f"line {number:,} is longer than {limit:,} characters (ANALYTICS_MAX_LINE_BYTES)")
        yield line


def _check_width(count: int, limits: Limits, what: str = "the header has") -> None:
    if count > limits.columns:
        raise LimitExceeded(f"{what} {count:,} columns; at most {limits.columns:,} are read (ANALYTICS_MAX_COLUMNS)")


def _chunk(names: list[str], columns: list, lines: list[int], raws: list[str], bad: list[tuple]) -> Chunk:
    cells = pd.DataFrame({name: pd.Series(col, dtype=object) for name, col in zip(names, columns)})
    cells["line"] = pd.Series(lines, dtype="Int64")
    cells["raw"] = pd.Series(raws, dtype=object)
    if not bad:  # the usual chunk: no frame to build
        return Chunk(cells=cells, malformed=_NO_MALFORMED)
    malformed = pd.DataFrame(
        {"line": pd.Series([b[0] for b in bad], dtype="Int64"),
         "reason": pd.Series([b[1] for b in bad], dtype=object),
         "raw": pd.Series([_storable(bounded_raw(b[2], _RAW_CHARS)) for b in bad], dtype=object)}
    )
    return Chunk(cells=cells, malformed=malformed)


_RAW_CHARS = 1 << 16  # a malformed row's text is cut here already (ingest cuts it to ANALYTICS_MAX_RAW_CHARS)

_NO_MALFORMED = pd.DataFrame({"line": pd.Series([], dtype="Int64"), "reason": pd.Series([], dtype=object),
                              "raw": pd.Series([], dtype=object)})


def _storable(text: str) -> str:
    """Text any database can store: undecodable bytes shown as U+FFFD, NUL as \\x00."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", NUL_SHOWN)


_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def check_csv_header(kind: Kind, header: list[str]) -> tuple[list[str], list[str]]:
    """check_header for a CSV header row; a header that fails as one field but would hold the
    kind's columns split on ';', a tab or '|' says that the file looks delimited so (such a file
    still fails: landing CSV is comma-separated). Both CSV readers use it, so they agree."""
    try:
        return check_header(kind, header)
    except HeaderError:
        if len(header) == 1:
            for delimiter, name in _OTHER_DELIMITERS.items():
                names = [n.strip().strip('"').strip().lower() for n in header[0].split(delimiter)]
                if len(names) > 1 and set(names) & set(kind.columns):
                    missing = [c for c in kind.required if c not in names]
                    raise HeaderError(
                        f"header has {header[0].strip()!r}: it looks {name}-delimited; the files must be "
                        "comma-separated CSV (export with ',' as the delimiter)"
                        + (f"; split on {delimiter!r} it would still lack {', '.join(missing)}" if missing else "")
                    ) from None
        raise


class _Remembered:
    """Lines handed to csv.reader, the last one kept: the text of a row it refuses."""

    def __init__(self, lines: Iterator[str]):
        self._lines = lines
        self.last = ""

    def __iter__(self):
        return self

    def __next__(self) -> str:
        self.last = next(self._lines)
        return self.last


def _rows(reader, source: _Remembered, bad: list[tuple[int, str, str]]) -> Iterator[list[str]]:
    """csv.reader's rows; a row with a field past the CSV field limit (a 200,000-character
    student id) goes to `bad` with its line and the limit, and the rows after it are read."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field larger than field limit" not in str(exc):
                raise
            limit = csv.field_size_limit()
            bad.append((reader.line_num, f"line {reader.line_num:,} has a field longer than {limit:,} characters "
                                         "(the CSV field limit): the row is not read", source.last.rstrip("\r\n")))
            yield None  # a row refused: counts toward the chunk


def _csv_chunks(text: io.TextIOBase, kind: Kind, chunk_rows: int, notes: list[str],
                limits: Limits = Limits()) -> Iterator[Chunk]:
    source = _Remembered(_bounded_lines(text, limits.line_bytes))
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None:
        raise FileUnreadable("the file is empty: a header row is required")
    _check_width(len(header), limits)
    names, extra = check_csv_header(kind, header)
    if extra:
        notes.append(f"extra columns ignored: {', '.join(extra)}")
    width = len(names)
    bad: list[tuple[int, str, str]] = []
    rows_of = _rows(reader, source, bad)
    while True:
        rows: list[list[str]] = []
        lines: list[int] = []
        bad.clear()
        held = 0  # characters in this chunk: a chunk ends at chunk_rows rows or chunk_bytes of text
        for row in rows_of:
            if row is None:  # refused by csv.reader (in `bad` already)
                held += len(source.last)
            elif not row:  # a blank line
                continue
            elif len(row) != width:
                bad.append((reader.line_num, f"expected {width} fields, got {len(row)}", ",".join(row)))
            else:
                rows.append(row)
                lines.append(reader.line_num)
            held += sum(map(len, row or ()))
            if len(rows) + len(bad) >= chunk_rows or held >= limits.chunk_bytes:
                break
        if not rows and not bad:
            return
        columns = list(zip(*rows)) if rows else [()] * width
        yield _chunk(names, columns, lines, [",".join(r) for r in rows], list(bad))


class _Counting(io.RawIOBase):
    """A binary stream that counts the line ends and NULs it hands over."""

    def __init__(self, raw):
        self._raw = raw
        self.newlines = 0
        self.lone_cr = 0  # \r not followed by \n: a line end to Python (counted once its next byte is seen)
        self.size = 0
        self.nul = False
        self.last = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._raw.readinto(buffer) or 0
        if count:
            data = memoryview(buffer)[:count].tobytes()
            self.newlines += data.count(b"\n")
            pairs = data.count(b"\r\n") + (self.last == b"\r" and data[:1] == b"\n")
            self.lone_cr += data.count(b"\r") - pairs
            self.nul = self.nul or b"\x00" in data
            self.size += count
            self.last = data[-1:]
        return count


_ARROW_BLOCK = 8 << 20  # bytes of CSV per Arrow batch (about 300k usage rows)


def _arrow_csv_chunks(binary: io.RawIOBase, fmt: str, kind: Kind, notes: list[str], compressed: int = 0,
                      limits: Limits = Limits()) -> Iterator[Chunk]:
    """CSV read by Arrow's multi-threaded parser: the common, well-formed file, fast.

    It reads exactly what `_csv_chunks` reads, or raises NeedsExactReader: every row must
    have the header's number of fields and be valid UTF-8 without NUL, and the file must
    have one line per row (no blank lines, no line ends inside quotes), which is checked
    at the end by counting line ends, so that a row's line number is its position.
    """
    stream = _decompressed(io.BufferedReader(binary, _HASH_BLOCK), fmt, compressed, limits)
    counted = _Counting(stream)
    buffered = io.BufferedReader(counted, _HASH_BLOCK)
    try:
        first = buffered.peek(_HASH_BLOCK)
    except (OSError, EOFError, zlib.error) as exc:  # a corrupt archive: the exact reader says how
        raise NeedsExactReader(str(exc)) from None
    if b"\n" not in first:
        raise NeedsExactReader("no complete header line in the first block")
    try:
        header_line = first[: first.index(b"\n")].decode("utf-8-sig")
        if "\r" in header_line.rstrip("\r"):
            raise NeedsExactReader("a carriage return inside the header")
        # A quoted header (pyarrow's and many exporters' default) reads as the exact reader
        # reads it, as long as its first line is the whole header: strict parsing refuses an
        # unclosed quote (a line end inside a quoted name) and text after a closing quote.
        header = next(csv.reader([header_line.rstrip("\r")], strict=True))
        _check_width(len(header), limits)
        names, extra = check_csv_header(kind, header)
    except (UnicodeDecodeError, HeaderError, csv.Error) as exc:
        raise NeedsExactReader(str(exc)) from None
    if {"line", "raw"} & set(names):  # names the exact reader's chunks use for themselves
        raise NeedsExactReader("a column named line or raw")
    placeholders = [f"f{i}" for i in range(len(names))]
    try:
        reader = pacsv.open_csv(
            buffered,
            read_options=pacsv.ReadOptions(column_names=placeholders, skip_rows=1, block_size=_ARROW_BLOCK),
            convert_options=pacsv.ConvertOptions(
                column_types={p: pa.string() for p in placeholders},
                strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise NeedsExactReader(str(exc)) from None
    if extra:
        notes.append(f"extra columns ignored: {', '.join(extra)}")
    rows = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
            raise NeedsExactReader(str(exc)) from None
        if counted.nul:  # hand over now, not after reading the rest: one bad byte costs no more than its block
            raise NeedsExactReader("NUL bytes")
        longest = max((pc.max(pc.utf8_length(column)).as_py() or 0) for column in batch.columns)
        if longest > csv.field_size_limit():  # the exact reader refuses such a file
            raise NeedsExactReader(f"a cell of {longest} characters")
        # Handed on CHUNK_ROWS rows at a time (a batch is about 300k usage rows): the writer
        # starts on the first rows sooner, and what is derived from a chunk stays small.
        for first in range(0, batch.num_rows, CHUNK_ROWS):
            part = batch.slice(first, CHUNK_ROWS)
            cells = pd.DataFrame({
                name: pd.Series(pd.arrays.ArrowStringArray(part.column(i)), copy=False)
                for i, name in enumerate(names)
            })
            cells["line"] = pd.array(range(rows + 2, rows + 2 + part.num_rows), dtype="Int64")
            rows += part.num_rows
            yield Chunk(cells=cells, malformed=_NO_MALFORMED)
    lines = counted.newlines + (1 if counted.size and counted.last != b"\n" else 0)
    if counted.nul or counted.lone_cr or lines != rows + 1:
        raise NeedsExactReader(f"{lines} lines for {rows} rows and a header" + (", NUL bytes" if counted.nul else ""))


def _json_text(value) -> str:
    """A JSON value as the text a CSV cell would hold ("" for null)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(value)  # never valid where a number, a day or an id is expected
    return repr(value)


def _jsonl_chunks(text: io.TextIOBase, kind: Kind, chunk_rows: int, notes: list[str],
                  limits: Limits = Limits()) -> Iterator[Chunk]:
    """One JSON object a line; field names are matched like CSV headers."""
    checked = False
    extra: set[str] = set()
    number = 0
    lines_of_text = _bounded_lines(text, limits.line_bytes)
    while True:
        objects: list[dict] = []
        lines: list[int] = []
        raws: list[str] = []
        bad: list[tuple[int, str, str]] = []
        held = 0
        for line in lines_of_text:
            number += 1
            raw = line.rstrip("\r\n")
            if not raw.strip():
                continue
            if json_depth(raw, limits.json_depth) > limits.json_depth:
                raise LimitExceeded(f"line {number:,} nests arrays or objects more than {limits.json_depth} deep "
                                    "(ANALYTICS_MAX_JSON_DEPTH)")
            try:
                value = json.loads(raw)
            except ValueError as exc:
                bad.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})", raw))
                continue
            except RecursionError:
                raise LimitExceeded(f"line {number:,} nests too deep to parse (ANALYTICS_MAX_JSON_DEPTH)") from None
            if not isinstance(value, dict):
                bad.append((number, f"expected a JSON object, got {type(value).__name__}", raw))
                continue
            _check_width(len(value), limits, f"line {number:,} is an object of")
            held += len(raw)
            objects.append({str(k).strip().lower(): v for k, v in value.items()})
            lines.append(number)
            raws.append(raw)
            if len(objects) + len(bad) >= chunk_rows or held >= limits.chunk_bytes:
                break
        if not objects and not bad:
            if number == 0:
                raise FileUnreadable("the file is empty: one JSON object a line is required")
            break
        if objects and not checked:  # the first rows stand for the file's fields, as a header does
            seen = sorted({k for o in objects for k in o})
            check_header(kind, seen)
            checked = True
        extra |= {k for o in objects for k in o} - set(kind.columns)
        names = [*kind.required, *(c for c in kind.optional if any(c in o for o in objects))]
        columns = [[_json_text(o.get(c)) for o in objects] for c in names]
        yield _chunk(names, columns, lines, raws, bad)
    if extra:
        notes.append(f"extra fields ignored: {', '.join(sorted(extra))}")


def _arrow_text(array: pa.Array) -> list:
    """A Parquet column as text cells: days as YYYY-MM-DD, numbers as written, null as ""."""
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        array = pc.strftime(array, format="%Y-%m-%d")
    elif not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    return ["" if v is None else v for v in array.to_pylist()]


def _parquet_chunks(path: Path, kind: Kind, chunk_rows: int, notes: list[str],
                    limits: Limits = Limits()) -> Iterator[Chunk]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise FileUnreadable(f"not a readable Parquet file ({exc})") from None
    _check_width(parquet.metadata.num_columns, limits, "the file has")  # before any per-column work
    original = parquet.schema_arrow.names
    names, extra = check_header(kind, original)
    if extra:
        notes.append(f"extra columns ignored: {', '.join(extra)}")
    wanted = [(o, n) for o, n in zip(original, names) if n in kind.columns]
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=[o for o, _ in wanted]):
            columns = [_arrow_text(batch.column(o)) for o, _ in wanted]
            lines = list(range(row + 1, row + batch.num_rows + 1))
            raws = [",".join(values) for values in zip(*columns)] if columns else []
            row += batch.num_rows
            yield _chunk([n for _, n in wanted], columns, lines, raws, [])
    except (pa.ArrowException, OSError) as exc:
        raise FileUnreadable(f"the Parquet file is corrupt ({exc})") from None


class FileReader:
    """Reads one landing file as chunks of text cells; use as a context manager.

    Iterating `chunks()` parses the first `size` bytes (the fingerprinted ones) and raises
    FileUnreadable when the whole file cannot be read. `notes` collects remarks (extra
    columns). After iterating, `unchanged(sha)` tells whether the file stayed as it was.
    Line numbers: CSV, the file's line; JSON lines, the line; Parquet, the row (from 1).

    With `fast=True`, CSV is parsed by Arrow (several times faster than Python's csv module)
    when the file is well-formed; otherwise NeedsExactReader is raised, possibly after some
    chunks, and the caller reads the file again without `fast`.
    """

    def __init__(self, file: LandingFile, size: int, chunk_rows: int = CHUNK_ROWS, *, fast: bool = False,
                 limits: Limits | None = None, senders: tuple[str, ...] = ()):
        self.file = file
        self.senders = senders  # a .gpg file must be signed by one of these fingerprints (none: unsigned is fine)
        self.limits = limits or Limits.from_environment()
        self.fast = fast and file.source is None and file.format in (".csv", ".csv.gz")
        self.size = size
        self.kind = KINDS[file.kind]
        self.custom = None  # (file, path, limit, limits) -> chunks: a school-server file's own reader
        self.chunk_rows = chunk_rows
        self.notes: list[str] = []
        self.columns: set[str] = set()  # the kind's columns this file has (after reading)
        self._stack = ExitStack()

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()  # closes the file and removes any plaintext, whatever happened

    def chunks(self) -> Iterator[Chunk]:
        try:
            path, limit = self.file.path, self.size
            if self.file.encrypted:
                path = self._stack.enter_context(decrypted(path, self.senders))
                limit = path.stat().st_size
            if self.custom is not None:
                chunks = self.custom(self.file, path, limit, self.limits)
            elif self.file.format == ".parquet":
                chunks = _parquet_chunks(path, self.kind, self.chunk_rows, self.notes, self.limits)
            else:
                handle = self._stack.enter_context(open_regular(path) if not self.file.encrypted
                                                   else open(path, "rb", buffering=0))
                if self.fast:
                    chunks = _arrow_csv_chunks(BoundedReader(handle, limit), self.file.format, self.kind, self.notes,
                                               limit, self.limits)
                else:
                    text = _text_stream(BoundedReader(handle, limit), self.file.format, limit, self.limits)
                    read = _jsonl_chunks if self.file.format == ".jsonl" else _csv_chunks
                    chunks = read(text, self.kind, self.chunk_rows, self.notes, self.limits)
            rows = 0
            for chunk in chunks:
                rows += len(chunk.cells) + len(chunk.malformed)
                if rows > self.limits.rows:
                    raise LimitExceeded(f"the file has more than {self.limits.rows:,} rows (ANALYTICS_MAX_ROWS)")
                self.columns |= set(chunk.cells.columns) & set(self.kind.columns)
                yield chunk
        except DecryptionError as exc:
            raise FileUnreadable(str(exc)) from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise FileUnreadable(f"the compressed file is truncated or corrupt ({exc})") from None
        except csv.Error as exc:
            raise FileUnreadable(f"not valid CSV: {exc}") from None
        except (HeaderError, LimitExceeded) as exc:
            raise FileUnreadable(str(exc)) from None

    def unchanged(self, sha: str) -> bool:
        """Whether the file on disk is still the one that was fingerprinted."""
        try:
            return fingerprint(self.file.path) == (sha, self.size)
        except OSError:
            return False
