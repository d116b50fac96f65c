"""Wiring of the gateway: the public web app (`gateway web`)."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Flask, Response, g, jsonify, request

from gateway import api, apidocs, audit, keys, pages, ratelimit, repository, signin
from gateway.clients import InvitationMailer, ServiceClient, WsgiTransport, transport_for
from gateway.pages.web import security_headers
from gateway.themes import DEFAULT_THEMES
from services.config import ConfigError, Settings
from services.runtime import Runtime, ServiceSpec
from services.web import ChunkedBodyLimit

SERVICES = ("ideas", "matching", "notify")

SPEC = ServiceSpec(
    name="gateway",
    indexes={**keys.INDEXES, **repository.INDEXES, **audit.INDEXES},
    outbox_collections=(repository.CITIES, repository.PARTNERSHIPS),
)


def service_clients(settings: Settings, apps: Mapping[str, Flask] | None = None) -> dict[str, ServiceClient]:
    """HTTP to each service's URL; in-process calls for the apps of the embedded mode."""
    clients = {}
    for name in SERVICES:
        url = settings.service_url(name)
        if url:
            clients[name] = ServiceClient(name, transport_for(url))
        elif apps and name in apps:
            clients[name] = ServiceClient(name, WsgiTransport(apps[name]))
        else:
            raise ConfigError(f"{name.upper()}_URL is not set: the gateway cannot reach the {name} service")
    return clients


def _remote_address() -> str:
    return request.remote_addr or "127.0.0.1"


def _rate_limits(settings: Settings, key_store: keys.KeyStore) -> ratelimit.RateLimits:
    def rate_key() -> str:
        """Per API key (by its id: secrets never reach the limiter's store), else per address. A token that is no
        key counts against the address it came from: made-up tokens do not each get a limit of their own."""
        secret = api.bearer_secret()
        key = api.api_key_of(key_store, secret) if secret else None
        return f"key:{key.id}" if key is not None else "ip:" + _remote_address()

    # Shared through MongoDB when there is one (every gunicorn worker and replica counts together).
    storage = settings.mongo_url if settings.mongo_url.startswith("mongodb") else "memory://"
    return ratelimit.RateLimits(storage, settings.rate_limit, rate_key)


def create_app(settings: Settings | None = None, service_apps: Mapping[str, Flask] | None = None) -> Flask:
    runtime = Runtime(SPEC, settings)
    settings = runtime.settings
    clients = service_clients(settings, service_apps)
    app = runtime.create_app()
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.wsgi_app = ChunkedBodyLimit(app)  # type: ignore[method-assign]  # a chunked body over it is a 413 too
    key_store = keys.KeyStore(runtime.db)
    directory = repository.Directory(runtime.db, on_events=runtime.relay.kick)
    bootstrap = None
    if settings.admin_key:
        bootstrap = key_store.ensure(settings.admin_key, ["admin", "read", "write"], label="TWINCITY_ADMIN_KEY").id
    invitations = signin.Invitations(runtime.db, signin.web_secret(runtime.db, settings.web_secret))
    mailer = InvitationMailer(clients["notify"], lambda: directory.caller(
        city=None, scopes=("admin", "read", "write"), key_id="web:gateway", default_themes=list(DEFAULT_THEMES)))
    app.extensions[api.EXTENSION] = api.Gateway(directory, key_store, clients, audit.AuditLog(runtime.db), bootstrap,
                                                invitations=invitations, invitation_mail=mailer,
                                                public_url=settings.public_url, embedded=settings.embedded)
    limiter = _rate_limits(settings, key_store)
    limiter.install(app)
    app.register_blueprint(api.bp, url_prefix=api.PREFIX)
    app.register_blueprint(public)
    app.after_request(_audit)
    # The web pages for participants and coordinators (/, /ideas, /matches, /coordinator, ...).
    pages.install(app, settings=settings, db=runtime.db, directory=directory, keys=key_store, clients=clients,
                  invitations=invitations, invitation_mail=mailer)
    # Sign-in forms ask for e-mails and check keys: a few tries a minute per address, whoever is asked for.
    per_address = limiter.per(settings.signin_rate_limit, _remote_address, methods=("POST",))
    for form in ("pages.account.signin", "pages.account.coordinator_signin", "pages.account.signup"):
        app.view_functions[form] = per_address(app.view_functions[form])
    app.after_request(_security_headers)
    return app


def _audit(response: Response) -> Response:
    """Every change an admin key makes is written down, whatever service answered it."""
    key = g.get("api_key")
    if key is not None and key.admin and request.method not in ("GET", "HEAD", "OPTIONS"):
        rule = request.url_rule.rule if request.url_rule else request.path
        api.gateway().audit.record(actor=key.id, action=f"{request.method} {rule}", target=request.path,
                                   status=response.status_code, request_id=g.get("request_id"))
    return response


def _security_headers(response: Response) -> Response:
    """Every page the gateway serves (/docs and the unsubscribe page too, not only the pages') gets the pages'
    headers; every answer at least nosniff."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return security_headers(response) if response.mimetype == "text/html" else response


# What the gateway answers outside /api/v1 and the pages: the API's documentation and the unsubscribe links.
public = Blueprint("public", __name__)


@public.get("/docs")
def docs() -> Response:
    # The public address the operator configured (not the request's Host: a cached page must not send keys elsewhere)
    origin = api.gateway().public_url or request.host_url
    page = apidocs.docs_page(api.gateway().merged_spec(), api.PREFIX, origin=origin.rstrip("/"))
    return Response(page, mimetype="text/html")


@public.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str) -> Response:
    """The link in every e-mail: public (the token is the proof), answered by the notify service."""
    reply = api.gateway().services["notify"].request(request.method, f"/unsubscribe/{token}")
    return Response(reply.body, status=reply.status, content_type=reply.headers.get("Content-Type"))


@public.get("/api")
def api_root() -> Response:
    return jsonify(name="Twin City Lab API", version="v1", openapi=f"{api.PREFIX}/openapi.json", docs="/docs")
