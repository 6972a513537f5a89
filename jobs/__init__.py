"""The nightly jobs, one module each (`fetch`, `ingest`, `dailypull`, `most_used`,
`recommendations`; `rollup` keeps ingest's usage rollups), what every job receives and
returns (`job`), and the order a cycle runs them: JOBS below, the only place that order is
defined. Imports `readers/`, `analytics/`, `storage/`, `config/`, `models/`; never `runner/` or above.
"""
from jobs import dailypull, fetch, ingest, most_used, recommendations

JOBS = {
    "fetch": fetch.run,
    "ingest": ingest.run,
    "dailypull": dailypull.run,
    "most_used": most_used.run,
    "recommendations": recommendations.run,
}


def jobs_for(district, names: list[str]) -> list[str]:
    """The jobs of `names` a district runs: `fetch` only where it has `sources:`."""
    return [n for n in names if n != "fetch" or district.sources]
