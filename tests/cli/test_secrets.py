"""Secrets never appear in logs, messages, --status output or process arguments."""
from __future__ import annotations

from tests.cli.test_trigger import run

PASSWORD = "db-Secret-8841"


def test_no_secret_in_any_output(tmp_path, pg_url, service_keyring, monkeypatch):
    url = pg_url.replace("postgresql+psycopg2://postgres@", f"postgresql+psycopg2://postgres:{PASSWORD}@")
    assert PASSWORD in url  # trust auth on the test server ignores it; the service must still hide it
    (tmp_path / "districts.yaml").write_text("districts:\n  - id: alpha\n    apps: [ixl]\n")
    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    plain = tmp_path / "usage.csv"
    plain.write_text("student_id,app,date,minutes\ns1,ixl,2026-09-01,30\n")
    service_keyring.encrypt(plain, folder / "usage.csv.gpg")
    (folder / "forecasts.csv.gpg").write_bytes(b"not really encrypted")  # a failure with an error text
    env = {"DATABASE_URL": url, "GNUPGHOME": str(service_keyring.home),
           "ANALYTICS_GPG_PASSPHRASE": service_keyring.passphrase}
    outputs = [
        run(["-v", "--as-of", "2026-11-22"], tmp_path, **env),
        run(["--status"], tmp_path, **env),
        run(["--status", "--json"], tmp_path, **env),
        run(["-v", "--as-of", "2026-11-22"], tmp_path, **{**env, "ANALYTICS_GPG_PASSPHRASE": "wrong-Phrase-1"}),
    ]
    assert outputs[0].returncode == 0 and "ingest" in outputs[0].stdout
    assert "gpg could not decrypt" in outputs[0].stderr  # the failing file is reported...
    text = "".join(o.stdout + o.stderr for o in outputs)
    for secret in (PASSWORD, service_keyring.passphrase, "wrong-Phrase-1"):
        assert secret not in text  # ...without any secret
