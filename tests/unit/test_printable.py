"""Outside text where people read it (analytics.printable, service.logs): escaped control
characters on a terminal and in a log line, formulas neutralised in a CSV cell."""
import logging

import pandas as pd
import pytest

from analytics.printable import printable, spreadsheet_cell
from service.logs import LogFormatter
from service.web import csv_text


@pytest.mark.parametrize("text, shown", [
    ("s1", "s1"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("usage\n2026-11-20 INFO forged.csv", "usage\\n2026-11-20 INFO forged.csv"),
    ("a\rb\tc\x00d\x7fe", "a\\rb\\tc\\x00d\\x7fe"),
    ("\x9b31m", "\\x9b31m"),  # a C1 control: CSI on its own
    ("abc\u202edcba", "abc\\u202edcba"),  # a right-to-left override
    ("line\u2028separator", "line\\u2028separator"),
    ("s\udce9bastien", "s\\udce9bastien"),  # an undecodable byte, as a lone surrogate
    ("Zoë, 学校 and ﬁ", "Zoë, 学校 and ﬁ"),  # printable text stays as it is
])
def test_printable_escapes_what_would_act_on_a_terminal(text, shown):
    assert printable(text) == shown
    assert "\n" not in printable(text) and "\x1b" not in printable(text)


@pytest.mark.parametrize("cell, written", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+1+1", "'+1+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1+1", "'\\t=1+1"), ("\r=1+1", "'\\r=1+1"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("s1", "s1"), ("a=b", "a=b"),
    (-1.5, -1.5), (3, 3), (None, None),  # numbers are numbers
])
def test_spreadsheet_cell_neutralises_formulas_and_controls(cell, written):
    assert spreadsheet_cell(cell) == written


def test_csv_text_writes_neutralised_cells_and_keeps_numbers():
    frame = pd.DataFrame({"student_id": ["=1+1", "\x1b[2Jx", "s1"], "effect": [-1.5, 2.0, None]})
    assert csv_text(frame) == "student_id,effect\n'=1+1,-1.5\n\\x1b[2Jx,2.0\ns1,\n"
    assert frame["student_id"].tolist() == ["=1+1", "\x1b[2Jx", "s1"]  # the input is not changed


def _formatted(record: logging.LogRecord) -> str:
    return LogFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s")).format(record)


def test_a_log_record_is_one_line_whatever_its_arguments_hold():
    record = logging.makeLogRecord({"name": "jobs.ingest", "levelname": "WARNING", "msg": "%s: %s: failed",
                                    "args": ("alpha", "alpha/usage\nINFO trigger: all good\x1b[2J.csv")})
    assert _formatted(record) == "WARNING jobs.ingest: alpha: alpha/usage\\nINFO trigger: all good\\x1b[2J.csv: failed"


def test_a_traceback_keeps_its_lines_indented_so_none_reads_as_a_record(monkeypatch):
    monkeypatch.setenv("ANALYTICS_GPG_PASSPHRASE", "correct horse battery staple")
    try:
        raise ValueError("bad file a\nERROR trigger: forged\x1b[31m correct horse battery staple")
    except ValueError:
        record = logging.getLogger("jobs.ingest").makeRecord(
            "jobs.ingest", logging.ERROR, __file__, 1, "%s: failed", ("alpha/x.csv",), __import__("sys").exc_info())
    lines = _formatted(record).split("\n")
    assert lines[0] == "ERROR jobs.ingest: alpha/x.csv: failed"
    assert lines[1] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in lines[1:])
    assert lines[-2:] == ["    ValueError: bad file a", "    ERROR trigger: forged\\x1b[31m ***"]
