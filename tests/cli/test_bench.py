"""The benchmark's smoke run, so it never rots: it runs end to end at tiny scale and writes
its table. No timing is asserted (speed targets live in bench/RESULTS.md)."""
import subprocess
import sys

from tests.cli.test_trigger import REPO


def test_the_benchmark_runs_at_tiny_scale(tmp_path, pg_url):
    out = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--scale", "tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={
                              **{k: v for k, v in __import__("os").environ.items()}, "BENCH_DATABASE_URL": pg_url.split("?")[0]})
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    for row in ("ingest (ours", "psql \\copy into a same-shaped table (the limit)", "pandas to_sql",
                "dailypull, full rebuild", "psql GROUP BY", "incremental night", "most_used", "recommendations",
                "ingest, 5x the rows", "| ratio |", "peak RSS, 5x rows", "SQLite: sqlite3 shell GROUP BY",
                "GROUP BY (time), SQLite"):
        assert row in text
