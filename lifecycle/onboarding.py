"""Districts' lifecycle: a dry run of a district's landing folder, onboarding, offboarding.

`check` reads landing files and writes nothing anywhere (no database connection at all).
`onboard` edits districts.yaml (only by adding the entry), creates the district's tables and
runs its first cycle. `offboard` disables it; with drop, also deletes its tables and rows.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
from sqlalchemy import delete, func, select

import config
from service import report
from analytics.identifiers import check_app_id, check_district_id
from analytics.printable import printable
from analytics.landing_rows import KINDS, reason_category, validate
from storage.ddl import existing_columns
from jobs import JOBS
from runner.cycle import CycleResult, run_cycle
from runner.jobrun import UsageError
from jobs.job import plural
from readers.landing import FileReader, FileUnreadable, discover, fingerprint
from readers import standards as standard_files
from readers.limits import Limits
from jobs import standards
from models import dataframe_table, metadata

log = logging.getLogger(__name__)

NEW_FILE = "# Districts served by this installation. Reference: README.md, \"districts.yaml\".\ndistricts:\n"


def check_new_district(district_id: str, apps: list[str]) -> None:
    """Refuse an id or app ids off the contract's patterns, before anything else happens."""
    problems = [p for p in [check_district_id(district_id), *(check_app_id(a) for a in apps)] if p]
    if not apps:
        problems.append("--apps needs at least one app id, e.g. --apps ixl,lexia")
    repeated = sorted({a for a in apps if apps.count(a) > 1})
    if repeated:
        problems.append(f"--apps lists {repeated} more than once")
    if problems:
        raise UsageError("; ".join(problems))


@dataclass
class Scan:
    files: Counter = field(default_factory=Counter)  # (kind, ending) -> files
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    copies: list[tuple[str, str]] = field(default_factory=list)  # (path, same bytes as)
    rows_good: int = 0
    rows_rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    first_day: date | None = None
    last_day: date | None = None
    students: set = field(default_factory=set)
    apps: Counter = field(default_factory=Counter)  # usage rows per app seen
    standard_files: int = 0  # xAPI, Caliper and OneRoster files
    counted: Counter = field(default_factory=Counter)  # what their mapping rules counted


def scan(landing_dir: Path, district_id: str, options: config.StandardsOptions = config.StandardsOptions()) -> Scan:
    """What ingest would make of LANDING_DIR/<district_id>, without writing anything;
    `options`: how xAPI, Caliper and OneRoster files would map (the district's, or the defaults)."""
    found = Scan()
    seen: dict[str, str] = {}
    for file in standard_files.claim(discover(landing_dir, district_id)):
        if file.problem:
            found.unreadable.append((file.relpath, file.problem))
            continue
        sha, size = standards.fingerprint(file) if standards.is_standard(file) else fingerprint(file.path)
        if sha in seen:
            found.copies.append((file.relpath, seen[sha]))
            continue
        seen[sha] = file.relpath
        found.files[(file.kind, file.ending)] += 1
        if standards.is_standard(file):
            found.standard_files += 1
            try:
                loaded, bad, counted, students, apps = standards.dry_run(file, size, options,
                                                                         Limits.from_environment())
            except FileUnreadable as exc:
                found.unreadable.append((file.relpath, str(exc)))
                continue
            found.rows_good += loaded
            found.rows_rejected += len(bad)
            found.reasons.update(reason_category(bad["reason"]).dropna())
            found.counted.update(counted)
            found.students.update(students)
            found.apps.update(apps)
            continue
        try:
            with FileReader(file, size) as reader:
                for chunk in reader.chunks():
                    good, bad = validate(KINDS[file.kind], chunk.cells)
                    bad = pd.concat([chunk.malformed, bad], ignore_index=True)
                    _count(found, file.kind, good, bad)
        except FileUnreadable as exc:
            found.unreadable.append((file.relpath, str(exc)))
    return found


def _count(found: Scan, kind: str, good: pd.DataFrame, bad: pd.DataFrame) -> None:
    found.rows_good += len(good)
    found.rows_rejected += len(bad)
    found.reasons.update(reason_category(bad["reason"]).dropna())
    found.students.update(good["student_id"].dropna())
    for column in ("date", "as_of"):
        if column in good and good[column].notna().any():
            low, high = good[column].min().date(), good[column].max().date()
            found.first_day = min(filter(None, (found.first_day, low)))
            found.last_day = max(filter(None, (found.last_day, high)))
    if kind == "usage":
        found.apps.update(good["app"].value_counts().to_dict())


def standards_options(settings_path: Path, district_id: str) -> tuple[config.StandardsOptions, str]:
    """The district's standards: options when districts.yaml already has it, else the defaults."""
    try:
        return config.load(settings_path).district(district_id).standards, f"as {settings_path} sets them"
    except KeyError:
        return config.StandardsOptions(), "the defaults"
    except config.ConfigError as exc:
        return config.StandardsOptions(), (f"the defaults: {settings_path} has problems, so its settings are not "
                                           f"used: {'; '.join(exc.problems)[:300]}")


def check_report(found: Scan, landing_dir: Path, district_id: str, apps: list[str],
                 options: config.StandardsOptions = config.StandardsOptions(), rules_source: str = "the defaults") -> str:
    """The dry run's report: one line per element of `out`, each made printable (file names
    and reasons come from the landing folder)."""
    folder = Path(landing_dir) / district_id
    out = [f"Dry run for {district_id!r} in {folder} (nothing was written):"]
    if not folder.is_dir():
        return "\n".join(printable(line) for line in out + [f"  no folder {folder}: nothing would load"])
    kinds = ", ".join(f"{kind} {ending} {n}" for (kind, ending), n in sorted(found.files.items()))
    out.append(f"  files that would load: {sum(found.files.values())}" + (f" ({kinds})" if kinds else ""))
    for path, original in found.copies:
        out.append(f"  duplicate (same bytes as {original}): {path}")
    for path, why in found.unreadable:
        out.append(f"  would fail: {path}: {why}")
    out.append(f"  rows: {found.rows_good:,} would load, {found.rows_rejected:,} would be rejected")
    for reason, n in found.reasons.most_common(5):
        out.append(f"    {reason}: {n:,}")
    if found.first_day:
        out.append(f"  days: {found.first_day} .. {found.last_day}")
    out.append(f"  students: {len(found.students):,}")
    unlisted = {a: n for a, n in found.apps.items() if a not in apps}
    if unlisted:
        out.append("  apps in usage but not in --apps (they would get no column): "
                   + ", ".join(f"{a} ({plural(n, 'row')})" for a, n in sorted(unlisted.items(), key=lambda x: (-x[1], x[0]))))
    unused = [a for a in apps if a not in found.apps]
    if unused:
        out.append(f"  apps in --apps with no usage yet: {', '.join(unused)}")
    if found.standard_files:
        out.append(f"  xAPI, Caliper and OneRoster mapping rules (districts.yaml standards:, {rules_source}):")
        out += [f"    {line}" for line in standards.describe(options)]
        if found.counted:
            out.append("  what the rules counted:")
            out += [f"    {what}: {n:,}" for what, n in sorted(found.counted.items())]
    return "\n".join(printable(line) for line in out)


def onboard(settings_path: Path, engine_factory, landing_dir: Path, district_id: str, apps: list[str],
            name: str | None, as_of: date) -> tuple[CycleResult, str]:
    """Add the district to districts.yaml, create its tables, run its first full cycle."""
    check_new_district(district_id, apps)
    text = settings_path.read_text(encoding="utf-8") if settings_path.exists() else NEW_FILE
    current = config.parse(config.yaml_load(text, str(settings_path)), source=str(settings_path))
    if any(d.id == district_id for d in current.districts):
        raise UsageError(f"district {district_id!r} is already in {settings_path}; "
                         "to change its apps, edit the file (dailypull reshapes its table)")
    settings = config.write_text_checked(settings_path, config.add_district_text(text, district_id, apps, name))
    district = settings.district(district_id)
    log.info("%s: added to %s", district_id, settings_path)
    engine = engine_factory()
    dataframe_table(district_id, district.apps).create(engine, checkfirst=True)
    cycle = run_cycle(engine, settings, districts=[district], jobs=list(JOBS), as_of=as_of, landing_dir=landing_dir)
    return cycle, report.district_report(engine, district)


def offboard(settings_path: Path, district_id: str) -> config.Settings:
    """Set the district's `enabled: false` in districts.yaml (jobs skip it; data stay)."""
    current = config.load(settings_path)
    if not any(d.id == district_id for d in current.districts):
        raise UsageError(f"district {district_id!r} is not in {settings_path}")
    return config.write_text_checked(settings_path, config.set_enabled_text(
        settings_path.read_text(encoding="utf-8"), district_id, False))


def drop_district(engine, district: config.District) -> dict[str, int]:
    """Delete the district's table and every row of it, in one transaction.

    job_runs keeps its history (what ran, including this drop's cycle), and the landing
    folder is never touched. Returns rows deleted per table.
    """
    deleted = {}
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if "district_id" in table.c and table.name != "job_runs":
                deleted[table.name] = conn.execute(delete(table).where(table.c.district_id == district.id)).rowcount
        frame = dataframe_table(district.id, district.apps)
        if existing_columns(conn, frame.name) is not None:
            deleted[frame.name] = conn.execute(select(func.count()).select_from(frame)).scalar_one()
            frame.drop(conn)
    return {name: n for name, n in deleted.items() if n}
