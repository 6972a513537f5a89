"""The fast (Arrow) CSV reader reads exactly what the exact (Python csv) reader reads, or
hands the file over to it: same cells, same line numbers, same good and rejected rows."""
import gzip
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.landing_rows import KINDS, validate
from readers.landing import FileReader, FileUnreadable, LandingFile, NeedsExactReader, classify

HEADER = b"student_id,app,date,minutes\n"


def landing_file(path: Path) -> LandingFile:
    kind, fmt, encrypted = classify(path.name)
    return LandingFile(path=path, relpath=f"alpha/{path.name}", district_id="alpha", school=None, kind=kind,
                       format=fmt, encrypted=encrypted, bytes=path.stat().st_size,
                       modified_at=datetime.now(timezone.utc))


def read(path: Path, fast: bool):
    """(cells as plain lists, good rows, rejected rows) or None when the fast reader hands over."""
    file = landing_file(path)
    try:
        with FileReader(file, file.bytes, fast=fast) as reader:
            chunks = [c.cells for c in reader.chunks()]
            notes = list(reader.notes)
    except NeedsExactReader:
        assert fast
        return None
    except FileUnreadable as exc:
        return "unreadable", str(exc)
    cells = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    good, bad = validate(KINDS["usage"], cells) if chunks else (pd.DataFrame(), pd.DataFrame())
    plain = {c: cells[c].astype(object).tolist() for c in cells.columns if c != "raw"}  # raw: compared in `bad`
    return plain, good.astype(object).to_dict("list"), bad.astype(object).to_dict("list"), notes


def same_or_handed_over(path: Path) -> bool:
    """True when the fast reader read the file itself (and agreed with the exact one)."""
    fast, exact = read(path, True), read(path, False)
    if fast is None:
        return False
    assert fast == exact
    return True


WELL_FORMED = {
    "plain": HEADER + b"s1,ixl,2026-09-01,30\ns2,dreambox,2026-09-02,45.5\n",
    "no final line end": HEADER + b"s1,ixl,2026-09-01,30",
    "crlf": HEADER.replace(b"\n", b"\r\n") + b"s1,ixl,2026-09-01,30\r\ns2,ixl,2026-09-02,5\r\n",
    "bom": b"\xef\xbb\xbf" + HEADER + b"s1,ixl,2026-09-01,30\n",
    "quoted cells": HEADER + b'"s1","ixl","2026-09-01","30"\n"s,2",ixl,2026-09-01,"1"\n',
    "doubled quotes": HEADER + b'"s""1",ixl,2026-09-01,3\n',
    "upper-case header, extra column": b"Student_ID,APP,date,minutes,note\ns1,ixl,2026-09-01,30,hi\n",
    "bad values are rejected alike": HEADER + b"s1,ixl,2026-02-30,30\n,IXL!,x,-1\ns3,ixl,2026-09-01,9999\n",
    "spaces kept as text": HEADER + b" s1 , ixl ,2026-09-01, 30 \n",
    "header only": HEADER,
    "utf-8 text": HEADER + "é1,ixl,2026-09-01,30\n".encode(),
    "quoted header, as pyarrow writes it": b'"student_id","app","date","minutes"\n"s1","ixl","2026-09-01",30\n',
    "quoted header, crlf and a bom": b'\xef\xbb\xbf"student_id","app","date","minutes"\r\n"s1","ixl",2026-09-01,30\r\n',
    "quoted header with a comma in an extra column": b'"student_id","app","date","minutes","a,b"\ns1,ixl,2026-09-01,30,x\n',
}

HANDED_OVER = {
    "blank line": HEADER + b"s1,ixl,2026-09-01,30\n\ns2,ixl,2026-09-01,30\n",
    "line end inside quotes": HEADER + b'"s\n1",ixl,2026-09-01,30\n',
    "too few fields": HEADER + b"s1,ixl,2026-09-01\n",
    "too many fields": HEADER + b"s1,ixl,2026-09-01,30,7\n",
    "not utf-8": HEADER + b"s\xff1,ixl,2026-09-01,30\n",
    "nul": HEADER + b"s\x001,ixl,2026-09-01,30\n",
    "old mac line ends": HEADER.replace(b"\n", b"\r") + b"s1,ixl,2026-09-01,30\r",
    "a lone CR (a line end to Python) before a row": HEADER + b"\r,,,\n",  # found by hypothesis
    "missing column": b"student_id,app,minutes\ns1,ixl,30\n",
    "empty": b"",
    "a line end inside a quoted header name": b'"student_id","app","date","minutes","no\nte"\ns1,ixl,2026-09-01,30,x\n',
    "text after a closing quote in the header": b'"student_id"x,app,date,minutes\ns1,ixl,2026-09-01,30\n',
    "a column named raw": b"student_id,app,date,minutes,raw\ns1,ixl,2026-09-01,30,x\n",
    "a cell longer than Python's csv field limit": HEADER + b"s1,ixl,2026-09-01," + b"1" * 140_000 + b"\n",
}


@pytest.mark.parametrize("name", WELL_FORMED)
def test_well_formed_files_are_read_by_the_fast_reader_exactly_as_by_the_exact_one(tmp_path, name):
    path = tmp_path / "usage.csv"
    path.write_bytes(WELL_FORMED[name])
    assert same_or_handed_over(path)


def test_gzip_files_take_the_fast_path_too(tmp_path):
    path = tmp_path / "usage.csv.gz"
    path.write_bytes(gzip.compress(WELL_FORMED["bad values are rejected alike"]))
    assert same_or_handed_over(path)


@pytest.mark.parametrize("name", HANDED_OVER)
def test_files_the_fast_reader_cannot_read_exactly_are_handed_over(tmp_path, name):
    path = tmp_path / "usage.csv"
    path.write_bytes(HANDED_OVER[name])
    assert not same_or_handed_over(path)


def test_a_large_file_is_read_in_several_chunks_with_line_numbers_running_on(tmp_path, monkeypatch):
    import readers.landing as landing

    monkeypatch.setattr(landing, "_ARROW_BLOCK", 1 << 12)
    rows = [f"s{i},ixl,2026-09-01,{i % 1500}" for i in range(2_000)]  # some minutes out of range
    path = tmp_path / "usage.csv"
    path.write_text("student_id,app,date,minutes\n" + "\n".join(rows) + "\n")
    file = landing_file(path)
    with FileReader(file, file.bytes, fast=True) as reader:
        chunks = [c.cells for c in reader.chunks()]
    assert len(chunks) > 3
    assert pd.concat(chunks)["line"].tolist() == list(range(2, 2_002))
    assert same_or_handed_over(path)


CELL = st.text(alphabet='a1 ,"-.:\r\n\té', max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(CELL, min_size=3, max_size=5), max_size=6), st.sampled_from(["\n", "\r\n"]),
       st.sampled_from(["student_id,app,date,minutes", '"student_id","app","date","minutes"']))
def test_any_text_is_read_alike_or_handed_over(tmp_path, rows, end, header):
    lines = [",".join(row) for row in rows]
    path = tmp_path / "usage.csv"
    path.write_bytes((end.join([header, *lines]) + end).encode())
    same_or_handed_over(path)
