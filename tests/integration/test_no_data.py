"""A missing or mistyped LANDING_DIR, or a district without a folder, is said loudly: a
warning in the summary, and `no data yet` in --status, never a quiet success."""
from __future__ import annotations

from datetime import date

import config
from service import report
from service import status
from runner.cycle import run_cycle
from tests.integration.test_cycle import FILES, write

AS_OF = date(2026, 11, 22)
SETTINGS = config.parse({"districts": [{"id": "alpha", "apps": ["ixl", "lexia"]},
                                       {"id": "beta", "apps": ["ixl"]}]})


def test_a_missing_landing_dir_is_a_warning_in_the_summary(engine, tmp_path):
    cycle = run_cycle(engine, SETTINGS, districts=list(SETTINGS.districts), jobs=["ingest", "dailypull"],
                      as_of=AS_OF, landing_dir=tmp_path / "landnig")
    summary = report.cycle_summary(cycle)
    assert f"WARNING: LANDING_DIR {tmp_path / 'landnig'} does not exist: no file was read for any district" in summary
    data = status.collect(engine, SETTINGS, today=AS_OF)
    assert [(d["district_id"], d["state"]) for d in data["districts"]] == [("alpha", "no data yet"),
                                                                          ("beta", "no data yet")]
    assert "no data yet" in status.render(data)


def test_a_district_without_a_folder_is_named(engine, tmp_path):
    write(tmp_path / "landing", FILES, mtime=1_700_000_000)  # alpha's folder only
    cycle = run_cycle(engine, SETTINGS, districts=list(SETTINGS.districts), jobs=["ingest", "dailypull"],
                      as_of=AS_OF, landing_dir=tmp_path / "landing")
    summary = report.cycle_summary(cycle)
    assert f"WARNING: beta: no folder {tmp_path / 'landing' / 'beta'}: nothing to ingest" in summary
    assert "alpha: no folder" not in summary
    states = {d["district_id"]: d["state"] for d in status.collect(engine, SETTINGS, today=AS_OF)["districts"]}
    assert states == {"alpha": "receiving data", "beta": "no data yet"}


def test_no_enabled_district_is_a_warning(engine, tmp_path):
    cycle = run_cycle(engine, SETTINGS, districts=[], jobs=["ingest"], as_of=AS_OF, landing_dir=tmp_path)
    assert "WARNING: no district to run: districts.yaml enables none" in report.cycle_summary(cycle)
