"""How often does the gate pass on districts where usage predicts nothing but the prior score
is informative? (The old gate, against a mean-only baseline, passed nearly all of them.)

Simulated districts (tests/simulate.py): 10 apps of pure-noise usage, three of them used more
by strong students, 200, 300 and 1,000 students in 8 schools, 20 seeds each. Prints, per size,
the share that passed and the usage ridge model's MAE improvement over the baseline of prior
score + school + grade. Run: .venv/bin/python bench/gate_noise.py
"""
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from analytics import recommend  # noqa: E402
from tests.simulate import WINDOW, App, district  # noqa: E402

apps = {f"app{i}": App(ability=0.3 if i < 3 else 0.0, school_sd=0.5) for i in range(10)}
out = []
for n in (200, 300, 1000):
    for seed in range(20):
        sim = district(seed, apps, n=n, schools=8)
        result = recommend.recommend(sim.students, sim.assessments, sim.usage, sim.apps, window_days=WINDOW,
                                     year_start=date(2026, 8, 1))
        base = result.scores[recommend.BASELINE].cv_mae
        out.append((n, result.chosen is not None, 1 - result.scores[recommend.USAGE_RIDGE].cv_mae / base))
frame = pd.DataFrame(out, columns=["students", "passed", "improvement"])
print(frame.groupby("students").agg(passed=("passed", "mean"), median=("improvement", "median"),
                                    best=("improvement", "max")).round(4))
