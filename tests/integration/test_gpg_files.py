"""Which OpenPGP files the service accepts (issue 23, item 4), with throwaway keys and files
made by the real gpg: only files encrypted to the service's key load; one made by `gpg
--store`, one only signed, one encrypted with a passphrase (the right one or a guess) fail
with their reason, and the passphrase is never tried on them; with gpg_senders, a file must
carry a good signature by one of them. The gpg child gets a minimal environment."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

import config
from models import ingested_files, usage
from readers import decrypt
from readers.decrypt import DecryptionError, decrypted
from runner.cycle import run_cycle
from tests.conftest import Keyring, _make_keyring

HEADER = "student_id,app,date,minutes\n"


def gpg(ring: Keyring, *args: str, passphrase: str | None = None) -> None:
    secret = ["--pinentry-mode", "loopback", "--passphrase", passphrase] if passphrase else []
    subprocess.run(["gpg", "--homedir", str(ring.home), "--batch", "--yes", "--trust-model", "always", *secret, *args],
                   check=True, capture_output=True)


def fingerprint(ring: Keyring) -> str:
    listed = subprocess.run(["gpg", "--homedir", str(ring.home), "--with-colons", "--fingerprint", ring.recipient],
                            check=True, capture_output=True, text=True).stdout
    return next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def rings(tmp_path_factory):
    """The service's keyring (holding the partners' public keys), a partner who is an allowed
    sender, a stranger whose public key the service has but who is not, and someone the
    service has never heard of. Each partner has the service's public key."""
    if not shutil.which("gpg"):
        pytest.fail("gpg is not installed: apt-get install gnupg")
    base = tmp_path_factory.mktemp("gpg-policy")
    made = {name: _make_keyring(base / name, name, f"secret of {name}")
            for name in ("service", "partner", "stranger", "unknown")}
    service = made["service"]
    public = subprocess.run(["gpg", "--homedir", str(service.home), "--export", service.recipient],
                            check=True, capture_output=True).stdout
    for name in ("partner", "stranger", "unknown"):
        ring = made[name]
        subprocess.run(["gpg", "--homedir", str(ring.home), "--batch", "--import"], input=public, check=True,
                       capture_output=True)
        if name != "unknown":
            theirs = subprocess.run(["gpg", "--homedir", str(ring.home), "--export", ring.recipient],
                                    check=True, capture_output=True).stdout
            subprocess.run(["gpg", "--homedir", str(service.home), "--batch", "--import"], input=theirs,
                           check=True, capture_output=True)
    yield made
    for ring in made.values():
        subprocess.run(["gpgconf", "--homedir", str(ring.home), "--kill", "gpg-agent"], capture_output=True)


@pytest.fixture
def service(rings, monkeypatch):
    ring = rings["service"]
    monkeypatch.setenv("GNUPGHOME", str(ring.home))
    monkeypatch.setenv("ANALYTICS_GPG_PASSPHRASE", ring.passphrase)
    return ring


def plain(tmp_path: Path, student: str) -> Path:
    path = tmp_path / f"plain-{student}.csv"
    path.write_text(f"{HEADER}{student},ixl,2026-09-01,10\n")
    return path


def ingest(engine, landing: Path, districts: list[dict], **top):
    s = config.parse({**top, "districts": districts})
    return run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                     landing_dir=landing)


def files(engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        return {r.path: (r.status, r.error) for r in conn.execute(select(ingested_files))}


def students(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(usage.c.student_id)).scalars())


def test_only_files_encrypted_to_the_service_key_load(engine, tmp_path, rings, service):
    partner = rings["partner"]
    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    gpg(partner, "--recipient", service.recipient, "--output", str(folder / "usage_good.csv.gpg"),
        "--encrypt", str(plain(tmp_path, "good")))
    gpg(partner, "--output", str(folder / "usage_store.csv.gpg"), "--store", str(plain(tmp_path, "stored")))
    gpg(service, "--output", str(folder / "usage_signed.csv.gpg"), "--sign", str(plain(tmp_path, "signed")),
        passphrase=service.passphrase)
    gpg(partner, "--output", str(folder / "usage_symmetric.csv.gpg"), "--symmetric",
        str(plain(tmp_path, "symmetric")), passphrase=service.passphrase)  # the service's own passphrase
    gpg(partner, "--output", str(folder / "usage_guess.csv.gpg"), "--symmetric", str(plain(tmp_path, "guess")),
        passphrase="a guess")
    gpg(partner, "--recipient", service.recipient, "--output", str(folder / "usage_both.csv.gpg"), "--symmetric",
        "--encrypt", str(plain(tmp_path, "both")), passphrase=service.passphrase)

    result = ingest(engine, tmp_path / "landing", [{"id": "alpha", "apps": ["ixl"]}]).records[0].result

    got = files(engine)
    assert got["alpha/usage_good.csv.gpg"] == ("loaded", None)
    assert students(engine) == {"good"}  # nothing of the others loaded
    refused = {path: error for path, (status, error) in got.items() if status == "failed"}
    assert set(refused) == {f"alpha/usage_{n}.csv.gpg" for n in ("store", "signed", "symmetric", "guess", "both")}
    assert refused["alpha/usage_store.csv.gpg"].startswith(
        "not accepted: the file is not encrypted (an OpenPGP file as gpg --store makes); files must be "
        "encrypted to the service's key")
    assert refused["alpha/usage_signed.csv.gpg"].startswith(
        "not accepted: the file is only signed (gpg --sign), not encrypted")
    # The right passphrase and a guess get the same answer: the service never tries one.
    assert refused["alpha/usage_symmetric.csv.gpg"] == refused["alpha/usage_guess.csv.gpg"] == (
        "not accepted: the file is encrypted with a passphrase (gpg --symmetric), which the service never tries; "
        "files must be encrypted to the service's key (gpg --encrypt --recipient <the service's key>)")
    assert refused["alpha/usage_both.csv.gpg"].startswith(
        "not accepted: the file is encrypted with a passphrase (gpg --symmetric) as well as to a key")
    assert not any("session key" in error.lower() for error in refused.values())
    assert result.status == "completed_with_errors" and "5 failed" in result.message


def test_a_symmetric_layer_is_never_answered_even_if_the_listing_missed_it(tmp_path, rings, service, monkeypatch):
    """The decrypting run itself stops at gpg's NEED_PASSPHRASE_SYM (a file swapped after its
    packets were listed): the passphrase is not written, no plaintext is made."""
    encrypted = tmp_path / "usage.csv.gpg"
    gpg(rings["partner"], "--output", str(encrypted), "--symmetric", str(plain(tmp_path, "s1")),
        passphrase=service.passphrase)
    monkeypatch.setattr(decrypt, "_check_packets", lambda path, env: None)
    made = []
    real_mkdtemp = decrypt.tempfile.mkdtemp
    monkeypatch.setattr(decrypt.tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])
    real_converse = decrypt._converse
    written = []

    def watch(child, run, passphrase):
        real_write = child.stdin.write
        child.stdin.write = lambda data: written.append(data) or real_write(data)
        return real_converse(child, run, passphrase)

    monkeypatch.setattr(decrypt, "_converse", watch)
    with pytest.raises(DecryptionError, match="encrypted with a passphrase"):
        with decrypted(encrypted):
            pass
    assert written == []
    assert made and not Path(made[0]).exists()


def test_gpg_senders_require_a_good_signature_by_one_of_them(engine, tmp_path, rings, service):
    partner, stranger, unknown = rings["partner"], rings["stranger"], rings["unknown"]
    landing = tmp_path / "landing"
    for district in ("alpha", "beta"):
        (landing / district).mkdir(parents=True)
    send = ("--recipient", service.recipient, "--sign", "--encrypt")
    gpg(partner, "--local-user", partner.recipient, "--output", str(landing / "alpha/usage_partner.csv.gpg"),
        *send, str(plain(tmp_path, "from-partner")), passphrase=partner.passphrase)
    gpg(stranger, "--local-user", stranger.recipient, "--output", str(landing / "alpha/usage_stranger.csv.gpg"),
        *send, str(plain(tmp_path, "from-stranger")), passphrase=stranger.passphrase)
    gpg(unknown, "--local-user", unknown.recipient, "--output", str(landing / "alpha/usage_unknown.csv.gpg"),
        *send, str(plain(tmp_path, "from-unknown")), passphrase=unknown.passphrase)
    gpg(partner, "--recipient", service.recipient, "--output", str(landing / "alpha/usage_unsigned.csv.gpg"),
        "--encrypt", str(plain(tmp_path, "unsigned")))
    gpg(partner, "--recipient", service.recipient, "--output", str(landing / "beta/usage_unsigned.csv.gpg"),
        "--encrypt", str(plain(tmp_path, "beta-unsigned")))
    allowed = fingerprint(partner)
    spaced = " ".join(allowed[i:i + 4] for i in range(0, 40, 4))  # as gpg --fingerprint prints it

    ingest(engine, landing, [{"id": "alpha", "apps": ["ixl"]}, {"id": "beta", "apps": ["ixl"], "gpg_senders": []}],
           gpg_senders=[spaced.lower()])

    got = files(engine)
    assert got["alpha/usage_partner.csv.gpg"] == ("loaded", None)
    assert got["beta/usage_unsigned.csv.gpg"] == ("loaded", None)  # beta's own list (none) replaces the top-level one
    assert students(engine) == {"from-partner", "beta-unsigned"}
    assert got["alpha/usage_stranger.csv.gpg"] == (
        "failed", f"not accepted: it is signed by {fingerprint(stranger)}, which is not one of the district's "
                  "gpg_senders")
    assert got["alpha/usage_unsigned.csv.gpg"][1].startswith(
        "not accepted: it is not signed, and the district accepts only files signed by one of its gpg_senders")
    status, error = got["alpha/usage_unknown.csv.gpg"]
    assert status == "failed" and error.startswith(
        f"not accepted: it is signed by a key the service's keyring does not have ({fingerprint(unknown)})")


def test_the_gpg_child_gets_a_minimal_environment(engine, tmp_path, rings, service, monkeypatch):
    """A `gpg` first on PATH records the environment it was started with (/proc/self/environ),
    then runs the real gpg with it: neither the passphrase nor DATABASE_URL is there."""
    real = shutil.which("gpg")
    bin_dir, dumps = tmp_path / "bin", tmp_path / "environments"
    bin_dir.mkdir()
    dumps.mkdir()
    (bin_dir / "gpg").write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "pairs = [e.split(b'=', 1) for e in open('/proc/self/environ', 'rb').read().split(b'\\0') if e]\n"
        f"with open(os.path.join({str(dumps)!r}, str(os.getpid())), 'w') as out:\n"
        "    json.dump({k.decode(): v.decode() for k, v in pairs}, out)\n"
        f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n")
    (bin_dir / "gpg").chmod(0o755)
    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    service.encrypt(plain(tmp_path, "s1"), folder / "usage.csv.gpg")
    path = f"{bin_dir}:{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://analytics:db-password-1@db/analytics")
    monkeypatch.setenv("ANALYTICS_WEBHOOK_URL", "https://hooks.example/T0/secret-token")

    ingest(engine, tmp_path / "landing", [{"id": "alpha", "apps": ["ixl"]}])

    assert files(engine)["alpha/usage.csv.gpg"] == ("loaded", None)
    seen = [json.loads(p.read_text()) for p in dumps.iterdir()]
    for environment in seen:
        assert not {"ANALYTICS_GPG_PASSPHRASE", "DATABASE_URL", "ANALYTICS_WEBHOOK_URL"} & set(environment)
        assert service.passphrase not in json.dumps(environment)
        assert environment == {"PATH": path, "GNUPGHOME": str(service.home), "LC_ALL": "C"}
    assert len(seen) == 2  # the listing and the decryption
