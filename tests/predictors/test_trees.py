"""Trees: a fitted boosting regressor's trees as flat arrays, predicting what it predicts."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from foreseer.predictors.boosting import Boosting
from foreseer.predictors.series import Series
from foreseer.predictors.trees import Trees


def training_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 12))
    x[rng.random(x.shape) < 0.05] = np.nan  # the lag model's features have gaps too
    signal = 2 * np.nan_to_num(x[:, 0]) + np.sin(np.nan_to_num(x[:, 1])) * np.nan_to_num(x[:, 2])
    return x, signal + rng.normal(size=x.shape[0])


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "quantile", "quantile": 0.9},
        {"loss": "quantile", "quantile": 0.5, "max_leaf_nodes": 31},
        {"loss": "squared_error", "max_iter": 7},
    ],
)
def test_trees_predict_what_the_fitted_regressor_predicts(options: dict[str, object]) -> None:
    x, y = training_data()
    settings = {"max_iter": 40, "random_state": 0, **options}
    regressor = HistGradientBoostingRegressor(**settings).fit(x, y)  # type: ignore[arg-type]
    unseen, _ = training_data(seed=1)
    unseen[:5] = np.nan  # rows of nothing but missing values follow the missing branches

    assert np.allclose(
        Trees.of(regressor).predict(unseen), regressor.predict(unseen), rtol=1e-12, atol=1e-12
    )


def test_trees_hold_a_third_of_the_bytes_the_regressor_keeps_per_node() -> None:
    x, y = training_data()
    regressor = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(x, y)
    nodes = sum(iteration[0].nodes.size for iteration in regressor._predictors)
    record = regressor._predictors[0][0].nodes.dtype.itemsize

    assert Trees.of(regressor).nbytes <= nodes * record / 2.5


def test_a_loss_whose_prediction_is_not_its_raw_score_is_refused() -> None:
    x, y = training_data()
    regressor = HistGradientBoostingRegressor(loss="poisson", max_iter=5).fit(x, np.abs(y))

    with pytest.raises(ValueError, match="identity-link losses only, not 'poisson'"):
        Trees.of(regressor)


def test_categorical_splits_are_refused() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(500, 2)).astype(np.float64)
    y = np.where(x[:, 0] == 2, 5.0, 0.0) + rng.normal(size=500)
    regressor = HistGradientBoostingRegressor(max_iter=5, categorical_features=[True, False]).fit(
        x, y
    )

    with pytest.raises(ValueError, match="numeric splits only"):
        Trees.of(regressor)


MOVE_ON_AND_PREDICT = """
import pickle, sys
import numpy as np
from foreseer.predictors.series import Series
model = pickle.loads(open(sys.argv[1], "rb").read())
newer = np.concatenate([model.history_.raw, model.history_.raw[-30:]])
model.update(Series(model.history_.start, model.history_.step, newer))
forecast = model.predict(12, (0.5, 0.9))
assert np.isfinite(forecast.quantile(0.9)).all()
print(sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy")))
"""


def test_a_fitted_boosting_model_moves_on_and_predicts_without_loading_scikit_learn_or_scipy(
    tmp_path: Path,
) -> None:
    # The operator unpickles fitted models from its fitting processes: scikit-learn and
    # scipy would cost it over 100 MB, so its process must never import them.
    t = np.arange(3 * 1440)
    values = 200 + 80 * np.sin(2 * np.pi * t / 1440) + np.random.default_rng(0).normal(size=t.size)
    model = Boosting().fit(Series(1_700_006_400.0, 60.0, values))
    path = tmp_path / "model.pickle"
    path.write_bytes(pickle.dumps(model))

    done = subprocess.run(
        [sys.executable, "-c", MOVE_ON_AND_PREDICT, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
