"""The database schema: one MetaData with the fixed tables, and the per-district builder."""
from models.schema import (
    SOURCE_TABLES,
    assessments,
    dataframe_table,
    district_app_summary,
    forecasts,
    ingested_files,
    job_runs,
    metadata,
    most_used_software,
    rejected_rows,
    score_averages,
    students,
    usage,
)

__all__ = [
    "SOURCE_TABLES",
    "assessments",
    "dataframe_table",
    "district_app_summary",
    "forecasts",
    "ingested_files",
    "job_runs",
    "metadata",
    "most_used_software",
    "rejected_rows",
    "score_averages",
    "students",
    "usage",
]
