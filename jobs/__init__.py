"""The nightly jobs, in the order a cycle runs them (the only place that order is defined)."""
from jobs import dailypull, ingest, most_used, recommendations

JOBS = {
    "ingest": ingest.run,
    "dailypull": dailypull.run,
    "most_used": most_used.run,
    "recommendations": recommendations.run,
}
