"""What every job receives and returns."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from config import Settings

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


@dataclass
class JobResult:
    status: str = SUCCEEDED
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    message: str = ""
    details: dict = field(default_factory=dict)  # job-specific figures for the summary
