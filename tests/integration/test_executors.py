"""The cycle on a process pool and on a Dask cluster (a LocalCluster on 127.0.0.1): the same
tables as a run here, heavy jobs only on workers offering `heavy`, a worker killed mid-job
survived, a task that keeps killing its workers recorded as failed for its district only."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from storage import database
from storage.frames import read_frame
from runner import executors
from runner.cycle import run_cycle
from runner.executors import Executor
from models import (
    app_effects, district_app_summary, job_runs, model_runs, most_used_software, recommendation_reasons, recommendations,
)
from tests.integration.test_recommendations import AS_OF, JOBS, district_files, settings

pytestmark = pytest.mark.slow

distributed = pytest.importorskip("distributed", reason="Dask is an optional extra: pip install -r requirements-dask.txt")

NOW = datetime(2026, 11, 22, 2, tzinfo=timezone.utc)
DISTRICTS = {"ann": 40, "bob": 240, "cat": 40, "dan": 30}  # bob: enough type 1 students (200) for a model
OUTPUTS = (most_used_software, district_app_summary, recommendations, recommendation_reasons, app_effects, model_runs)


@pytest.fixture(scope="module")
def cluster():
    """Two workers, and a third that alone offers the `heavy` resource; one thread each."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", silence_logs=40) as cluster:
        spec = cluster.new_spec
        cluster.worker_spec["heavy"] = {**spec, "options": {**spec["options"], "resources": {"heavy": 1}}}
        cluster.scale(len(cluster.worker_spec))
        with distributed.Client(cluster) as client:
            client.wait_for_workers(3, timeout=600)  # a hang guard: workers start slowly on a busy machine
            yield cluster


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("executors") / "landing"
    for seed, (district, students) in enumerate(DISTRICTS.items()):
        district_files(root, district, students, planted=True, seed=seed)
    return root


@pytest.fixture(params=["sqlite", "postgresql"])
def make_url(request, tmp_path):
    """A factory of empty databases, on SQLite files or in fresh PostgreSQL schemas."""
    if request.param == "postgresql":
        return request.getfixturevalue("make_pg_url")
    names = iter(range(100))
    return lambda: f"sqlite:///{tmp_path / f'db{next(names)}.sqlite'}"


def cycle(url, landing, executor=None, districts=tuple(DISTRICTS)):
    s = settings(*districts)
    engine = database.connect(url)
    try:
        return run_cycle(engine, s, districts=list(s.districts), jobs=JOBS, as_of=AS_OF, landing_dir=landing,
                         now=NOW, executor=executor)
    finally:
        engine.dispose()


def tables(url, districts=tuple(DISTRICTS)) -> dict[str, pd.DataFrame]:
    """Every output table (the districts' dataframe_ tables too), in a stable order."""
    engine = sa.create_engine(url)
    frames = {}
    with engine.connect() as conn:
        for table in [*OUTPUTS, *(sa.Table(f"dataframe_{d}", sa.MetaData(), autoload_with=conn) for d in districts)]:
            keys = [c for c in table.primary_key.columns] or list(table.columns)
            frames[table.name] = read_frame(conn, select(table).order_by(*keys)).reset_index(drop=True)
    engine.dispose()
    return frames


def runs(url) -> pd.DataFrame:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        frame = read_frame(conn, select(job_runs.c.job, job_runs.c.district_id, job_runs.c.status, job_runs.c.message)
                           .order_by(job_runs.c.run_id))
    engine.dispose()
    return frame


def heavy_workers(cluster) -> set[str]:
    with distributed.Client(cluster) as client:
        return {address for address, w in client.scheduler_info(n_workers=-1)["workers"].items()
                if w["resources"].get("heavy")}


STAMPS = ("computed_at", "updated_at", "trained_at")  # when each row was written: a later run's are later


def assert_same_tables(url, reference):
    for name, frame in tables(url).items():
        stamps = [c for c in STAMPS if c in frame.columns]
        pd.testing.assert_frame_equal(frame.drop(columns=stamps), reference[name].drop(columns=stamps), obj=name)


def test_a_pool_and_a_dask_cluster_give_the_tables_of_a_serial_run(cluster, landing, make_url):
    """Both on PostgreSQL, Dask on SQLite too; and recommendations only on the heavy worker."""
    serial = make_url()
    assert not cycle(serial, landing).failed
    reference = tables(serial)
    assert len(reference["recommendations"]) and len(reference["model_runs"])

    if "postgresql" in serial:  # (the pool on SQLite: tests/cli/test_executors.py)
        pooled = make_url()
        result = cycle(pooled, landing, Executor("local", workers=2))
        assert [(r.job, r.district_id, r.result.status) for r in result.records] == [
            (job, d, "succeeded") for d in DISTRICTS for job in JOBS]
        assert_same_tables(pooled, reference)
        assert run_keys(pooled) == run_keys(serial)

    on_dask = make_url()
    result = cycle(on_dask, landing, Executor("dask", scheduler=cluster.scheduler_address))
    assert [(r.job, r.district_id, r.result.status) for r in result.records] == [
        (job, d, "succeeded") for d in DISTRICTS for job in JOBS]
    assert_same_tables(on_dask, reference)
    # the heavy resource is respected: every recommendations task ran on the heavy worker
    assert {r.worker for r in result.records if r.job == "recommendations"} <= heavy_workers(cluster)
    assert all(r.worker.startswith("tcp://127.0.0.1:") for r in result.records)
    # the same run records as a run here: one per job and district
    assert run_keys(on_dask) == run_keys(serial)


def run_keys(url) -> list[tuple]:
    return sorted(runs(url)[["job", "district_id", "status"]].itertuples(index=False, name=None))


@pytest.fixture
def crash_once_at(cluster):
    """Each worker kills itself (SIGKILL) the first time it reaches the named checkpoint; its
    nanny restarts it without the setting."""
    client = distributed.Client(cluster)

    def arm(name: str) -> None:
        client.run(lambda: os.environ.__setitem__("ANALYTICS_CRASH_AT", name))

    yield arm
    client.run(lambda: os.environ.pop("ANALYTICS_CRASH_AT", None))
    client.close()


def test_a_worker_killed_mid_publish_is_survived(cluster, landing, sqlite_url, tmp_path, crash_once_at):
    serial = f"sqlite:///{tmp_path / 'serial.sqlite'}"
    cycle(serial, landing, districts=("ann", "cat"))
    crash_once_at("dailypull.written")  # inside dailypull's publishing transaction
    result = cycle(sqlite_url, landing, Executor("dask", scheduler=cluster.scheduler_address), districts=("ann", "cat"))
    assert not result.failed
    assert {r.result.status for r in result.records} == {"succeeded"}
    died = runs(sqlite_url).query("status == 'failed'")
    assert len(died) >= 1 and set(died["job"]) == {"dailypull"}, died
    assert died["message"].str.startswith(executors.DIED).all()
    reference = tables(serial, ("ann", "cat"))
    for name, frame in tables(sqlite_url, ("ann", "cat")).items():
        stamps = [c for c in STAMPS if c in frame.columns]
        pd.testing.assert_frame_equal(frame.drop(columns=stamps), reference[name].drop(columns=stamps), obj=name)


def test_a_job_whose_worker_dies_with_no_retries_left_is_recorded_failed(cluster, landing, pg_url):
    """The heavy worker dies once, inside recommendations' publishing transaction (holding the
    fleet lock); with no retries left for killed workers, the coordinator records the tasks it
    had (recommendations, and whatever else was on it) as failed, naming KilledWorker, and
    skips their districts' later jobs; every other job runs, and the cycle ends."""
    client = distributed.Client(cluster)
    allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
    client.run(lambda: os.environ.__setitem__("ANALYTICS_CRASH_AT", "recommendations.written"),
               workers=list(heavy_workers(cluster)))
    try:
        result = cycle(pg_url, landing, Executor("dask", scheduler=cluster.scheduler_address))
    finally:
        client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", allowed))
        client.close()
    assert result.failed
    assert len(result.records) == len(JOBS) * len(DISTRICTS)
    for district in DISTRICTS:  # each: jobs done, then maybe the one killed and the rest skipped
        statuses = [r.result.status for r in result.records if r.district_id == district]
        done = statuses.index("failed") if "failed" in statuses else len(JOBS)
        assert statuses == ["succeeded"] * done + (["failed"] + ["skipped"] * (len(JOBS) - done - 1))[:len(JOBS) - done]
    killed = {(r.job, r.district_id) for r in result.records if r.result.status == "failed"}
    assert any(job == "recommendations" for job, _ in killed)
    failed = runs(pg_url).query("status == 'failed'")
    gave_up = failed["message"].str.contains(f"{executors.DIED} every time it ran \\(KilledWorker")
    assert set(failed[gave_up][["job", "district_id"]].itertuples(index=False, name=None)) == killed
    # a task Dask ran again (one that had not started on the dead worker) has its attempt closed
    assert (failed[~gave_up]["message"] == f"{executors.DIED}; the job was run again").all(), failed


def test_a_pool_gives_up_on_a_job_whose_process_keeps_dying(landing, sqlite_url, monkeypatch):
    monkeypatch.setenv("ANALYTICS_CRASH_AT", "dailypull.written")  # the pool's processes inherit it
    result = cycle(sqlite_url, landing, Executor("local", workers=2), districts=("dan",))
    assert [(r.job, r.result.status) for r in result.records] == [
        ("ingest", "succeeded"), ("dailypull", "failed"), ("most_used", "skipped"), ("recommendations", "skipped")]
    assert result.records[1].result.message == (
        f"{executors.DIED}; gave up after {executors.TASK_RETRIES + 1} attempts")
    recorded = runs(sqlite_url)
    assert recorded.query("job == 'dailypull'")["status"].tolist() == ["failed"] * (executors.TASK_RETRIES + 1)
    assert recorded.query("job == 'most_used'")["message"].tolist() == ["not run: dailypull failed"]


def test_a_cluster_without_a_heavy_worker_is_refused_before_anything_runs(landing, sqlite_url, monkeypatch):
    monkeypatch.setattr(executors, "DASK_WAIT_SECONDS", 1.0)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0") as light:
        with pytest.raises(executors.ExecutorUnavailable, match="no worker offering the 'heavy' resource") as info:
            cycle(sqlite_url, landing, Executor("dask", scheduler=light.scheduler_address), districts=("dan",))
    assert info.value.code == 1 and "--resources heavy=1" in str(info.value)
    assert runs(sqlite_url).empty


@pytest.mark.parametrize("flags, env, message", [
    (dict(kind="dask"), {}, "--executor dask needs --scheduler tcp://HOST:PORT"),
    (dict(kind="dask", scheduler="http://x:1"), {}, "must be an address like tcp://HOST:PORT; got 'http://x:1'"),
    (dict(kind="dask", scheduler="tcp://x:1", workers=2), {}, "--workers goes with --executor local"),
    (dict(scheduler="tcp://x:1"), {}, "--scheduler goes with --executor dask"),
    (dict(), {"ANALYTICS_EXECUTOR": "spark"}, "must be one of local, dask; got 'spark'"),
    (dict(), {"ANALYTICS_WORKERS": "two"}, "must be a whole number >= 1; got 'two'"),
])
def test_a_bad_executor_setting_is_a_usage_error(flags, env, message):
    with pytest.raises(executors.UsageError) as info:
        executors.choose(**flags, environ=env)
    assert message in str(info.value)


def test_the_executor_comes_from_the_flags_then_the_environment():
    env = {"ANALYTICS_EXECUTOR": "dask", "ANALYTICS_SCHEDULER": "tcp://10.0.0.5:8786", "ANALYTICS_WORKERS": "3"}
    assert executors.choose(environ=env) == Executor("dask", scheduler="tcp://10.0.0.5:8786")
    assert executors.choose("local", environ=env) == Executor("local", workers=3)
    assert executors.choose("local", 2, environ=env) == Executor("local", workers=2)
    assert executors.choose(environ={}) == Executor() and not Executor().parallel
