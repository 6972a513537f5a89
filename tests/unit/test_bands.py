import numpy as np
import pandas as pd
import pytest

from analytics.bands import performance_band

DEFAULT = {"excellent": 88, "satisfactory": 69, "needs improvement": 55, "unsatisfactory": 0}
OVERRIDE = {"excellent": 90, "satisfactory": 70, "needs improvement": 60, "unsatisfactory": 0}


@pytest.mark.parametrize(
    "score, band",
    [
        (0, "unsatisfactory"),
        (54.9, "unsatisfactory"),
        (55, "needs improvement"),
        (68.5, "needs improvement"),
        (68.99, "needs improvement"),
        (69, "satisfactory"),
        (87.99, "satisfactory"),
        (88, "excellent"),
        (100, "excellent"),
    ],
)
def test_default_bounds_lower_bound_inclusive(score, band):
    assert performance_band(pd.Series([score]), DEFAULT).iloc[0] == band


@pytest.mark.parametrize(
    "score, band",
    [
        (59.99, "unsatisfactory"),
        (60, "needs improvement"),
        (69.99, "needs improvement"),
        (70, "satisfactory"),
        (88, "satisfactory"),
        (89.99, "satisfactory"),
        (90, "excellent"),
        (100, "excellent"),
    ],
)
def test_overridden_bounds(score, band):
    assert performance_band(pd.Series([score]), OVERRIDE).iloc[0] == band


@pytest.mark.parametrize("score", [-1, -0.01, 100.5, np.nan, np.inf])
def test_invalid_scores_are_never_banded(score):
    assert performance_band(pd.Series([score]), DEFAULT).isna().all()


def test_keeps_index_and_does_not_mutate_input():
    scores = pd.Series([90.0, None, 10.0], index=["a", "b", "c"])
    before = scores.copy()
    bands = performance_band(scores, DEFAULT)
    pd.testing.assert_series_equal(
        bands, pd.Series(["excellent", pd.NA, "unsatisfactory"], index=["a", "b", "c"], dtype="string")
    )
    pd.testing.assert_series_equal(scores, before)
