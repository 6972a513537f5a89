"""Reading landing files in bounded chunks, and what reaches gpg's command line."""
import gzip
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from readers import decrypt
from readers.landing import FileReader, LandingFile, classify, fingerprint

ROWS = 3_500


def landing_file(path: Path) -> LandingFile:
    kind, fmt, encrypted = classify(path.name)
    return LandingFile(path=path, relpath=f"alpha/{path.name}", district_id="alpha", school=None, kind=kind,
                       format=fmt, encrypted=encrypted, bytes=path.stat().st_size,
                       modified_at=datetime.now(timezone.utc))


def frame():
    return pd.DataFrame({"student_id": [f"s{i}" for i in range(ROWS)], "app": "ixl",
                         "date": "2026-09-01", "minutes": [i % 60 for i in range(ROWS)]})


def write(tmp_path, name):
    path = tmp_path / name
    data = frame()
    if name.endswith(".csv"):
        data.to_csv(path, index=False)
    elif name.endswith(".csv.gz"):
        path.write_bytes(gzip.compress(data.to_csv(index=False).encode()))
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in data.to_dict("records")))
    else:
        pq.write_table(pa.Table.from_pandas(data), path, row_group_size=700)
    return path


@pytest.mark.parametrize("name", ["usage.csv", "usage.csv.gz", "usage.jsonl", "usage.parquet"])
def test_files_are_read_in_chunks_of_at_most_chunk_rows(tmp_path, name):
    path = write(tmp_path, name)
    sha, size = fingerprint(path)
    with FileReader(landing_file(path), size, chunk_rows=1_000) as reader:
        chunks = [c.cells for c in reader.chunks()]
        assert reader.unchanged(sha)
    assert all(len(c) <= 1_000 for c in chunks) and len(chunks) >= 4
    cells = pd.concat(chunks, ignore_index=True)
    assert len(cells) == ROWS and cells["student_id"].tolist() == [f"s{i}" for i in range(ROWS)]
    assert cells["minutes"].tolist()[:3] == ["0", "1", "2"]  # text cells, as written
    first_line = {".csv": 2, ".gz": 2, ".jsonl": 1, ".parquet": 1}[path.suffix]
    assert cells["line"].tolist()[:2] == [first_line, first_line + 1]


def test_the_passphrase_never_reaches_a_command_line(tmp_path, service_keyring, monkeypatch):
    plain = write(tmp_path, "usage.csv")
    encrypted = service_keyring.encrypt(plain, tmp_path / "usage.csv.gpg")
    seen = []
    real_popen = subprocess.Popen

    def spy(args, *rest, **kwargs):  # every child: subprocess.run starts its own through Popen too
        seen.append(list(args))
        return real_popen(args, *rest, **kwargs)

    monkeypatch.setattr(decrypt.subprocess, "Popen", spy)
    sha, size = fingerprint(encrypted)
    with FileReader(landing_file(encrypted), size) as reader:
        assert sum(len(c.cells) for c in reader.chunks()) == ROWS
    assert seen and seen[0][0] == "gpg"
    assert not any(service_keyring.passphrase in arg for args in seen for arg in args)
