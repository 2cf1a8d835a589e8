"""Loading model files for the predict API from many threads at once: each version is read
once per process, and no two skops loads run side by side (CPython 3.11's `ast` keeps one
recursion counter per interpreter, and skops parses with `ast`, so two loads at once can fail
with "SystemError: AST constructor recursion depth mismatch", more often the busier the
collector is)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from apps.modeling import serving
from apps.modeling.ml import persistence
from apps.modeling.models import ModelVersion

THREADS = 8


@pytest.fixture
def empty_cache():
    serving._cache.clear()
    yield
    serving._cache.clear()


def _version(folder: Path, pk: int) -> ModelVersion:
    """A model version as serving sees it (its id, file and hash); no database needed."""
    rng = np.random.default_rng(pk)
    X = rng.normal(size=(200, 5))
    pipeline = make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=20))
    pipeline.fit(X, (X[:, 0] > 0).astype(int))
    path = folder / f"v{pk}.skops"
    sha = persistence.model_save(pipeline, path)
    return ModelVersion(pk=pk, number=pk, file_path=str(path), file_sha256=sha)


def _all_at_once(targets: list) -> list[BaseException]:
    """Run each target in a thread of its own, released together; the exceptions they raised.
    A thread that has not finished fails the test."""
    start = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def run(target) -> None:
        start.wait()
        try:
            target()
        except BaseException as error:  # every failure is the test's business
            errors.append(error)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a loading thread never finished"
    return errors


def test_one_version_asked_by_many_threads_at_once_is_loaded_once(
    tmp_path, empty_cache, monkeypatch
):
    version = _version(tmp_path, 1)
    loads: list[int] = []
    real_load = persistence.sio.load

    def counted_load(*args, **kwargs):
        loads.append(threading.get_ident())
        time.sleep(0.05)  # a large model: the others ask while it is being read
        return real_load(*args, **kwargs)

    monkeypatch.setattr(persistence.sio, "load", counted_load)
    got: list = []
    errors = _all_at_once([lambda: got.append(serving._model_for(version))] * THREADS)
    assert not errors, errors[:3]
    assert len(loads) == 1, f"{len(loads)} loads of one version"
    assert len(got) == THREADS and all(model is got[0] for model in got)
    # Loaded now: asking again reads the file no more.
    assert serving._model_for(version) is got[0] and len(loads) == 1


def test_no_two_skops_loads_run_at_once_even_of_different_versions(tmp_path, monkeypatch):
    """The `ast` race needs a garbage collection at the wrong instant to show, so it is
    measured here by what prevents it: at most one skops read in flight in the process.

    The threads call `persistence.model_load` itself, not serving's cache, whose own lock
    would serialize them anyway: the process-wide lock is what protects every other caller
    (a reproduction and the prediction of every case load model files too)."""
    versions = [_version(tmp_path, pk) for pk in range(1, THREADS + 1)]
    in_flight, most = [0], [0]
    counting = threading.Lock()

    def watched(real):
        def call(*args, **kwargs):
            with counting:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            try:
                time.sleep(0.02)  # long enough for every other thread to arrive
                return real(*args, **kwargs)
            finally:
                with counting:
                    in_flight[0] -= 1

        return call

    # Both read the file with `ast`: the type listing as much as the load itself.
    monkeypatch.setattr(persistence.sio, "load", watched(persistence.sio.load))
    monkeypatch.setattr(
        persistence.sio, "get_untrusted_types", watched(persistence.sio.get_untrusted_types)
    )
    got: dict[int, object] = {}

    def load(version: ModelVersion) -> None:
        got[version.pk] = persistence.model_load(Path(version.file_path), version.file_sha256)

    errors = _all_at_once([lambda v=v: load(v) for v in versions])
    assert not errors, errors[:3]
    assert most[0] == 1, f"{most[0]} skops reads ran at once"
    assert sorted(got) == [v.pk for v in versions]


def test_an_untrusted_file_is_still_refused_and_not_kept(tmp_path, empty_cache):
    version = _version(tmp_path, 1)
    version.file_sha256 = "0" * 64
    with pytest.raises(persistence.UntrustedModelFile):
        serving._model_for(version)
    assert not serving._cache
