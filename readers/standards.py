"""Files in the ecosystem's standard formats (README, "xAPI, Caliper and OneRoster"): which
landing files they are, and reading each into parsed values with their line numbers.

    xapi*.json | .jsonl [.gz] [.gpg]     xAPI statements: a JSON array, a StatementResult
                                          ({"statements": [...]}), one statement, or one a line
    caliper*.json | .jsonl [.gz] [.gpg]  Caliper envelopes ({"data": [events]}) or events, the
                                          same shapes
    oneroster*.zip [.gpg]                 a OneRoster 1.1/1.2 CSV bundle
    <any folder>/manifest.csv             a OneRoster bundle as a folder: its CSV files are one
                                          delivery, fingerprinted together

A JSON array is read element by element (memory follows one statement, not the file); the
mapping rules are in analytics/standards.py and analytics/oneroster.py.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from readers.decrypt import DecryptionError, decrypted
from readers.landing import (
    ENCRYPTED, BoundedReader, FileUnreadable, LandingFile, _bounded_lines, _check_width, _Expansion, _storable,
    fingerprint, open_regular,
)
from readers.limits import Limits, LimitExceeded, json_depth

XAPI, CALIPER, ONEROSTER, ONEROSTER_FOLDER = "xapi", "caliper", "oneroster", "oneroster_folder"
JSON_FORMATS = (".jsonl.gz", ".json.gz", ".jsonl", ".json")
MANIFEST = "manifest.csv"
TABLES = ("manifest", "users", "roles", "orgs", "lineItems", "results")  # the tables read; others are counted
ITEMS_PER_CHUNK = 20_000
_HASH_BLOCK = 1 << 20


def claim(files: list[LandingFile]) -> list[LandingFile]:
    """The discovered files with the standard formats' files marked as such (their `source`),
    and every folder holding a manifest.csv turned into one OneRoster delivery."""
    folders = {f.path.parent for f in files if f.path.name.lower() == MANIFEST and not f.refused
               and _is_oneroster_manifest(f.path)}
    out: list[LandingFile] = []
    bundles: dict[Path, list[LandingFile]] = {}
    for file in files:
        if file.path.parent in folders and not file.refused:
            bundles.setdefault(file.path.parent, []).append(file)
            continue
        name = file.relpath.rsplit("/", 1)[-1].lower()
        for prefix in (XAPI, CALIPER):
            if name.startswith(prefix) and file.kind is None and not file.refused:
                plain = name.removesuffix(ENCRYPTED)
                fmt = next((f for f in JSON_FORMATS if plain.endswith(f)), None)
                refused = None if fmt else (f"a {'xAPI' if prefix == XAPI else 'Caliper'} file must end with "
                                            f"{', '.join(JSON_FORMATS[::-1])}, each optionally followed by .gpg")
                file = dataclasses.replace(file, kind=prefix, format=fmt, encrypted=name.endswith(ENCRYPTED),
                                           source=prefix, refused=refused)
                break
        else:
            if name.startswith(ONEROSTER) and file.kind is None and not file.refused:
                plain = name.removesuffix(ENCRYPTED)
                refused = None if plain.endswith(".zip") else ("a OneRoster bundle must be a .zip (optionally .gpg) "
                                                                "or a folder with manifest.csv")
                file = dataclasses.replace(file, kind=ONEROSTER, format=".zip", encrypted=name.endswith(ENCRYPTED),
                                           source=ONEROSTER, refused=refused)
        out.append(file)
    for folder, members in bundles.items():
        first = members[0]
        relpath = first.relpath.rsplit("/", 1)[0]
        out.append(dataclasses.replace(
            first, path=folder, relpath=relpath, kind=ONEROSTER, format="folder", encrypted=False,
            bytes=sum(m.bytes for m in members), modified_at=max(m.modified_at for m in members),
            source=ONEROSTER_FOLDER, school=first.school if "/" in relpath.split("/", 1)[-1] else None))
    return sorted(out, key=lambda f: (f.modified_at, f.relpath))


def _is_oneroster_manifest(path: Path) -> bool:
    """Whether a manifest.csv is OneRoster's (it names oneroster.version): a sync tool's own
    manifest.csv leaves its folder's files to be read one by one."""
    try:
        with open_regular(path) as handle:
            head = handle.read(64 * 1024).decode("utf-8", errors="replace").lower()
    except OSError:
        return False
    return "oneroster.version" in head


def bundle_members(folder: Path) -> list[Path]:
    """The CSV files of a bundle folder, by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink() and not p.name.startswith("."))


def bundle_fingerprint(folder: Path) -> tuple[str, int]:
    """(sha256, bytes) of a bundle folder: every member's name and content, in name order."""
    digest = hashlib.sha256()
    size = 0
    for member in bundle_members(folder):
        sha, bytes_ = fingerprint(member)
        digest.update(f"{member.name}\0{sha}\0".encode("utf-8", "surrogateescape"))
        size += bytes_
    return digest.hexdigest(), size


# --- JSON ------------------------------------------------------------------------------

@dataclass
class JsonItems:
    """What reading a JSON file gave besides its items: bad lines (line, reason, raw)."""
    bad: list[tuple[int, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _binary(file: LandingFile, path: Path, limit: int, limits: Limits, stack: ExitStack):
    handle = stack.enter_context(open_regular(path) if not file.encrypted else open(path, "rb", buffering=0))
    stream = io.BufferedReader(BoundedReader(handle, limit), _HASH_BLOCK)
    if file.format.endswith(".gz"):
        stream = io.BufferedReader(_Expansion(gzip.GzipFile(fileobj=stream, mode="rb"), limit, limits), _HASH_BLOCK)
    return stream


def json_items(file: LandingFile, path: Path, limit: int, limits: Limits, found: JsonItems
               ) -> Iterator[list[tuple[int, str, object]]]:
    """The file's top-level items as chunks of (line, raw text, parsed value). JSON lines: one
    a line (a line that does not parse is a bad line); .json: an array's elements one by one,
    or the one object (a StatementResult's `statements` are its items)."""
    with ExitStack() as stack:
        try:
            text = io.TextIOWrapper(_binary(file, path, limit, limits, stack), encoding="utf-8-sig",
                                    errors="replace", newline="")
            if file.format.startswith(".jsonl"):
                yield from _lines(text, limits, found)
            else:
                yield from _document(text, limits, found)
        except (EOFError, gzip.BadGzipFile, OSError) as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError)):
                raise
            raise FileUnreadable(f"the compressed file is truncated or corrupt ({exc})") from None
        except LimitExceeded as exc:
            raise FileUnreadable(str(exc)) from None


def _parse(raw: str, line: int, limits: Limits):
    if json_depth(raw, limits.json_depth) > limits.json_depth:
        raise LimitExceeded(f"line {line:,} nests arrays or objects more than {limits.json_depth} deep "
                            "(ANALYTICS_MAX_JSON_DEPTH)")
    return json.loads(raw)


def _lines(text: io.TextIOBase, limits: Limits, found: JsonItems) -> Iterator[list]:
    chunk: list = []
    for number, line in enumerate(_bounded_lines(text, limits.line_bytes), start=1):
        raw = line.rstrip("\r\n")
        if not raw.strip():
            continue
        try:
            chunk.append((number, raw, _parse(raw, number, limits)))
        except ValueError as exc:
            found.bad.append((number, f"not valid JSON ({getattr(exc, 'msg', exc)})", _storable(raw)))
        if len(chunk) >= ITEMS_PER_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_WHITESPACE = " \t\r\n"


def _document(text: io.TextIOBase, limits: Limits, found: JsonItems) -> Iterator[list]:
    """A .json file: an array streamed element by element, else one object read whole (at
    most ANALYTICS_MAX_CHUNK_BYTES)."""
    decoder = json.JSONDecoder()
    buffer = text.read(_HASH_BLOCK)
    start = len(buffer) - len(buffer.lstrip(_WHITESPACE + "\ufeff"))
    if start >= len(buffer):
        found.notes.append("the file is empty: no statements")
        return
    line = 1 + buffer.count("\n", 0, start)
    if buffer[start] != "[":
        rest = buffer + text.read(limits.chunk_bytes + 1 - len(buffer))
        if len(rest) > limits.chunk_bytes:
            raise LimitExceeded(f"a JSON object over {limits.chunk_bytes:,} characters is not read "
                                "(ANALYTICS_MAX_CHUNK_BYTES); write a JSON array or JSON lines")
        try:
            value = _parse(rest, line, limits)
        except ValueError as exc:
            raise FileUnreadable(f"not valid JSON: {exc}") from None
        if isinstance(value, dict) and isinstance(value.get("statements"), list):  # an xAPI StatementResult
            if value.get("more"):
                found.notes.append(f"a StatementResult with more statements at {str(value['more'])[:200]!r}: "
                                   "only the statements in the file are read")
            value = value["statements"]
        items = value if isinstance(value, list) else [value]
        for first in range(0, len(items), ITEMS_PER_CHUNK):
            yield [(line, json.dumps(v)[:8192], v) for v in items[first:first + ITEMS_PER_CHUNK]]
        return
    position = start + 1
    chunk: list = []
    ended = False
    while True:
        while True:  # skip whitespace and the comma between elements
            while position < len(buffer) and buffer[position] in _WHITESPACE + ",":
                if buffer[position] == "\n":
                    line += 1
                position += 1
            if position < len(buffer):
                break
            more = text.read(_HASH_BLOCK)
            if not more:
                raise FileUnreadable(f"the JSON array is not closed (line {line:,}): the file may be cut short")
            buffer, position = more, 0
        if buffer[position] == "]":
            ended = True
            break
        while True:
            try:
                value, end = decoder.raw_decode(buffer, position)
                break
            except json.JSONDecodeError as exc:
                more = text.read(_HASH_BLOCK)
                if not more:
                    raise FileUnreadable(f"not valid JSON at line {line + exc.lineno - 1:,}: {exc.msg}") from None
                if len(buffer) - position > limits.line_bytes:
                    raise LimitExceeded(f"an element of the JSON array at line {line:,} is longer than "
                                        f"{limits.line_bytes:,} characters (ANALYTICS_MAX_LINE_BYTES)") from None
                buffer = buffer[position:] + more
                position = 0
        raw = buffer[position:end]
        if json_depth(raw, limits.json_depth) > limits.json_depth:
            raise LimitExceeded(f"the element at line {line:,} nests more than {limits.json_depth} deep "
                                "(ANALYTICS_MAX_JSON_DEPTH)")
        chunk.append((line, raw, value))
        line += raw.count("\n")
        position = end
        if len(chunk) >= ITEMS_PER_CHUNK:
            yield chunk
            chunk = []
        if position > _HASH_BLOCK:  # keep the buffer bounded
            buffer, position = buffer[position:], 0
    if chunk:
        yield chunk
    if ended and text.read(_HASH_BLOCK).strip(_WHITESPACE):
        found.notes.append("text after the JSON array's end was ignored")


def caliper_items(chunks: Iterator[list]) -> Iterator[list]:
    """Caliper envelopes ({"sensor", "sendTime", "data": [...]}) unpacked into their events,
    each with the envelope's line; an item that is no envelope is taken as an event."""
    for chunk in chunks:
        out = []
        for line, raw, value in chunk:
            if isinstance(value, dict) and isinstance(value.get("data"), list):
                out.extend((line, json.dumps(event)[:8192], event) for event in value["data"])
            else:
                out.append((line, raw, value))
        yield out


# --- OneRoster -----------------------------------------------------------------------------

@dataclass
class Bundle:
    """A OneRoster bundle's tables: name -> text cells (the header's names, "" when empty,
    plus line and raw), the bad rows of each, and the CSV files it has but we do not read."""
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    bad: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    manifest: list[tuple[str, str]] = field(default_factory=list)
    not_read: list[str] = field(default_factory=list)


def _table_name(member: str) -> str | None:
    base = member.rsplit("/", 1)[-1]
    if not base.lower().endswith(".csv"):
        return None
    stem = base[:-4].lower()
    return next((t for t in TABLES if t.lower() == stem), "") if stem else None


def read_bundle(file: LandingFile, path: Path, limits: Limits) -> Bundle:
    """The bundle's tables read whole (a roster's tables are read as one: bulk means the
    complete set), each within the per-file limits."""
    bundle = Bundle()
    if file.source == ONEROSTER_FOLDER:
        members = [(p.name, p) for p in bundle_members(path)]
        opener = lambda p: open_regular(p)  # noqa: E731
    else:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise FileUnreadable(f"not a readable zip archive ({exc})") from None
        members = []
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.file_size > limits.decompressed_bytes or (
                    info.file_size > Limits.RATIO_FLOOR
                    and info.file_size > limits.compression_ratio * max(info.compress_size, 1)):
                raise FileUnreadable(f"{info.filename} expands to {info.file_size:,} bytes "
                                     "(ANALYTICS_MAX_DECOMPRESSED_BYTES / ANALYTICS_MAX_COMPRESSION_RATIO)")
            members.append((info.filename, info))
        opener = archive.open
    seen = set()
    for name, handle in members:
        table = _table_name(name)
        if table is None:
            continue
        if not table:
            bundle.not_read.append(name.rsplit("/", 1)[-1])
            continue
        if table in seen:
            raise FileUnreadable(f"the bundle has {table}.csv twice")
        seen.add(table)
        try:
            with opener(handle) as binary:  # a zip member stops at its declared size (checked above)
                buffered = binary if isinstance(binary, io.BufferedIOBase) else io.BufferedReader(binary, _HASH_BLOCK)
                text = io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="surrogateescape", newline="")
                frame, bad = _csv_table(text, f"{table}.csv", limits)
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError)):
                raise
            raise FileUnreadable(f"{name}: cannot be read ({exc})") from None
        except LimitExceeded as exc:
            raise FileUnreadable(f"{name}: {exc}") from None
        if table == "manifest":
            bundle.manifest = list(zip(frame.get("propertyName", pd.Series(dtype=object)),
                                       frame.get("value", pd.Series(dtype=object))))
        else:
            bundle.tables[table] = frame
            bundle.bad[table] = bad
    if "manifest" not in seen:
        raise FileUnreadable("a OneRoster bundle must have manifest.csv")
    return bundle


def _csv_table(text: io.TextIOBase, name: str, limits: Limits) -> tuple[pd.DataFrame, list[tuple]]:
    reader = csv.reader(_bounded_lines(text, limits.line_bytes))
    header = next(reader, None)
    if header is None:
        raise FileUnreadable(f"{name} is empty: a header row is required")
    _check_width(len(header), limits)
    names = [h.strip() for h in header]
    rows, lines, raws, bad = [], [], [], []
    for row in reader:
        if not row:
            continue
        raw = ",".join(row)
        if len(row) != len(names):
            bad.append((reader.line_num, f"{name}: expected {len(names)} fields, got {len(row)}", _storable(raw)))
        elif "\x00" in raw or any("\udc80" <= ch <= "\udcff" for ch in raw):
            why = "a NUL byte" if "\x00" in raw else "bytes that are not UTF-8"
            bad.append((reader.line_num, f"{name}: the row has {why}", _storable(raw)))
        else:
            rows.append([cell.strip() for cell in row])
            lines.append(reader.line_num)
            raws.append(raw[:limits.raw_chars])
        if len(rows) > limits.rows:
            raise LimitExceeded(f"{name} has more than {limits.rows:,} rows (ANALYTICS_MAX_ROWS)")
    frame = pd.DataFrame(rows, columns=names, dtype=object) if rows else pd.DataFrame(columns=names, dtype=object)
    return frame.assign(line=pd.Series(lines, dtype="int64"), raw=pd.Series(raws, dtype=object)), bad


def plaintext(file: LandingFile, stack: ExitStack, senders: tuple[str, ...] = ()) -> Path:
    """The path to read: the file itself, or its decrypted copy (removed when `stack` closes);
    `senders`: the fingerprints of whom an encrypted file must be signed by (none: any)."""
    if not file.encrypted:
        return file.path
    try:
        return stack.enter_context(decrypted(file.path, senders))
    except DecryptionError as exc:
        raise FileUnreadable(str(exc)) from None
