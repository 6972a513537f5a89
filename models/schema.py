"""Tables the service owns. Names and columns that the outside world sees follow CONTRACT.md.

`minutes` are minutes of use, `score` points on 0..100, `date`/`*_active`/`as_of` calendar
days, `*_at` UTC timestamps.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from analytics.identifiers import check_app_id, check_district_id
from analytics.landing_rows import NUL_SHOWN

metadata = MetaData()


class StoredText(Text):
    """Free text that may quote what came from outside (a file's error and notes, a rejected
    row's text and reasons, a job's message): a NUL character, which PostgreSQL's text
    cannot hold ("A string literal cannot contain NUL"), is written as the four characters
    \\x00, on both databases. Bound values get it here; the bulk paths (storage/frames.py)
    do the same for these columns."""

    cache_ok = True

    def bind_processor(self, dialect):
        base = super().bind_processor(dialect)

        def process(value):
            if isinstance(value, str) and "\x00" in value:
                value = value.replace("\x00", NUL_SHOWN)
            return base(value) if base is not None else value

        return process

POSTGRES_IDENTIFIER_BYTES = 63
ID = String(64)


def _source(name: str, *columns: Column) -> Table:
    """A source table: district, the kind's columns, and which landing file wrote the row."""
    return Table(
        name,
        metadata,
        Column("district_id", String(31), primary_key=True),
        Column("student_id", ID, primary_key=True),
        *columns,
        Column("file_id", BigInteger, nullable=False),
    )


usage = _source(
    "usage",
    Column("app", String(41), primary_key=True),
    Column("date", Date, primary_key=True),
    Column("minutes", Float, nullable=False),
    Column("sessions", Integer),
)
assessments = _source(
    "assessments",
    Column("assessment_id", ID, primary_key=True),
    Column("date", Date, nullable=False),
    Column("score", Float, nullable=False),
)
forecasts = _source(
    "forecasts",
    Column("date", Date, primary_key=True),
    Column("score", Float, nullable=False),
)
score_averages = _source(
    "score_averages",
    Column("school_year", String(7), primary_key=True),
    Column("as_of", Date, nullable=False),
    Column("score", Float, nullable=False),
)
students = _source(
    "students",
    Column("school_id", ID),
    Column("grade", String(16)),
)
SOURCE_TABLES: dict[str, Table] = {
    "usage": usage,
    "assessments": assessments,
    "forecasts": forecasts,
    "score_averages": score_averages,
    "students": students,
}

# Usage rolled up per school year, kept by ingest in the same transaction as the rows it
# writes, so that dailypull reads thousands of rows a night instead of the year's millions
# (internal; dailypull recomputes from `usage` when they cannot answer, and with --force).
usage_totals = Table(
    "usage_totals",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("year_start", Date, primary_key=True),
    Column("student_id", ID, primary_key=True),
    Column("app", String(41), primary_key=True),
    Column("minutes", Float, nullable=False),  # sum over the school year's rows
)
usage_activity = Table(
    "usage_activity",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("year_start", Date, primary_key=True),
    Column("student_id", ID, primary_key=True),
    Column("days", LargeBinary, nullable=False),  # bit i (little-endian): minutes > 0 on year_start + i days
)
usage_rollup_state = Table(  # a district's rollups are complete, for this school_year_start setting
    "usage_rollup_state",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("school_year_start", String(5), nullable=False),  # MM-DD
    Column("built_at", DateTime(timezone=True), nullable=False),
)

# What a night's dailypull needs to follow only the new data (README, "dailypull"): the
# students each usage file named, written by ingest in the file's own transaction, and what
# the last publish covered. A file loaded without its students here makes the next run full.
changed_students = Table(
    "changed_students",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("file_id", BigInteger, primary_key=True),
    Column("student_id", ID, primary_key=True),
)
changes_logged = Table(  # the files whose students are all in changed_students
    "changes_logged",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("file_id", BigInteger, primary_key=True),
    Column("first_date", Date),  # the earliest day of the usage rows it wrote (NULL: not known, or none)
)
dailypull_state = Table(  # what the district's last publish was computed from
    "dailypull_state",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("as_of", Date, nullable=False),
    Column("year_start", Date, nullable=False),
    Column("settings", String(64), nullable=False),  # a digest of the apps, bands and school year start
    Column("file_mark", BigInteger, nullable=False),  # the last ingested_files.file_id it had seen
    Column("students", Integer, nullable=False),  # rows of the published table
    Column("published_at", DateTime(timezone=True), nullable=False),
)

# One row per (district, path, content): a changed file under the same name is a new row;
# a failed file that is retried updates its row.
ingested_files = Table(
    "ingested_files",
    metadata,
    Column("file_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("district_id", String(31), nullable=False),
    Column("path", Text, nullable=False),  # relative to LANDING_DIR, '/'-separated
    Column("school", Text),  # first folder under the district's folder, if any
    Column("sha256", String(64), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("kind", String(32)),
    Column("format", String(32)),
    Column("status", String(16), nullable=False),  # loaded | duplicate | failed
    Column("rows_loaded", Integer, nullable=False, default=0),
    Column("rows_rejected", Integer, nullable=False, default=0),
    Column("error", StoredText),
    Column("notes", StoredText),
    Column("arrived_at", DateTime(timezone=True)),  # the file's modification time
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint("district_id", "path", "sha256", name="uq_ingested_files_content"),
)
Index("ix_ingested_files_sha", ingested_files.c.district_id, ingested_files.c.sha256)

# --- CLIx school-server trees (README, "CLIx school-server trees") ---------------------------

progress = Table(  # per student and unit, from users-analytics exports; a later export replaces an earlier one
    "progress",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("student_id", ID, primary_key=True),
    Column("unit", Text, primary_key=True),  # the unit's name as the export gives it
    Column("app", String(41), nullable=False),  # the unit's app id, as in usage
    Column("module", Text),
    Column("total_lessons", Integer),
    Column("lessons_visited", Integer),
    Column("total_activities", Integer),
    Column("activities_visited", Integer),
    Column("quiz_items_attempted", Integer),
    Column("quiz_items_correct", Integer),
    Column("exported_at", DateTime(timezone=True), nullable=False),  # from the file name, local time -> UTC
    Column("file_id", BigInteger, nullable=False),
)

clix_accounts = Table(  # user id -> username per server, so tool logs (by user id) meet visits (by username)
    "clix_accounts",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("server_id", String(32), primary_key=True),
    Column("user_id", String(32), primary_key=True),
    Column("username", Text, nullable=False),
    Column("staff", SmallInteger, nullable=False),  # 1: a staff or demo account (left out of every table)
    Column("file_id", BigInteger, nullable=False),
)

school_heartbeats = Table(
    "school_heartbeats",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("school_id", String(64), nullable=False),  # the school code
    Column("server_id", String(32), primary_key=True),
    Column("seen_at", DateTime(timezone=True), primary_key=True),  # the server was on then (file name, -> UTC)
    Column("disk_used_bytes", BigInteger),  # `df -h` of / (sizes as df prints them, 1024-based)
    Column("disk_free_bytes", BigInteger),
    Column("uptime_seconds", BigInteger),
    Column("note", StoredText),  # an empty or cut file: seen, and what was missing
    Column("file_id", BigInteger, nullable=False),
)

school_sync = Table(  # output: each school server's sync health as of a day (README)
    "school_sync",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("school", String(96), primary_key=True),  # the tree's folder, <school code>-<server id>
    Column("school_id", String(64), nullable=False),
    Column("server_id", String(32), nullable=False),
    Column("state_code", String(8)),
    Column("as_of", Date, nullable=False),
    Column("last_heartbeat_at", DateTime(timezone=True)),
    Column("last_visits_file_at", DateTime(timezone=True)),
    Column("last_users_file_at", DateTime(timezone=True)),
    Column("last_tool_log_at", DateTime(timezone=True)),
    Column("last_heartbeat_file_at", DateTime(timezone=True)),
    Column("last_sync_at", DateTime(timezone=True)),
    Column("days_since_sync", Integer),
    Column("server_on_days", Integer, nullable=False),  # this month, up to as_of
    Column("second_friday", Date, nullable=False),
    Column("seen_second_friday", SmallInteger),  # 1 seen, 0 not seen, NULL still to come
    Column("fourth_friday", Date, nullable=False),
    Column("seen_fourth_friday", SmallInteger),
    Column("bytes_this_month", BigInteger, nullable=False),
    Column("volume", String(16), nullable=False),  # below | within | above the 10-100 MB a month expected
    Column("state", String(16), nullable=False),  # ok | late | missed Friday | silent
    Column("computed_at", DateTime(timezone=True), nullable=False),
)

# --- xAPI, Caliper and OneRoster (README, "xAPI, Caliper and OneRoster") --------------------

learning_events = Table(  # one row per xAPI statement or Caliper event that maps; usage is summed from these
    "learning_events",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("event_id", Text, primary_key=True),  # the statement's or event's id ("sha1:<hex>" of its text when absent)
    Column("source", String(8), nullable=False),  # xapi | caliper
    Column("student_id", ID, nullable=False),
    Column("app", String(41), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),  # the statement's timestamp (UTC)
    Column("duration_seconds", Float),  # result.duration, when stated
    Column("use", SmallInteger, nullable=False),  # 1: counts as use (a Caliper GradeEvent is the grader's, 0)
    Column("assessment_id", ID),  # with score: an assessment it scored
    Column("score", Float),
    Column("file_id", BigInteger, nullable=False),
    Column("line", Integer),
)
Index("ix_learning_events_student", learning_events.c.district_id, learning_events.c.student_id,
      learning_events.c.app, learning_events.c.at)
event_voids = Table(  # xAPI voiding statements: what they void stays out of every table, whenever it arrives
    "event_voids",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("voided_id", Text, primary_key=True),
    Column("event_id", Text, nullable=False),  # the voiding statement
    Column("file_id", BigInteger, nullable=False),
)
roster_users = Table(  # OneRoster user sourcedId -> our student id (results name students by sourcedId)
    "roster_users",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("sourced_id", String(255), primary_key=True),
    Column("student_id", ID, nullable=False),
    Column("file_id", BigInteger, nullable=False),
)
roster_line_items = Table(  # OneRoster line items: a result's scale, for the bundles that do not repeat them
    "roster_line_items",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("sourced_id", String(255), primary_key=True),
    Column("title", Text),
    Column("result_min", Float),
    Column("result_max", Float),
    Column("file_id", BigInteger, nullable=False),
)
usage_weekly = Table(  # output: use over time, per school, app and week; kept by ingest for the weeks a file touches
    "usage_weekly",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("school_id", ID, primary_key=True),  # "" for students without a school
    Column("app", String(41), primary_key=True),
    Column("week_start", Date, primary_key=True),  # a Monday
    Column("students", Integer, nullable=False),  # students with more than 0 minutes that week
    Column("minutes", Float, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
)

# --- fetch (README, "fetch") -------------------------------------------------------------------

fetch_ledger = Table(  # one row per object fetched (or tried) from a district's source
    "fetch_ledger",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("district_id", String(31), nullable=False),
    Column("source", String(41), nullable=False),  # the source's name in districts.yaml
    Column("remote_path", Text, nullable=False),  # the object's key or path (a sql source: the table)
    Column("version", Text),  # ETag, checksum, or size and mtime; a sql source: the watermark reached
    Column("bytes", BigInteger, nullable=False),
    Column("local_path", Text),  # relative to LANDING_DIR, as ingest's manifest has it
    Column("fetched_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # fetched | failed | limit
    Column("error", StoredText),
)
Index("ix_fetch_ledger_object", fetch_ledger.c.district_id, fetch_ledger.c.source, fetch_ledger.c.remote_path)

rejected_rows = Table(
    "rejected_rows",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("file_id", BigInteger, nullable=False, index=True),
    Column("district_id", String(31), nullable=False),
    Column("path", Text, nullable=False),
    Column("line", Integer),
    Column("reason", StoredText, nullable=False),
    Column("raw", StoredText),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("run_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("cycle_id", String(40), nullable=False, index=True),
    Column("job", String(32), nullable=False),
    Column("district_id", String(31)),
    Column("status", String(24), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("rows_in", BigInteger),
    Column("rows_out", BigInteger),
    Column("rows_rejected", BigInteger),
    Column("message", StoredText),
    Column("host", Text),
    Column("as_of", Date),  # the day the cycle computed as of
)

# Which instance is running a district's jobs; a holder that dies stops renewing its lease
# and another instance may take the district once it has expired.
job_claims = Table(
    "job_claims",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("holder", Text, nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Output of the most_used job (CONTRACT.md, Tables). `window` is year_to_date, assessment or
# latest; `share` is the app's part of the student's minutes in that window (0..1).
most_used_software = Table(
    "most_used_software",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("student_id", ID, primary_key=True),
    Column("type", SmallInteger),
    Column("window", String(16), primary_key=True),
    Column("rank", SmallInteger, primary_key=True),
    Column("app", String(41), nullable=False),
    Column("minutes", Float, nullable=False),
    Column("share", Float, nullable=False),
    Column("window_start", Date, nullable=False),
    Column("window_end", Date, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
)

# What most_used follows from night to night (README, "most_used"): each student's windows
# and minutes per window and app, so a night recomputes only the students with new data and
# the district summary is a GROUP BY of these, not of the year's usage.
most_used_windows = Table(
    "most_used_windows",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("student_id", ID, primary_key=True),
    Column("window", String(16), primary_key=True),
    Column("window_start", Date, nullable=False),
    Column("window_end", Date, nullable=False),
    Column("type", SmallInteger),
    Column("performance", String(32)),
)
most_used_minutes = Table(
    "most_used_minutes",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("student_id", ID, primary_key=True),
    Column("window", String(16), primary_key=True),
    Column("app", String(41), primary_key=True),
    Column("minutes", Float, nullable=False),
    Column("usage_rows", Integer, nullable=False),
)
most_used_state = Table(  # what the district's last most_used was computed from
    "most_used_state",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("as_of", Date, nullable=False),
    Column("settings", String(64), nullable=False),  # a digest of the apps, windows, top n and year start
    Column("file_mark", BigInteger, nullable=False),  # the last ingested_files.file_id it had seen
)

# Per window and band (and "all"): how many students used each app, for how long, and the
# app's part of the group's minutes.
district_app_summary = Table(
    "district_app_summary",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("window", String(16), primary_key=True),
    Column("performance", String(24), primary_key=True),
    Column("app", String(41), primary_key=True),
    Column("students", Integer, nullable=False),
    Column("minutes", Float, nullable=False),
    Column("share", Float, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
)

# Output of the recommendations job (README, Recommendations). Every row comes from one
# per-app estimate (app_effects) and says what it is: an associated difference, with its
# interval, over a stated period, at a stated evidence level.
recommendations = Table(
    "recommendations",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("student_id", ID, primary_key=True),
    Column("rank", SmallInteger, primary_key=True),
    Column("app", String(41), nullable=False),
    Column("current_minutes", Float, nullable=False),  # in the window before the student's latest assessment
    Column("suggested_minutes", Float, nullable=False),  # over the period below
    # Points: the score difference associated with the extra minutes (app_effects.effect x
    # extra hours), adjusted for prior score, earlier use, school and grade; not a promise.
    Column("expected_gain", Float),
    Column("basis", String(8), nullable=False),  # model: a usage model passed the gate and the app's effect is resolved
    Column("model_id", String(32)),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("gain_low", Float),  # expected_gain's interval: the app's corrected interval x extra hours
    Column("gain_high", Float),
    Column("period_start", Date),  # the days the suggested minutes are for
    Column("period_end", Date),
    Column("evidence", String(16)),  # promising: a correlational design with controls (ESSA tiers)
    Column("caveat", Text),
    # Half of each page left free: a re-score's nightly UPDATE of every row's period then
    # writes each new row version on its own page, without touching the key's index (HOT).
    postgresql_with={"fillfactor": 50},
)

# Every type 1 student of the district without a recommendation, and why.
recommendation_reasons = Table(
    "recommendation_reasons",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("student_id", ID, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("model_id", String(32)),
    Column("computed_at", DateTime(timezone=True), nullable=False),
)

app_effects = Table(
    "app_effects",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("app", String(41), primary_key=True),
    Column("effect", Float),  # points per extra hour in the window before the assessment, adjusted
    Column("ci_low", Float),  # corrected: jointly 95% over the apps tested (Bonferroni), clustered by school
    Column("ci_high", Float),
    Column("students", Integer, nullable=False),  # who used the app in their window
    Column("model_id", String(32)),
    Column("std_error", Float),  # clustered by school
    Column("ci95_low", Float),  # the app alone, uncorrected
    Column("ci95_high", Float),
    Column("p_adjusted", Float),  # Bonferroni over the apps tested
    Column("overlap", Float),  # share of users whose school and prior-score third hold other amounts of use
    Column("status", Text),  # resolved: higher scores | resolved: lower scores | unresolved ... | too few users ...
    Column("evidence", String(16)),
)

# One row per fit; the same fit on the same data (a rerun) keeps its row and model_id.
model_runs = Table(
    "model_runs",
    metadata,
    Column("model_id", String(32), primary_key=True),
    Column("district_id", String(31), nullable=False, index=True),
    Column("trained_at", DateTime(timezone=True), nullable=False),
    Column("algorithm", String(32), nullable=False),
    Column("students", Integer, nullable=False),
    Column("cv_mae", Float),  # this fit's MAE on the validation design below
    Column("baseline_mae", Float),  # the baseline's (prior score + school + grade) on the same rows
    Column("cv_r2", Float),
    Column("basis", String(8), nullable=False),  # model | baseline | unused | effects | none: what this fit was to the recommendations (README)
    Column("as_of", Date),
    Column("verdict", Text),  # why this fit did or did not speak
    Column("validation", String(16)),  # time_split | grouped_cv | shuffled_cv | none
)

# The district's last fit, from which a night re-scores the students without fitting (README,
# "recommendations": the refit rule in analytics/refit.py). Internal.
recommend_state = Table(
    "recommend_state",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("fitted_as_of", Date, nullable=False),
    Column("settings", String(64), nullable=False),  # a digest of the apps, window, minimums, sample cap, school year
    Column("model_id", String(32)),  # the fit the rows name (recommendations.model_id, recommendation_reasons.model_id)
    Column("effects_model_id", String(32)),  # app_effects.model_id (NULL: no effects fitted, a district too small)
    Column("chosen", String(32)),  # the usage model that passed the gate (NULL: none did)
    Column("district_reason", Text),  # why no student gets a recommendation (too small, gate failed), or NULL
    Column("students", Integer, nullable=False),  # type 1 students the fit had
    Column("assessments", Integer, nullable=False),  # their assessment rows this school year up to fitted_as_of
    Column("file_mark", BigInteger, nullable=False),  # the highest ingested_files.file_id of the district then
    Column("fitted_at", DateTime(timezone=True), nullable=False),
    # What the published rows were last scored from (a refit or a re-score): a night re-scores
    # only the students whose inputs changed since (README, "recommendations"). NULL: unknown.
    Column("scored_as_of", Date),
    Column("scored_mark", BigInteger),  # the highest ingested_files.file_id then
    Column("table_settings", String(64)),  # dailypull_state.settings then (the bands behind `performance`)
    Column("scored_students", Integer),  # students with published rows then (recommendations or a reason)
)

# The bands' median window minutes of each resolved app, among the fit's students who used
# it (analytics.scoring.peer_medians): the amounts a re-score suggests. Internal.
recommend_peers = Table(
    "recommend_peers",
    metadata,
    Column("district_id", String(31), primary_key=True),
    Column("band", String(32), primary_key=True),
    Column("app", String(41), primary_key=True),
    Column("minutes", Float, nullable=False),  # no row: fewer than MIN_PEERS users, no amount to suggest
)

# Who holds a named lock, for databases without advisory locks (SQLite); a holder that
# died loses it when the lease expires.
service_locks = Table(
    "service_locks",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

def dataframe_table_name(district_id: str) -> str:
    if problem := check_district_id(district_id):
        raise ValueError(problem)
    name = f"dataframe_{district_id}"
    if len(name.encode()) > POSTGRES_IDENTIFIER_BYTES:
        raise ValueError(f"table name {name!r} is longer than PostgreSQL's 63 bytes")
    return name


def app_column(app: str) -> str:
    if problem := check_app_id(app):
        raise ValueError(problem)
    return f"app_{app}"


def dataframe_table(district_id: str, apps: tuple[str, ...] | list[str], meta: MetaData | None = None) -> Table:
    """The district's output table `dataframe_<district_id>`, one `app_<id>` column per app.

    Built on its own MetaData (not the shared one) so that a changed app list never clashes
    with a table object built earlier in the same process.
    """
    return Table(
        dataframe_table_name(district_id),
        meta if meta is not None else MetaData(),
        Column("student_id", ID, primary_key=True),
        Column("school_id", ID),
        Column("grade", String(16)),
        Column("type", SmallInteger),
        Column("score", Float),
        Column("performance", String(24)),
        Column("total_minutes", Float, nullable=False),
        Column("active_days", Integer, nullable=False),
        Column("first_active", Date),
        Column("last_active", Date),
        *(Column(app_column(app), Float, nullable=False) for app in apps),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
