"""How much does cross-validation flatter a model on districts where usage predicts nothing?

Pure-noise districts of 200 and 400 students, 10 seeds x 2 fold shuffles each; prints the
ridge model's MAE improvement over the mean baseline. Run: .venv/bin/python bench/gate_noise.py
"""
import sys; sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import numpy as np, pandas as pd
from analytics import recommend
apps = [f"a{i}" for i in range(10)]
out = []
for n in (200, 400):
  for seed in range(10):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({**{recommend.win(a): rng.exponential(30, n) * (rng.random(n) < 0.4) for a in apps},
                      **{recommend.ytd(a): rng.exponential(120, n) for a in apps},
                      "trend": rng.normal(0, 5, n), "active_days": rng.integers(0, 60, n).astype(float),
                      "prior_average": np.nan})
    y = pd.Series(rng.normal(65, 12, n))
    models = {k: v for k, v in recommend.candidate_models(0).items() if k in ("dummy_mean", "ridge")}
    for rs in range(2):
      sc = recommend.cross_validate(X, y, None, models, random_state=seed * 10 + rs)
      out.append((n, 1 - sc["ridge"].cv_mae / sc["dummy_mean"].cv_mae))
d = pd.DataFrame(out, columns=["n", "improvement"])
print(d.groupby("n")["improvement"].describe(percentiles=[0.5, 0.95, 0.99]).round(4))
