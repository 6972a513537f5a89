"""The nightly jobs, one module each (`ingest`, `dailypull`, `most_used`, `recommendations`;
`rollup` keeps ingest's usage rollups), what every job receives and returns (`job`), and
the order a cycle runs them: JOBS below, the only place that order is defined.
Imports `readers/`, `analytics/`, `storage/`, `config/`, `models/`; never `runner/` or above.
"""
from jobs import dailypull, ingest, most_used, recommendations

JOBS = {
    "ingest": ingest.run,
    "dailypull": dailypull.run,
    "most_used": most_used.run,
    "recommendations": recommendations.run,
}
