"""How the matching service is put together from its settings."""

from __future__ import annotations

from datetime import timedelta

import matching.bootstrap
from services import store
from tests.conftest import make_settings


def test_the_sync_overlap_setting_reaches_the_engine():
    settings = make_settings("memory://", sync_overlap=3.5)
    try:
        assert matching.bootstrap.bootstrap(settings).engine.sync_overlap == timedelta(seconds=3.5)
    finally:
        store.forget(settings.mongo_url)


def test_the_matching_worker_runs_blas_on_one_thread():
    import threadpoolctl

    settings = make_settings("memory://")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        try:
            matching.bootstrap.bootstrap(settings)  # wiring the worker makes its engine
            assert {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"} == {1}
        finally:
            store.forget(settings.mongo_url)
