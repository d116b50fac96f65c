"""The public API (/api/v1): authentication, the gateway's own resources, and routing to the services."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, current_app, g, jsonify, render_template_string, request
from markupsafe import Markup, escape
from marshmallow import ValidationError

from gateway import schemas
from gateway.audit import AuditLog
from gateway.clients import ServiceClient
from gateway.keys import ApiKey, KeyStore
from gateway.repository import Directory, Exists, Unknown
from gateway.themes import DEFAULT_THEMES
from services.openapi import ApiDocs, build_spec
from services.tenancy import HEADER as CALLER_HEADER
from services.web import REQUEST_ID_HEADER, Problem, json_body, problem_response, query_args

PREFIX = "/api/v1"
MAX_KEY_LIFE = timedelta(days=10 * 365)  # the furthest expiry a key may be given

# Which service answers which public path (below /api/v1); the first match wins.
ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^ideas/[^/]+/matches$"), "matching"),
    (re.compile(r"^partnerships/[^/]+/matching$"), "matching"),
    (re.compile(r"^(matches|projects)(/.*)?$"), "matching"),
    (re.compile(r"^participants/[^/]+/notifications(/.*)?$"), "notify"),
    (re.compile(r"^webhooks(/.*)?$"), "notify"),
    (re.compile(r"^(ideas|participants)(/.*)?$"), "ideas"),
)

# Paths about an idea that another service answers: the ideas service checks the idea first.
_OWNED_BY_AN_IDEA = re.compile(r"^ideas/([^/]+)/matches$")

DOCS = ApiDocs("gateway")
DOCS.operation("/cities", "post", "Add a city", tag="Cities", scope="admin", body=schemas.CityIn,
               responses={201: schemas.CityOut})
DOCS.operation("/cities", "get", "List the cities your key can see", tag="Cities",
               responses={200: schemas.CityList})
DOCS.operation("/partnerships", "post", "Twin two cities", tag="Partnerships", scope="admin",
               body=schemas.PartnershipIn, responses={201: schemas.PartnershipOut})
DOCS.operation("/partnerships", "get", "List the partnerships your key can see", tag="Partnerships",
               responses={200: schemas.PartnershipList})
DOCS.operation("/api-keys", "post", "Make an API key (the secret is shown once)", tag="API keys",
               scope="admin", body=schemas.ApiKeyIn, responses={201: schemas.ApiKeyOut})
DOCS.operation("/api-keys", "get", "List API keys (never their secrets)", tag="API keys", scope="admin",
               responses={200: schemas.ApiKeyList})
DOCS.operation("/api-keys/{key_id}", "delete", "Revoke an API key", tag="API keys", scope="admin",
               responses={204: "Revoked; the key gets 401 from now on"})
DOCS.operation("/api-keys/{key_id}/rotate", "post", "A new secret for a key (the old one stops working)",
               tag="API keys", scope="admin", responses={200: schemas.ApiKeyOut})
DOCS.operation("/audit", "get", "What admin keys changed, newest first", tag="Audit", scope="admin",
               query=schemas.PageQuery, responses={200: schemas.AuditPage})
DOCS.operation("/themes", "get", "The themes ideas can have", tag="Themes", query=schemas.ThemeQuery,
               responses={200: schemas.ThemeList},
               description="The four common themes, labelled de/ru/en, and the own themes of your partnerships.")

city_out, partnership_out, key_out = schemas.CityOut(), schemas.PartnershipOut(), schemas.ApiKeyOut()

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Twin City Lab API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/pages/docs.css"></head><body>
<h1>Twin City Lab API</h1>
<p>Every call needs <code>Authorization: Bearer &lt;key&gt;</code>. Errors are
<code>application/problem+json</code> with a <code>detail</code> that says what is wrong. Lists return
<code>items</code> and, when there is more, <code>next_cursor</code>: send it back as <code>cursor</code>.
The machine-readable document is <a href="{{ prefix }}/openapi.json">{{ prefix }}/openapi.json</a>.</p>
{% for tag, ops in tags %}<h2>{{ tag }}</h2>
{% for op in ops %}<div class="op" id="{{ op.id }}"><p><span class="m">{{ op.method|upper }}</span>
<code>{{ op.path }}</code> — {{ op.summary }}</p>
{% if op.description %}<p>{{ op.description }}</p>{% endif %}
{% if op.fields %}<table><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>
{% for f in op.fields %}<tr><td><code>{{ f.name }}</code></td><td>{{ f.type }}</td>
<td>{{ "yes" if f.required else "" }}</td><td>{{ f.description }}</td></tr>{% endfor %}</table>{% endif %}
</div>{% endfor %}{% endfor %}
</body></html>"""


def api_key_of(keys: KeyStore, secret: str) -> ApiKey | None:
    """The active key with this secret, looked up once per request (the rate limit asks first, then the route)."""
    cached = g.get("twincity_key_lookup")
    if cached is not None and cached[0] == secret:
        return cached[1]
    key = keys.authenticate(secret)
    g.twincity_key_lookup = (secret, key)
    return key


def bearer_secret() -> str:
    """The secret of `Authorization: Bearer <secret>`, or "" when the request has none."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


def build(directory: Directory, keys: KeyStore, services: Mapping[str, ServiceClient], audit: AuditLog,
          bootstrap_key: str | None = None) -> Blueprint:
    """`bootstrap_key`: the id of the key configured as TWINCITY_ADMIN_KEY, which the API does not revoke or rotate
    (the next start would bring it back: the configuration names it)."""
    bp = Blueprint("gateway", __name__)
    spec_cache: dict[str, Any] = {}
    spec_lock = threading.Lock()

    @bp.errorhandler(Exists)
    def _exists(exc: Exists) -> Response:
        return problem_response(409, "Conflict", str(exc))

    @bp.errorhandler(Unknown)
    def _unknown(exc: Unknown) -> Response:
        return problem_response(422, "Unprocessable Content", str(exc))

    # --- authentication ----------------------------------------------------------------------------

    def authenticate() -> ApiKey:
        secret = bearer_secret()
        if not secret:
            raise Problem(401, "Unauthorized", "send your API key as 'Authorization: Bearer <key>'")
        key = api_key_of(keys, secret)
        if key is None:
            raise Problem(401, "Unauthorized", "this API key is unknown, revoked or expired")
        g.api_key = key
        return key

    def need(scope: str) -> ApiKey:
        key = authenticate()
        if not key.allows(scope):
            raise Problem(403, "Forbidden", f"this key lacks the {scope!r} scope")
        return key

    def caller_of(key: ApiKey) -> Any:
        return directory.caller(city=key.city, scopes=key.scopes, key_id=key.id,
                                default_themes=list(DEFAULT_THEMES))

    @bp.after_request
    def _auth_header(response: Response) -> Response:
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="twincity"'
        return response

    # --- the gateway's own resources ---------------------------------------------------------------

    @bp.post("/cities")
    def add_city() -> tuple[Response, int]:
        need("admin")
        data = json_body(schemas.CityIn)
        return jsonify(city_out.dump(directory.add_city(**data))), 201

    @bp.get("/cities")
    def list_cities() -> Response:
        who = caller_of(need("read"))
        query_args(schemas.NoQuery)
        cities = directory.list_cities(None if who.admin else who.visible_cities)
        return jsonify(items=city_out.dump(cities, many=True))

    @bp.post("/partnerships")
    def add_partnership() -> tuple[Response, int]:
        need("admin")
        data = json_body(schemas.PartnershipIn)
        clash = [t["key"] for t in data["themes"] if t["key"] in DEFAULT_THEMES]
        if clash:
            raise ValidationError({"themes": [f"{', '.join(clash)} is a common theme already"]})
        doc = directory.add_partnership(data["cities"], data["name"], data["themes"], data.get("id"))
        return jsonify(_partnership_view(doc)), 201

    @bp.get("/partnerships")
    def list_partnerships() -> Response:
        key = need("read")
        query_args(schemas.NoQuery)
        docs = directory.list_partnerships(None if key.admin else key.city)
        return jsonify(items=[_partnership_view(d) for d in docs])

    @bp.post("/api-keys")
    def add_key() -> tuple[Response, int]:
        need("admin")
        data = json_body(schemas.ApiKeyIn)
        if data["city"] is not None and directory.city(data["city"]) is None:
            raise ValidationError({"city": [f"unknown city {data['city']!r}"]})
        expires = data["expires_at"]
        if expires is not None:
            if expires <= datetime.now(UTC):
                raise ValidationError({"expires_at": ["must lie in the future"]})
            if expires > datetime.now(UTC) + MAX_KEY_LIFE:
                raise ValidationError({"expires_at": [f"at most {MAX_KEY_LIFE.days // 365} years from now; leave it "
                                                      "out for a key that works until revoked"]})
            data["expires_at"] = expires.astimezone(UTC)
        try:
            key, secret = keys.create(data["scopes"], data["city"], label=data["label"], expires_at=data["expires_at"])
        except ValueError as exc:
            raise ValidationError({"scopes": [str(exc)]}) from None
        body = {"id": key.id, "city": key.city, "scopes": list(key.scopes), "label": data["label"],
                "revoked": False, "expires_at": key.expires_at, "expired": False, "key": secret}
        return jsonify(key_out.dump(body)), 201

    @bp.get("/api-keys")
    def list_keys() -> Response:
        need("admin")
        query_args(schemas.NoQuery)
        return jsonify(items=key_out.dump(keys.list_keys(), many=True))

    def not_this_key(caller: ApiKey, key_id: str, change: str) -> None:
        """The key making the call, and the configured TWINCITY_ADMIN_KEY, are not revoked or rotated here."""
        if key_id == caller.id:
            raise Problem(409, "Conflict", f"this is the key making the call: {change} it with another admin key, "
                          "so that one admin key always remains")
        if key_id == bootstrap_key:
            raise Problem(409, "Conflict", f"this key is configured as TWINCITY_ADMIN_KEY: the gateway would bring it "
                          f"back at its next start. To {change} it, give TWINCITY_ADMIN_KEY another value (or none) "
                          "and restart the gateway first")

    @bp.delete("/api-keys/<key_id>")
    def revoke_key(key_id: str) -> tuple[str, int]:
        not_this_key(need("admin"), key_id, "revoke")
        target = keys.active(key_id)
        if target is not None and target.admin and not keys.other_admins(key_id):
            raise Problem(409, "Conflict", "this is the last active admin key: make another admin key first, so "
                          "that one always remains")
        if not keys.revoke(key_id):
            raise Problem(404, "Not Found", f"no API key {key_id}")
        return "", 204

    @bp.post("/api-keys/<key_id>/rotate")
    def rotate_key(key_id: str) -> Response:
        not_this_key(need("admin"), key_id, "rotate")
        secret = keys.rotate(key_id)
        if secret is None:
            if any(k["id"] == key_id and k["expired"] and not k["revoked"] for k in keys.list_keys()):
                raise Problem(409, "Conflict", f"API key {key_id} has expired: a new secret would not work either; "
                              "make a new key")
            raise Problem(404, "Not Found", f"no active API key {key_id}")
        found = next(k for k in keys.list_keys() if k["id"] == key_id)
        return jsonify(key_out.dump({**found, "key": secret}))

    @bp.get("/audit")
    def read_audit() -> Response:
        need("admin")
        query = query_args(schemas.PageQuery)
        items, next_cursor = audit.page(query["limit"], query.get("cursor"))
        return jsonify(schemas.AuditPage().dump({"items": items, "next_cursor": next_cursor}))

    @bp.get("/themes")
    def themes() -> Response:
        who = caller_of(need("read"))
        query = query_args(schemas.ThemeQuery)
        wanted = query.get("partnership")
        if wanted and wanted not in {p.id for p in who.partnerships}:
            raise Problem(404, "Not Found", f"no partnership {wanted} visible to this key")
        items = [{"key": k, "labels": labels, "partnership": None} for k, labels in DEFAULT_THEMES.items()]
        for p in directory.list_partnerships(None if who.admin else who.city):
            if wanted is None or p["_id"] == wanted:
                items += [{"key": t["key"], "labels": t["labels"], "partnership": p["_id"]}
                          for t in p.get("themes", [])]
        return jsonify(items=items)

    # --- documentation -----------------------------------------------------------------------------

    def merged_spec() -> dict[str, Any]:
        with spec_lock:
            if spec_cache.get("at", 0) > time.monotonic() - 60:
                return spec_cache["spec"]
            spec = build_spec("Twin City Lab API", "1.0.0", DOCS.operations, PREFIX,
                              description="Match project ideas across partner cities, in their own languages.")
            for client in services.values():
                reply = client.request("GET", "/openapi.json")
                if reply.status != 200:
                    continue
                part = json.loads(reply.body)
                for path, ops in part.get("paths", {}).items():
                    spec["paths"].setdefault(PREFIX + path, {}).update(ops)
                for schema_name, schema in part.get("components", {}).get("schemas", {}).items():
                    spec["components"]["schemas"].setdefault(schema_name, schema)
            spec_cache.update(at=time.monotonic(), spec=spec)
            return spec

    @bp.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(merged_spec())

    bp.merged_spec = merged_spec  # type: ignore[attr-defined]  # the /docs page renders it

    # --- everything else goes to the service that owns it ------------------------------------------

    @bp.route("/<path:rest>", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    def proxy(rest: str) -> Response:
        service = next((name for pattern, name in ROUTES if pattern.match(rest)), None)
        if service is None or service not in services:
            raise Problem(404, "Not Found", f"no such resource: {PREFIX}/{rest}; see {PREFIX}/openapi.json")
        key = need("read" if request.method == "GET" else "write")
        body = request.get_data() if request.method in ("POST", "PATCH", "PUT") else None
        headers = {
            REQUEST_ID_HEADER: g.request_id,
            CALLER_HEADER: caller_of(key).encode(),
            "Accept": "application/json",
        }
        if body is not None:
            headers["Content-Type"] = request.headers.get("Content-Type", "")
        # Re-encoded from the parsed arguments: plain ASCII on the wire, repeated parameters kept.
        query = urlencode(list(request.args.items(multi=True)))
        segments = rest.split("/")
        if any(segment in (".", "..") for segment in segments):
            raise Problem(404, "Not Found", f"no such resource: {PREFIX}/{rest}")
        # Each segment stays one segment on the service's side: a decoded "?" or "#" in an id is not a query.
        path = "/" + "/".join(quote(segment, safe="") for segment in segments) + (f"?{query}" if query else "")
        owner = _OWNED_BY_AN_IDEA.match(rest)
        if owner and "ideas" in services:
            # The ideas service says whether the idea exists and the caller may see it; matching alone cannot
            # tell an idea it has not heard of yet from one that does not exist (a key could probe ids).
            seen = services["ideas"].request("GET", f"/ideas/{quote(owner.group(1), safe='')}", body=None,
                                             headers=headers)
            if seen.status != 200:
                return Response(seen.body, status=seen.status,
                                content_type=seen.headers.get("Content-Type", "application/problem+json"))
        reply = services[service].request(request.method, path, body=body, headers=headers)
        response = Response(reply.body, status=reply.status,
                            content_type=reply.headers.get("Content-Type", "application/json"))
        location = reply.headers.get("Location")
        if location:
            response.headers["Location"] = PREFIX + location
        return response

    return bp


def _partnership_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    themes = [{"key": k, "labels": v, "partnership": None} for k, v in DEFAULT_THEMES.items()]
    themes += [{"key": t["key"], "labels": t["labels"], "partnership": doc["_id"]} for t in doc.get("themes", [])]
    return partnership_out.dump({**doc, "themes": themes})


def docs_page(spec: Mapping[str, Any]) -> str:
    """A readable page of the OpenAPI document, rendered on the server (works without JavaScript)."""
    components = spec.get("components", {}).get("schemas", {})
    tags: dict[str, list[dict[str, Any]]] = {}
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            fields = []
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "").rsplit("/", 1)[-1]
            schema = components.get(ref, {})
            for name, prop in schema.get("properties", {}).items():
                fields.append({"name": name, "type": prop.get("type", "object"),
                               "required": name in schema.get("required", []),
                               "description": prop.get("description", "")})
            tags.setdefault(op.get("tags", ["Other"])[0], []).append({
                "id": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
                "method": method, "path": path, "summary": op.get("summary", ""),
                "description": _code(op.get("description", "")), "fields": fields,
            })
    return render_template_string(DOCS_PAGE, tags=sorted(tags.items()), prefix=current_app.config.get(
        "API_PREFIX", PREFIX))


def _code(text: str) -> Markup:
    """OpenAPI descriptions are Markdown: `x` shows as code on the page (the rest stays escaped text)."""
    return Markup(re.sub(r"`([^`<>]+)`", r"<code>\1</code>", str(escape(text))))
