"""How the matching service is put together from its settings."""

from __future__ import annotations

from datetime import timedelta

import matching.app
from services import store
from services.runtime import Runtime
from tests.conftest import make_settings


def test_the_sync_overlap_setting_reaches_the_engine():
    settings = make_settings("memory://", sync_overlap=3.5)
    runtime = Runtime(matching.app.SPEC, settings)
    try:
        assert runtime.handlers
        assert runtime.extras["engine"].sync_overlap == timedelta(seconds=3.5)
    finally:
        store.forget(settings.mongo_url)
