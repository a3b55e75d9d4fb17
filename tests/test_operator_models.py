"""The model store: fitted models survive a restart, versioned, and bytes the operator did not
write are never unpickled. The tick tests run on a frozen clock with the cycle tests' fakes."""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_operator_cycle import FakeCluster, body, failing_fit, inline_pool, run_ticks

from foreseer.lab.waiting import until
from foreseer.operator.cycle import roll_back
from foreseer.operator.fitting import Fitter
from foreseer.operator.forecasting import Fitted, LiveError, Recipe, worse_than_before
from foreseer.operator.modelstore import ModelRefused, ModelStore
from foreseer.operator.runtime import PolicyMemory, Runtime
from foreseer.operator.settings import FittingSettings, Settings
from foreseer.predictors.forecasts import Forecaster
from foreseer.predictors.naive import Naive
from foreseer.predictors.series import Series
from harness.fakes import FakeSource, FrozenClock

KEY = b"k" * 32
RECIPE = Recipe(models=None, quantile=0.9, step=60.0, history=86400.0, horizon=5)
HISTORY = Series(0.0, 60.0, 100 + 10 * np.sin(np.arange(300) / 10))
TAMPERED = []


def fitted(at: float = 1.0) -> Fitted:
    return Fitted(Naive().fit(HISTORY), RECIPE, at, 300, 0.01)


class Payload:
    """What an attacker would store: unpickling it runs code."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (TAMPERED.append, ("ran",))


def test_a_stored_model_comes_back_with_its_version_and_forecasts_the_same(
        tmp_path: Path) -> None:
    store = ModelStore(tmp_path, KEY)
    model = fitted()
    assert store.save("uid-1", "rps", model) == 1
    back = store.load("uid-1", "rps", RECIPE)
    assert back is not None and back.version == 1
    assert back.fitted.fitted_at == model.fitted_at and back.fitted.recipe == RECIPE
    ahead = [f.mean for f in (model.model.predict(5, (0.9,)), back.fitted.model.predict(
        5, (0.9,)))]
    assert np.array_equal(ahead[0], ahead[1])


def test_each_save_is_a_new_version_and_only_the_newest_two_are_kept(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, KEY)
    versions = [store.save("uid-1", "rps", fitted(at)) for at in (1.0, 2.0, 3.0)]
    assert versions == [1, 2, 3]
    files = sorted(p.name for p in tmp_path.rglob("*.model"))
    assert files == ["v2.model", "v3.model"]
    back = store.load("uid-1", "rps", RECIPE)
    assert back is not None and (back.version, back.fitted.fitted_at) == (3, 3.0)


def test_a_model_of_another_recipe_is_not_used(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, KEY)
    store.save("uid-1", "rps", fitted())
    other = Recipe(models=None, quantile=0.9, step=60.0, history=86400.0, horizon=10)
    assert store.load("uid-1", "rps", other) is None


def test_tampered_bytes_are_refused_and_never_unpickled(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, KEY)
    store.save("uid-1", "rps", fitted())
    (path,) = tmp_path.rglob("v1.model")
    header, signature, _ = path.read_bytes().split(b"\n", 2)
    path.write_bytes(header + b"\n" + signature + b"\n" + pickle.dumps(Payload()))
    with pytest.raises(ModelRefused, match="HMAC"):
        store.read(path)
    assert store.load("uid-1", "rps", RECIPE) is None
    assert TAMPERED == []


def test_a_store_with_another_key_cannot_read_the_models(tmp_path: Path) -> None:
    ModelStore(tmp_path, KEY).save("uid-1", "rps", fitted())
    assert ModelStore(tmp_path, b"x" * 32).load("uid-1", "rps", RECIPE) is None


def test_a_newer_version_that_fails_its_checks_falls_back_to_the_one_before(
        tmp_path: Path) -> None:
    store = ModelStore(tmp_path, KEY)
    store.save("uid-1", "rps", fitted(1.0))
    store.save("uid-1", "rps", fitted(2.0))
    (newest,) = tmp_path.rglob("v2.model")
    newest.write_bytes(newest.read_bytes()[:-10])  # truncated
    back = store.load("uid-1", "rps", RECIPE)
    assert back is not None and back.version == 1


def test_a_model_whose_classes_this_foreseer_lacks_is_refused_not_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A model pickled by another version of foreseer: its class's module is gone here.
    vanished = types.ModuleType("vanished_models")

    class Gone(Naive):
        pass

    Gone.__module__, Gone.__qualname__ = "vanished_models", "Gone"
    vanished.Gone = Gone  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vanished_models", vanished)
    store = ModelStore(tmp_path, KEY)
    store.save("uid-1", "rps", Fitted(Gone().fit(HISTORY), RECIPE, 0.0, 300, 0.01))
    monkeypatch.delitem(sys.modules, "vanished_models")
    assert store.load("uid-1", "rps", RECIPE) is None
    assert store.load_version("uid-1", "rps", RECIPE, 1) is None


def test_a_model_stored_before_a_field_was_added_is_refused_not_raised(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, KEY)
    old = fitted()
    object.__delattr__(old, "seconds")  # as a Fitted of a version before ``seconds`` unpickles
    store.save("uid-1", "rps", old)
    assert store.load("uid-1", "rps", RECIPE) is None
    assert store.load_version("uid-1", "rps", RECIPE, 1) is None


def test_a_hostile_uid_or_metric_stays_inside_the_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store", KEY)
    store.save("../../outside", "../../rps", fitted())
    assert not (tmp_path / "outside").exists()
    assert all(tmp_path / "store" in p.parents for p in tmp_path.rglob("*.model"))


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ModelStore(tmp_path, b"short")


def test_a_store_without_a_key_file_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="--model-key-file"):
        FittingSettings(model_dir="/var/lib/foreseer")


def quick_fit(series: Series, recipe: Recipe) -> tuple[Forecaster, float]:
    return Naive().fit(series), 0.01


def runtime_with(store: ModelStore, clock: FrozenClock, cluster: FakeCluster,
                 fit: Any = quick_fit) -> Runtime:
    source = FakeSource(300.0)
    source.history_values = np.full(200, 300.0)
    return Runtime(settings=Settings(), prometheus=source,  # type: ignore[arg-type]
                   cluster=cluster,  # type: ignore[arg-type]
                   fitter=Fitter(FittingSettings(), pool=inline_pool, fit=fit), clock=clock,
                   models=store)


async def landed(runtime: Runtime) -> None:
    await until(lambda: len(runtime.fitter) > 0, timeout=2.0, what="the fit")


async def test_a_restarted_operator_forecasts_at_its_first_tick_with_the_stored_model(
        tmp_path: Path) -> None:
    clock, cluster = FrozenClock(), FakeCluster()
    store = ModelStore(tmp_path, KEY)
    policy = body()
    first = runtime_with(store, clock, cluster)
    await run_ticks(first, clock, policy, 1)
    await landed(first)
    await run_ticks(first, clock, policy, 1)  # the next tick stores what landed
    assert sorted(p.name for p in tmp_path.rglob("*.model")) == ["v1.model"]
    first.fitter.shutdown()

    # A new process: no model in memory, and a fit that would fail if it were needed.
    cluster.status_writes.clear()
    second = runtime_with(store, clock, cluster, fit=failing_fit)
    await run_ticks(second, clock, policy, 1)
    forecast = cluster.status_writes[-1]["forecast"]
    assert forecast["model"] and forecast["modelVersion"] == 1
    assert second.fitter.failure(("shop", "web", "rps")) is None  # nothing was refitted
    second.fitter.shutdown()


async def test_a_model_the_store_cannot_write_is_still_used_and_not_retried_every_tick(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock, cluster = FrozenClock(), FakeCluster()
    blocked = tmp_path / "read-only"
    blocked.write_text("a file where the store's directory should be")
    runtime = runtime_with(ModelStore(blocked, KEY), clock, cluster)
    await run_ticks(runtime, clock, body(), 1)
    await landed(runtime)
    await run_ticks(runtime, clock, body(), 3)
    forecast = cluster.status_writes[-1]["forecast"]
    assert forecast["model"] and forecast["modelVersion"] is None
    assert [r.message for r in caplog.records].count(
        next(r.message for r in caplog.records if "could not store" in r.message)) == 1
    runtime.fitter.shutdown()
    assert os.path.isfile(blocked)


def scored(model: Fitted, ratio: float, samples: int = 40) -> LiveError:
    """A live error of ``model`` whose MASE is ``ratio``."""
    errors = LiveError()
    errors.follow(model)
    errors.errors.extend((ratio, 1.0) for _ in range(samples))
    return errors


@pytest.mark.parametrize(("before", "now", "samples", "worse"), [
    (0.5, 0.7, 40, True), (0.5, 0.6, 40, False), (0.5, 0.9, 10, False), (None, 2.0, 40, False)])
def test_a_new_model_is_worse_only_when_clearly_so_on_enough_live_forecasts(
        before: float | None, now: float, samples: int, worse: bool) -> None:
    assert worse_than_before(before, scored(fitted(), now, samples)) is worse


async def test_a_refit_that_scores_worse_live_is_rolled_back_to_the_version_before(
        tmp_path: Path) -> None:
    store = ModelStore(tmp_path, KEY)
    fitter = Fitter(FittingSettings(), pool=inline_pool, fit=quick_fit)
    key = ("shop", "web", "rps")
    store.save("u1", "rps", fitted(1.0))
    new = dataclasses.replace(fitted(2.0), version=store.save("u1", "rps", fitted(2.0)))
    memory = PolicyMemory(replaced={"rps": (1, 0.5)})
    kept = await roll_back(store, fitter, key, "u1", new, scored(new, 0.55), memory, 99.0)
    assert kept is None and "rps" in memory.replaced  # not clearly worse: kept, still watched
    back = await roll_back(store, fitter, key, "u1", new, scored(new, 0.9), memory, 99.0)
    assert back is not None and back.version == 1 and back.fitted_at == 99.0
    held = fitter.get(key)
    assert held is not None and held.version == 1
    assert "rps" not in memory.replaced  # rolled back once, not again
    fitter.shutdown()
