"""Wiring of the gateway: the public web app (`gateway web`)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from gateway import keys
from services.config import Settings
from services.runtime import Runtime, ServiceSpec

SPEC = ServiceSpec(name="gateway", indexes=keys.INDEXES)


def create_app(settings: Settings | None = None) -> Flask:
    runtime = Runtime(SPEC, settings)
    app = runtime.create_app()
    key_store = keys.KeyStore(runtime.db)
    app.extensions["twincity.keys"] = key_store
    if runtime.settings.admin_key:
        key_store.ensure(runtime.settings.admin_key, ["admin", "read", "write"], label="TWINCITY_ADMIN_KEY")

    @app.get("/")
    def index() -> Any:
        return jsonify(
            name="Twin City Lab",
            health="/healthz",
            readiness="/readyz",
            metrics="/metrics",
        )

    return app
