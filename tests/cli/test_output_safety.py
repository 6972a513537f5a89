"""Outside text in what people read (issue 23, item 8), through the real trigger.py: a student
id that is a spreadsheet formula, one with an ANSI escape, a file name with a newline that
would forge a log line. The CSV download neutralises the cells, the summary, the log and
--status hold no raw control character and no forged line, and the tables keep what came in."""
from __future__ import annotations

import csv
import io
import re
import signal

from sqlalchemy import create_engine, select

from models import ingested_files, usage
from tests.cli.test_trigger import run
from tests.cli.test_web_cli import _start, _wait_text
from tests.servers import free_port

FORMULA = "=cmd|' /C calc'!A0"
COLOURED = "\x1b[31mred\x1b[0m"
FORGED = "2026-11-20 02:00:00,000 INFO trigger: all files loaded, nothing to see"
NEWLINE_NAME = f"usage_late\n{FORGED}.csv"  # fails (semicolons): named in the summary and the log
ESCAPE_NAME = "usage_\x1b[2J\x1b[31mred.csv"  # loads: named in the log
SCHOOL = "oak\x1b]0;pwned\x07middle"  # an escape that sets a terminal's title
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def _assert_inert(text: str, where: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, f"{where}: a raw control character: {text!r}"
    assert not any(line.startswith(FORGED) for line in text.splitlines()), f"{where}: a forged line: {text}"


def test_outside_text_is_neutralised_where_people_read_it_and_kept_in_the_tables(tmp_path, db_url):
    (tmp_path / "districts.yaml").write_text("districts:\n  - id: alpha\n    apps: [ixl]\n")
    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    (folder / "usage.csv").write_text(f"student_id,app,date,minutes\n{FORMULA},ixl,2026-11-02,30\n"
                                      f"{COLOURED},ixl,2026-11-02,20\ns1,ixl,2026-11-02,10\n")
    (folder / NEWLINE_NAME).write_text("student_id;app;date;minutes\ns2;ixl;2026-11-02;5\n")
    (folder / ESCAPE_NAME).write_text("student_id,app,date,minutes\ns3,ixl,2026-11-03,5\n")
    (folder / SCHOOL).mkdir()  # a school folder's name is shown by --status
    (folder / SCHOOL / "usage.csv").write_text("student_id,app,date,minutes\ns4,ixl,2026-11-04,5\n")

    cycle = run(["--as-of", "2026-11-20"], tmp_path, DATABASE_URL=db_url)
    assert cycle.returncode == 0, cycle.stderr
    status = run(["--status", "--as-of", "2026-11-20"], tmp_path, DATABASE_URL=db_url)
    assert status.returncode == 0, status.stderr
    port = free_port()
    web = _start(["--web", "--port", str(port), "--as-of", "2026-11-20"], tmp_path, DATABASE_URL=db_url)
    try:
        exported = _wait_text(f"http://127.0.0.1:{port}/district/alpha/students.csv", web)
    finally:
        web.send_signal(signal.SIGTERM)
        web.communicate(timeout=60)

    # The summary, the log lines and --status: no raw escape, no forged line; each file on one line.
    for where, text in (("summary", cycle.stdout), ("log", cycle.stderr), ("--status", status.stdout)):
        _assert_inert(text, where)
    escaped = "usage_late\\n" + FORGED + ".csv"
    assert any(line.startswith("  alpha: alpha/" + escaped + ": header has") for line in cycle.stdout.splitlines())
    assert any(escaped in line for line in status.stdout.splitlines())
    assert "oak\\x1b]0;pwned\\x07middle" in status.stdout
    assert all(LOG_LINE.match(line) or line.startswith("    ") for line in cycle.stderr.splitlines()), cycle.stderr
    assert re.search(r"alpha: alpha/usage_\\x1b\[2J\\x1b\[31mred\.csv: 1 rows loaded", cycle.stderr)
    assert f"alpha: alpha/{escaped}: failed: header has" in cycle.stderr
    # The CSV download: the formula shown, never run; the escape written out.
    cells = {row["student_id"] for row in csv.DictReader(io.StringIO(exported))}
    assert cells == {"'" + FORMULA, "\\x1b[31mred\\x1b[0m", "s1", "s3", "s4"}
    assert "\x1b" not in exported
    # The tables hold what came in: it is neutralised only where it is shown.
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            ids = set(conn.execute(select(usage.c.student_id)).scalars())
            paths = set(conn.execute(select(ingested_files.c.path)).scalars())
    finally:
        engine.dispose()
    assert ids == {FORMULA, COLOURED, "s1", "s3", "s4"}
    assert {f"alpha/{NEWLINE_NAME}", f"alpha/{ESCAPE_NAME}", f"alpha/{SCHOOL}/usage.csv"} <= paths
