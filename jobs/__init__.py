"""The nightly jobs, in the order a cycle runs them (the only place that order is defined)."""
from jobs import dailypull, ingest

JOBS = {
    "ingest": ingest.run,
    "dailypull": dailypull.run,
}
