"""Wiring of the gateway: the public web app (`gateway web`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, redirect

from gateway import api, keys, repository
from gateway.clients import HttpTransport, ServiceClient, WsgiTransport
from services.config import ConfigError, Settings
from services.runtime import Runtime, ServiceSpec

SERVICES = ("ideas", "matching", "notify")

SPEC = ServiceSpec(
    name="gateway",
    indexes={**keys.INDEXES, **repository.INDEXES},
    outbox_collections=(repository.CITIES, repository.PARTNERSHIPS),
)


def service_clients(settings: Settings, apps: Mapping[str, Flask] | None = None) -> dict[str, ServiceClient]:
    """HTTP to each service's URL; in-process calls for the apps of the embedded mode."""
    clients = {}
    for name in SERVICES:
        url = settings.service_url(name)
        if url:
            clients[name] = ServiceClient(name, HttpTransport(url))
        elif apps and name in apps:
            clients[name] = ServiceClient(name, WsgiTransport(apps[name]))
        else:
            raise ConfigError(f"{name.upper()}_URL is not set: the gateway cannot reach the {name} service")
    return clients


def create_app(settings: Settings | None = None, service_apps: Mapping[str, Flask] | None = None) -> Flask:
    runtime = Runtime(SPEC, settings)
    settings = runtime.settings
    clients = service_clients(settings, service_apps)
    app = runtime.create_app()
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    key_store = keys.KeyStore(runtime.db)
    directory = repository.Directory(runtime.db, on_events=runtime.relay.kick)
    app.extensions["twincity.keys"] = key_store
    app.extensions["twincity.directory"] = directory
    if settings.admin_key:
        key_store.ensure(settings.admin_key, ["admin", "read", "write"], label="TWINCITY_ADMIN_KEY")
    blueprint = api.build(directory, key_store, clients)
    app.register_blueprint(blueprint, url_prefix=api.PREFIX)

    @app.get("/")
    def index() -> Any:
        return redirect("/docs")

    @app.get("/docs")
    def docs() -> Response:
        return Response(api.docs_page(blueprint.merged_spec()), mimetype="text/html")  # type: ignore[attr-defined]

    @app.route("/unsubscribe/<token>", methods=["GET", "POST"])
    def unsubscribe(token: str) -> Response:
        """The link in every e-mail: public (the token is the proof), answered by the notify service."""
        from flask import request

        reply = clients["notify"].request(request.method, f"/unsubscribe/{token}")
        return Response(reply.body, status=reply.status, content_type=reply.headers.get("Content-Type"))

    @app.get("/api")
    def api_root() -> Response:
        return jsonify(name="Twin City Lab API", version="v1", openapi=f"{api.PREFIX}/openapi.json", docs="/docs")

    return app
