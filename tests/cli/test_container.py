"""The container, as far as a machine without a Docker engine can test it: the image copies
every module the service imports, runs as a non-root user, installs from the project's own
requirements, and the commands it runs (serve, health, the cron line) work here."""
from __future__ import annotations

import os
import pty
import re
import shlex
import subprocess
import sys

import yaml

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
