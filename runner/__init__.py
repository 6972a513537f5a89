"""Running a cycle: which districts and jobs (`cycle`), one job run and recorded in
`job_runs` (`jobrun`), claims and fleet-wide locks shared by every instance (`leases`), and
where the jobs run: here, a local process pool or a Dask cluster (`executors`).
Imports `jobs/`, `storage/`, `config/`, `models/`; never `service/` or `lifecycle/`.
"""
