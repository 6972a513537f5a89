"""fetch's copying speed against real servers on loopback (the test suite's: moto's S3 server,
Debian's sshd): 100 objects of 1 MiB from S3, the same listing again (all unchanged), and one
50 MiB file over SFTP. Run: .venv/bin/python bench/fetch.py
"""
import os, sys, time, tempfile
from datetime import date, datetime, timezone
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.update(AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="secret-x", AWS_DEFAULT_REGION="us-east-1")
import boto3, config
from storage import database
from runner.cycle import run_cycle
from tests.servers import s3_server, sshd
tmp = Path(tempfile.mkdtemp())
engine = database.connect(f"sqlite:///{tmp}/a.db")
blob = os.urandom(1 << 20)
with s3_server() as endpoint:
    c = boto3.client("s3", endpoint_url=endpoint)
    c.create_bucket(Bucket="bench-bucket")
    for i in range(100):
        c.put_object(Bucket="bench-bucket", Key=f"x/usage_{i:03d}.bin", Body=blob)
    s = config.parse({"districts": [{"id": "d", "apps": ["ixl"], "sources": [{"url": "s3://bench-bucket/x", "endpoint_url": endpoint, "name": "s3"}]}]})
    now = datetime(2026, 11, 20, tzinfo=timezone.utc)
    for label in ("first", "again (unchanged)"):
        t = time.perf_counter()
        r = run_cycle(engine, s, districts=list(s.districts), jobs=["fetch"], as_of=date(2026, 11, 20), landing_dir=tmp / "landing", now=now, clock=lambda: now).records[0]
        dt = time.perf_counter() - t
        print(f"S3 {label}: {dt:.2f} s; {r.result.message[:90]}; {100 / dt:.1f} objects/s, {100 / dt:.1f} MiB/s" if label == "first" else f"S3 {label}: {dt:.2f} s; {r.result.message[:90]}")
big = tmp / "sftp"; big.mkdir()
(big / "usage_big.bin").write_bytes(os.urandom(50 << 20))
with sshd(tmp / "ssh") as (port, key, user, known):
    s = config.parse({"districts": [{"id": "e", "apps": ["ixl"], "sources": [{"url": f"sftp://127.0.0.1:{port}{big}", "key_file": str(key), "username": user, "known_hosts": str(known), "name": "v"}]}]})
    t = time.perf_counter()
    r = run_cycle(engine, s, districts=list(s.districts), jobs=["fetch"], as_of=date(2026, 11, 20), landing_dir=tmp / "landing", now=now, clock=lambda: now).records[0]
    dt = time.perf_counter() - t
    print(f"SFTP one 50 MiB file: {dt:.2f} s ({50 / dt:.1f} MiB/s); {r.result.message[:80]}")
