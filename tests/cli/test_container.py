"""The container, as far as a machine without a Docker engine can test it: the image copies
every module the service imports, runs as a non-root user, installs from the project's own
requirements, and the commands it runs (serve, health, the cron line) work here; the image
names its database and keyring (DATABASE_URL, GNUPGHOME under /data); deploy/compose.yaml
needs no file that is not committed or made by a documented step, and its secrets file's
example names every secret."""
from __future__ import annotations

import os
import pty
import re
import shlex
import sqlite3
import subprocess
import sys

import yaml
from sqlalchemy.engine import make_url

from tests.cli.test_trigger import REPO, run

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instruction(name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in DOCKERFILE.replace("\\\n", " ").splitlines()
            if line.startswith(name + " ")]


def test_the_image_copies_every_module_of_the_service():
    copied = set()
    for args in instruction("COPY"):
        copied |= {p.rstrip("/") for p in args.split()[:-1]}
    modules = {p.name for p in REPO.glob("*.py")}
    assert modules <= copied, modules - copied
    assert {"analytics", "jobs", "models"} <= copied


def test_the_image_runs_as_a_non_root_user_and_installs_from_requirements():
    [user] = instruction("USER")
    assert user.strip() not in ("root", "0")
    assert any("pip install" in r and "-r requirements.txt" in r for r in instruction("RUN"))
    assert any("gnupg" in r for r in instruction("RUN"))


def test_the_image_serves_and_checks_health_with_the_service_commands(tmp_path):
    [entrypoint] = instruction("ENTRYPOINT")
    [command] = instruction("CMD")
    assert yaml.safe_load(entrypoint) == ["python", "/app/trigger.py"] and yaml.safe_load(command) == ["--serve"]
    [health] = instruction("HEALTHCHECK")
    health_cmd = yaml.safe_load(health.split("CMD", 1)[1].strip())
    assert health_cmd == ["python", "/app/trigger.py", "--health"]

    (tmp_path / "districts.yaml").write_text("districts:\n  - id: alpha\n    apps: [ixl]\n")
    env = {"ANALYTICS_HEARTBEAT_FILE": str(tmp_path / "beat")}
    unhealthy = run(health_cmd[2:], tmp_path, **env)  # nothing has run yet
    assert unhealthy.returncode == 1 and "no cycle succeeded" in unhealthy.stdout
    assert run([], tmp_path, **env).returncode == 0  # the cron line's plain cycle
    (tmp_path / "beat").touch()
    healthy = run(health_cmd[2:], tmp_path, **env)
    assert healthy.returncode == 0 and healthy.stdout.startswith("healthy")


def test_the_cron_line_runs_one_plain_cycle():
    line = next(l for l in (REPO / "deploy" / "crontab").read_text().splitlines() if re.match(r"^\d", l))
    words = shlex.split(line.split(">>")[0])[5:]
    assert words[:3] == ["docker", "run", "--rm"]
    assert words[words.index("--entrypoint") + 1] == "python" and words[-1] == "/app/trigger.py"


def test_the_compose_example_pairs_the_service_with_postgresql():
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    assert compose["services"]["db"]["image"].startswith("postgres")
    url = compose["services"]["analytics"]["environment"]["DATABASE_URL"]
    assert url.startswith("postgresql+psycopg2://") and "@db:5432/" in url


def test_a_progress_bar_on_a_terminal_and_none_in_logs(tmp_path):
    (tmp_path / "districts.yaml").write_text("districts:\n  - id: alpha\n    apps: [ixl]\n")
    for n in range(3):
        (tmp_path / "landing" / "alpha").mkdir(parents=True, exist_ok=True)
        (tmp_path / "landing" / "alpha" / f"usage_{n}.csv").write_text(f"student_id,app,date,minutes\ns{n},ixl,2026-09-01,5\n")
    piped = run(["--jobs", "ingest"], tmp_path)
    assert "[###" not in piped.stderr and "\r" not in piped.stderr

    (tmp_path / "landing" / "alpha" / "usage_3.csv").write_text("student_id,app,date,minutes\ns9,ixl,2026-09-01,5\n")
    (tmp_path / "analytics.db").unlink()
    main, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LANDING_DIR", "DISTRICTS_FILE")}
    done = subprocess.run([sys.executable, str(REPO / "trigger.py"), "--jobs", "ingest"], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=secondary, timeout=120)
    os.close(secondary)
    shown = b""
    try:
        while chunk := os.read(main, 65536):
            shown += chunk
    except OSError:
        pass
    os.close(main)
    assert done.returncode == 0
    assert b"\ringest alpha [" in shown and b"4/4" in shown


# The compose example and the image's settings. `docker compose config` would be the real
# parser, but this machine has no compose plugin (`docker compose version` fails), so the
# compose file is read with PyYAML and held to what Compose does with it: paths are
# relative to the compose file's folder (deploy/), a missing env_file is an error unless it
# says `required: false` (Compose 2.24+), and a missing bind-mount source is either refused
# (long syntax) or created empty and owned by root (short syntax), which uid 10001 cannot use.
DEPLOY = REPO / "deploy"
COMPOSE_TEXT = (DEPLOY / "compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
ENV_EXAMPLE = DEPLOY / "analytics.env.example"
# Secrets the README names; the test also takes every Environment row that says "secret",
# "password" or "passphrase".
SECRETS = {"ANALYTICS_GPG_PASSPHRASE", "ANALYTICS_SMTP_URL", "ANALYTICS_WEBHOOK_URL"}


def image_env() -> dict[str, str]:
    env = {}
    for args in instruction("ENV"):
        for word in shlex.split(args):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def env_files(service: dict) -> list[dict]:
    value = service.get("env_file") or []
    entries = [value] if isinstance(value, (str, dict)) else value
    return [{"path": e, "required": True} if isinstance(e, str) else {"required": True, **e} for e in entries]


def bind_sources(service: dict) -> list[str]:
    sources = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                sources.append(source)
        elif volume.get("type") == "bind":
            sources.append(volume["source"])
    return sources


def documented_steps() -> str:
    return "\n".join(line for line in COMPOSE_TEXT.splitlines() if line.lstrip().startswith("#"))


def test_the_image_names_its_database_and_keyring_instead_of_leaving_them_to_defaults():
    env = image_env()
    url = make_url(env["DATABASE_URL"])  # sqlite:////data/... : four slashes, an absolute path
    assert url.drivername == "sqlite" and url.database == "/data/analytics.db", env["DATABASE_URL"]
    assert env["GNUPGHOME"] == "/data/gnupg"
    assert env["DISTRICTS_FILE"].startswith("/data/") and env["LANDING_DIR"].startswith("/data/")
    # The user is uid 10001 and the comments say /data must be writable by it.
    assert any("--uid 10001" in r for r in instruction("RUN"))
    comments = "\n".join(line for line in DOCKERFILE.splitlines() if line.startswith("#"))
    assert "10001" in comments and "DATABASE_URL" in comments and "--homedir /data/gnupg" in comments
    # GNUPGHOME exists in the image with the mode gpg insists on, owned by the user.
    assert any(re.search(r"install -d -o analytics -g analytics -m 700 /data/gnupg", r) for r in instruction("RUN"))


def test_the_image_settings_run_a_cycle_into_the_data_folder(tmp_path):
    """The image's ENV outside a container, /data being tmp_path: the database lands in it."""
    env = {k: v.replace("/data", str(tmp_path)) for k, v in image_env().items() if k != "PYTHONPATH"}
    env["ANALYTICS_HEARTBEAT_FILE"] = str(tmp_path / "beat")
    (tmp_path / "districts.yaml").write_text("districts:\n  - id: alpha\n    apps: [ixl]\n")
    (tmp_path / "landing" / "alpha").mkdir(parents=True)
    (tmp_path / "landing" / "alpha" / "usage.csv").write_text("student_id,app,date,minutes\ns1,ixl,2026-09-01,5\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(["--jobs", "ingest"], elsewhere, **env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "analytics.db").exists() and not list(elsewhere.iterdir())


def test_the_compose_example_needs_no_file_that_is_not_there():
    services = COMPOSE["services"]
    for name, service in services.items():
        for entry in env_files(service):
            assert (DEPLOY / entry["path"]).is_file() or entry["required"] is False, (name, entry)
        for source in bind_sources(service):
            path = (DEPLOY / source).resolve()
            relative = os.path.relpath(path, REPO)
            made = re.search(rf"mkdir -p (-m \d+ )?{re.escape(relative)}(/|\s|$)", documented_steps(), re.M)
            assert path.exists() or made, (name, source)
        for volume in service.get("volumes") or []:
            if isinstance(volume, str) and not volume.startswith((".", "/", "~")):
                assert volume.split(":", 1)[0] in (COMPOSE.get("volumes") or {}), volume
        if "build" in service:
            context = service["build"] if isinstance(service["build"], str) else service["build"]["context"]
            assert (DEPLOY / context / "Dockerfile").resolve() == REPO / "Dockerfile"
    # The optional env_file is the example's copy, and is git-ignored; so is the data.
    optional = [e["path"] for s in services.values() for e in env_files(s) if e["required"] is False]
    assert [os.path.normpath(DEPLOY / p) for p in optional] == [str(DEPLOY / "analytics.env")]
    assert "cp deploy/analytics.env.example deploy/analytics.env" in documented_steps()
    ignored = subprocess.run(["git", "check-ignore", "deploy/analytics.env", "deploy/data/districts.yaml"],
                             cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == ["deploy/analytics.env", "deploy/data/districts.yaml"], ignored
    kept = subprocess.run(["git", "check-ignore", "deploy/data/.gitkeep", "deploy/analytics.env.example"],
                          cwd=REPO, capture_output=True, text=True)
    assert kept.returncode == 1 and kept.stdout == "", kept  # neither is ignored: both are committed
    assert "deploy" in (REPO / ".dockerignore").read_text().split()  # secrets never enter the image


def test_the_compose_example_connects_to_its_database_and_keyring():
    services = COMPOSE["services"]
    db, analytics = services["db"]["environment"], services["analytics"]["environment"]
    url = make_url(analytics["DATABASE_URL"])
    assert url.host in services and services[url.host]["image"].startswith("postgres")
    assert (url.username, url.password, url.database) == (db["POSTGRES_USER"], db["POSTGRES_PASSWORD"],
                                                         db["POSTGRES_DB"])
    assert analytics["GNUPGHOME"] == image_env()["GNUPGHOME"]
    targets = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in services["analytics"]["volumes"]]
    assert "/data" in targets  # the districts file, landing folder and keyring are on the mount
    steps = documented_steps()
    assert "docker compose -f deploy/compose.yaml up -d" in steps
    assert "mkdir -p -m 700 deploy/data/gnupg" in steps and "chown -R 10001:10001 deploy/data" in steps
    assert "--homedir /data/gnupg --batch --import" in steps


def readme_secrets() -> set[str]:
    readme = (REPO / "README.md").read_text()
    after = readme.split("\nEnvironment:\n", 1)[1].lstrip("\n").splitlines()
    table = after[:next((i for i, line in enumerate(after) if not line.startswith("|")), len(after))]
    rows = [line for line in table if line.startswith("| `")]
    assert rows, "no Environment table in the README"
    documented = {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    assert SECRETS <= documented, SECRETS - documented
    secret = {name for row in rows if re.search(r"secret|password|passphrase", row.split("|", 2)[2], re.I)
              for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    return SECRETS | secret


def test_the_env_example_names_every_secret_and_sets_none():
    lines = ENV_EXAMPLE.read_text().splitlines()
    named = {m[1] for line in lines if (m := re.match(r"#\s?([A-Z][A-Z0-9_]*)=", line))}
    assert readme_secrets() <= named, readme_secrets() - named
    # Copied unchanged, it sets nothing: no real value can ride along.
    assert [line for line in lines if line.strip() and not line.lstrip().startswith("#")] == []


def test_the_documented_key_import_gives_gpg_a_keyring_the_service_decrypts_with(keyrings, tmp_path):
    """The import as the README and compose.yaml give it (`mkdir -p -m 700`, then
    `gpg --homedir ... --batch --import`), outside a container, then a cycle with GNUPGHOME there."""
    service, _ = keyrings
    exported = subprocess.run(
        ["gpg", "--homedir", str(service.home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase-fd", "0", "--armor", "--export-secret-keys", service.recipient],
        input=service.passphrase.encode(), capture_output=True, check=True).stdout
    data = tmp_path / "data"
    home = data / "gnupg"
    subprocess.run(["mkdir", "-p", "-m", "700", str(home)], check=True)
    try:
        imported = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import"], input=exported,
                                  capture_output=True)
        assert imported.returncode == 0, imported.stderr
        assert home.stat().st_mode & 0o777 == 0o700
        (data / "districts.yaml").write_text("districts:\n  - id: alpha\n    apps: [ixl]\n")
        (data / "landing" / "alpha").mkdir(parents=True)
        plain = tmp_path / "usage.csv"
        plain.write_text("student_id,app,date,minutes\ns1,ixl,2026-09-01,5\n")
        service.encrypt(plain, data / "landing" / "alpha" / "usage.csv.gpg")
        env = {k: v.replace("/data", str(data)) for k, v in image_env().items() if k != "PYTHONPATH"}
        env.update(ANALYTICS_GPG_PASSPHRASE=service.passphrase, ANALYTICS_HEARTBEAT_FILE=str(tmp_path / "beat"))
        done = run(["--jobs", "ingest"], data, **env)
        assert done.returncode == 0, done.stdout + done.stderr
        db = sqlite3.connect(data / "analytics.db")
        try:
            assert db.execute("select status from ingested_files").fetchall() == [("loaded",)]
        finally:
            db.close()
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)
