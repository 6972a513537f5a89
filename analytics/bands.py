"""Performance bands from scores, with per-district lower bounds."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

BAND_ORDER = ("excellent", "satisfactory", "needs improvement", "unsatisfactory")


def performance_band(scores: pd.Series, bounds: Mapping[str, float]) -> pd.Series:
    """Band label for each score.

    Input: `scores`, points on 0..100 (float; NaN allowed). `bounds`: band name -> inclusive
    lower bound, e.g. {"excellent": 88, "satisfactory": 69, "needs improvement": 55,
    "unsatisfactory": 0}; the highest bound's band runs up to and including 100.
    Output: a `string` Series on the same index; <NA> for a missing score or one outside
    0..100 (bad input is never banded).
    """
    ordered = sorted(bounds.items(), key=lambda item: item[1])  # lowest bound first
    edges = [low for _, low in ordered] + [np.inf]
    labels = [name for name, _ in ordered]
    values = pd.to_numeric(scores, errors="coerce").astype("float64")
    banded = pd.cut(values, bins=edges, right=False, labels=labels).astype("string")
    valid = values.between(0, 100)
    return banded.where(valid, pd.NA)
