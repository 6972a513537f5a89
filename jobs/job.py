"""What every job receives and returns."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from config import Settings

log = logging.getLogger(__name__)

SUCCEEDED = "succeeded"
COMPLETED_WITH_ERRORS = "completed_with_errors"
FAILED = "failed"
SKIPPED = "skipped"
RUNNING = "running"


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    as_of: date
    now: datetime  # the cycle's clock reading (UTC), used for every *_at it writes
    landing_dir: Path
    force: bool = False
    cycle_id: str = ""
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)  # job_runs' started/finished
    holder: str = ""  # the instance holding the district's claim (HOST:PID); its jobs fence their commits with it


@dataclass
class JobResult:
    status: str = SUCCEEDED
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    message: str = ""
    details: dict = field(default_factory=dict)  # job-specific figures for the summary


# Set by the runner while a job runs: raises if the job's claim or lock is known lost, so it
# stops at its next step instead of computing what it could no longer commit.
between_steps: ContextVar[Callable[[], None] | None] = ContextVar("between_steps", default=None)


def checkpoint(name: str) -> None:
    """A named step of a job: the job stops here if its claim or lock is known lost; and a
    test hook, which does nothing unless the environment asks for it.

    ANALYTICS_CRASH_AT=<name>: the process kills itself here (SIGKILL), to prove that a crash
    at this step loses and half-publishes nothing. ANALYTICS_PAUSE_AT=<name>: it sleeps
    ANALYTICS_PAUSE_SECONDS here, so a test can act (drop its connection, read) mid-step.
    """
    if os.environ.get("ANALYTICS_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("ANALYTICS_PAUSE_AT") == name:
        seconds = float(os.environ.get("ANALYTICS_PAUSE_SECONDS", "5"))
        log.warning("test hook: pausing %.0f s at %s (ANALYTICS_PAUSE_AT)", seconds, name)
        print(f"paused at {name}", file=sys.stderr, flush=True)  # for a test to act on
        time.sleep(seconds)
    check = between_steps.get()
    if check is not None:
        check()


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """`1 student`, `2 students`, `1,200 rows`: counts in messages people read."""
    return f"{n:,} {noun if n == 1 else (plural_form or noun + 's')}"
