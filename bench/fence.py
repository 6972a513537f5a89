"""What the commit fence (runner.leases.guarded: every commit of a job checks and renews its
district's claim) costs a commit: a one-row insert committed plain and fenced, alternated,
medians of rounds.

    .venv/bin/python bench/fence.py                                   # SQLite, a temporary file
    .venv/bin/python bench/fence.py --database-url postgresql://postgres@127.0.0.1:5432/test

On PostgreSQL the fence takes the claim's advisory lock in the committing transaction and
renews the row on a connection of its own (one more round trip and a pool checkout); on
SQLite it is one UPDATE inside the transaction. Runs in a fresh schema (PostgreSQL, dropped
after) or a temporary file (SQLite).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runner import leases  # noqa: E402
from storage import database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    schema, url = None, args.database_url
    if not url:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='fence-')}/bench.db"
    elif url.startswith("postgres"):
        schema = f"fence_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(database.normalise_url(url))
        with admin.begin() as conn:
            conn.execute(sa.schema.CreateSchema(schema))
        url = database.normalise_url(url) + f"?options=-csearch_path%3D{schema}"
    try:
        engine = database.connect(url)
        scratch = sa.Table("fence_bench", sa.MetaData(), sa.Column("a", sa.Integer))
        with engine.begin() as conn:
            scratch.create(conn)
        with leases.claim(engine, "bench", "bench:1", 600) as other:
            assert other is None
            lease = leases.claim_lease("bench", "bench:1", 600)

            def commits(fenced: bool) -> float:
                started = time.perf_counter()
                for _ in range(args.commits):
                    with leases.guarded(engine, lease if fenced else None), engine.begin() as conn:
                        conn.execute(scratch.insert().values(a=1))
                return (time.perf_counter() - started) / args.commits * 1000

            plain, fenced = [], []
            for _ in range(args.rounds):
                plain.append(commits(False))
                fenced.append(commits(True))
        engine.dispose()
        print(f"{engine.dialect.name}: a commit {statistics.median(plain):.2f} ms plain, "
              f"{statistics.median(fenced):.2f} ms fenced (medians of {args.rounds} rounds of {args.commits})")
    finally:
        if schema:
            with admin.begin() as conn:
                conn.execute(sa.schema.DropSchema(schema, cascade=True))


if __name__ == "__main__":
    main()
