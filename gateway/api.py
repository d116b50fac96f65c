"""The public API (/api/v1): authentication, the gateway's own resources, and routing to the services."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, current_app, g, jsonify, request

from gateway import apidocs, schemas, usecases
from gateway.audit import AuditLog
from gateway.clients import ServiceClient, ServiceRegistrar
from gateway.domain import Exists, Invalid, RuleViolation, Unknown
from gateway.keys import ApiKey, KeyStore
from gateway.repository import Directory
from gateway.signin import Invitations
from gateway.themes import DEFAULT_THEMES
from services.openapi import ApiDocs, build_spec, view_names
from services.store import NotFound
from services.tenancy import HEADER as CALLER_HEADER
from services.tenancy import Caller
from services.web import REQUEST_ID_HEADER, Problem, json_body, problem_response, query_args

PREFIX = "/api/v1"

# Which service answers which public path (below /api/v1); the first match wins.
ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^ideas/[^/]+/(matches|candidates)$"), "matching"),
    (re.compile(r"^partnerships/[^/]+/matching$"), "matching"),
    (re.compile(r"^(matches|projects|meetings|join-requests)(/.*)?$"), "matching"),
    (re.compile(r"^participants/[^/]+/notifications(/.*)?$"), "notify"),
    (re.compile(r"^webhooks(/.*)?$"), "notify"),
    (re.compile(r"^partnerships/[^/]+/(rounds|adopt-ideas)$"), "ideas"),
    (re.compile(r"^rounds/[^/]+(/advance)?$"), "ideas"),
    (re.compile(r"^(ideas|participants)(/.*)?$"), "ideas"),
)

# Paths about an idea that another service answers: the ideas service checks the idea first.
_OWNED_BY_AN_IDEA = re.compile(r"^ideas/([^/]+)/(?:matches|candidates)$")

DOCS = ApiDocs("gateway")
DOCS.operation("/cities", "post", "Add a city", tag="Cities", scope="admin", body=schemas.CityIn,
               responses={201: schemas.CityOut})
DOCS.operation("/cities/{city}", "patch", "Rename a city, or name it in other languages", tag="Cities",
               scope="admin", body=schemas.CityPatch, responses={200: schemas.CityOut},
               description="`names` replaces all its names in other languages, e.g. {\"ru\": \"Карлсруэ\"}: pages, "
                           "reasons and e-mails show a reader the name in their language (city.updated).")
DOCS.operation("/cities", "get", "List the cities your key can see", tag="Cities",
               responses={200: schemas.CityList})
DOCS.operation("/partnerships", "post", "Twin two cities", tag="Partnerships", scope="admin",
               body=schemas.PartnershipIn, responses={201: schemas.PartnershipOut})
DOCS.operation("/rounds/{round_id}/report", "get", "A round's report: every figure of it",
               operation_id="readRoundReport", tag="Rounds",
               responses={200: schemas.RoundReport},
               description="Ideas by theme and city, by language and status; matches by status and kind; projects "
                           "and their status; participants per city (authors of the round's ideas, and registered); "
                           "how long ideas waited for their first proposal. The coordinators' page draws it, "
                           "prints it and gives it as CSV.")
DOCS.operation("/invitations", "post", "Invite someone to your city's lab by e-mail",
               operation_id="inviteParticipant", tag="Participants",
               scope="write", body=schemas.InvitationIn, responses={201: schemas.InvitationOut},
               description="The person gets a link in their language (valid 14 days); following it, they confirm "
                           "name, language and interests and are a participant of your city, signed in.")
DOCS.operation("/invitations", "get", "Your city's invitations, newest first", tag="Participants",
               query=schemas.InvitationQuery, responses={200: schemas.InvitationList})
DOCS.operation("/cities/{city}/sign-up", "put", "Let people sign up for your city by themselves",
               operation_id="setSignUpMode", tag="Participants",
               scope="write", body=schemas.SignUpMode, responses={200: schemas.SignUpMode},
               description="closed (the default: invitations only), open (anyone who confirms their address is a "
                           "participant) or approval (a coordinator says yes to each). By the city's key or an "
                           "admin key.")
DOCS.operation("/sign-ups", "get", "Sign-ups waiting for your city's yes or no",
               operation_id="listSignUps", tag="Participants",
               query=schemas.InvitationQuery, responses={200: schemas.SignUpList})
DOCS.operation("/sign-ups/{signup_id}/approve", "post", "Say yes to a sign-up: the person is a participant",
               operation_id="approveSignUp",
               tag="Participants", scope="write", responses={200: schemas.SignUpOut},
               description="The person is told by e-mail, in their language, and signs in with their address.")
DOCS.operation("/sign-ups/{signup_id}/decline", "post", "Say no to a sign-up",
               operation_id="declineSignUp", tag="Participants", scope="write",
               responses={200: schemas.SignUpOut}, description="The person is told by e-mail, in their language.")
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


@dataclass
class Gateway:
    """The gateway's parts, as its routes reach them (app.extensions[EXTENSION]); made by app.create_app."""

    directory: Directory
    keys: KeyStore
    services: Mapping[str, ServiceClient]
    audit: AuditLog
    bootstrap_key: str | None = None  # the key TWINCITY_ADMIN_KEY names: never revoked or rotated through the API
    invitations: Invitations | None = None
    invitation_mail: usecases.InvitationMail | None = None
    public_url: str = ""
    embedded: bool = False  # twincity dev: no mail server, so an invitation's link is in the answer
    _spec: dict[str, Any] = field(default_factory=dict)
    _spec_lock: threading.Lock = field(default_factory=threading.Lock)

    def merged_spec(self) -> dict[str, Any]:
        """The OpenAPI document of the whole API: the gateway's operations and each service's (a minute's cache)."""
        with self._spec_lock:
            if self._spec.get("at", 0) > time.monotonic() - 60:
                return self._spec["spec"]
            spec = build_spec("Twin City Lab API", "1.0.0", DOCS.operations, PREFIX,
                              description="Match project ideas across partner cities, in their own languages.",
                              names=view_names(current_app.url_map, PREFIX))
            for client in self.services.values():
                reply = client.request("GET", "/openapi.json")
                if reply.status != 200:
                    continue
                part = json.loads(reply.body)
                for path, ops in part.get("paths", {}).items():
                    spec["paths"].setdefault(PREFIX + path, {}).update(ops)
                for schema_name, schema in part.get("components", {}).get("schemas", {}).items():
                    spec["components"]["schemas"].setdefault(schema_name, schema)
            apidocs.finish(spec, PREFIX)
            self._spec.update(at=time.monotonic(), spec=spec)
            return spec


EXTENSION = "twincity.gateway"
bp = Blueprint("gateway", __name__)


def gateway() -> Gateway:
    return current_app.extensions[EXTENSION]


@bp.errorhandler(Exists)
@bp.errorhandler(RuleViolation)
def _conflict(exc: Exception) -> Response:
    return problem_response(409, "Conflict", str(exc))


@bp.errorhandler(Unknown)
def _unknown(exc: Unknown) -> Response:
    return problem_response(422, "Unprocessable Content", str(exc))


@bp.errorhandler(Invalid)
def _invalid(exc: Invalid) -> Response:
    return problem_response(422, "Unprocessable Content", "some fields are missing or wrong; see errors",
                            errors={exc.field: [exc.message]})


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Response:
    return problem_response(404, "Not Found", f"no {exc}")


@bp.after_request
def _auth_header(response: Response) -> Response:
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="twincity"'
    return response


# --- who is calling -----------------------------------------------------------------------------------------

def authenticate() -> ApiKey:
    secret = bearer_secret()
    if not secret:
        raise Problem(401, "Unauthorized", "send your API key as 'Authorization: Bearer <key>'")
    key = api_key_of(gateway().keys, secret)
    if key is None:
        raise Problem(401, "Unauthorized", "this API key is unknown, revoked or expired")
    g.api_key = key
    return key


def need(scope: str) -> ApiKey:
    key = authenticate()
    if not key.allows(scope):
        raise Problem(403, "Forbidden", f"this key lacks the {scope!r} scope")
    return key


def caller_of(key: ApiKey) -> Caller:
    return gateway().directory.caller(city=key.city, scopes=key.scopes, key_id=key.id,
                                      default_themes=list(DEFAULT_THEMES))


# --- the gateway's own resources -------------------------------------------------------------------------------

@bp.post("/cities")
def add_city() -> tuple[Response, int]:
    need("admin")
    return jsonify(city_out.dump(usecases.add_city(gateway().directory, json_body(schemas.CityIn)))), 201


@bp.patch("/cities/<city>")
def change_city(city: str) -> Response:
    need("admin")
    return jsonify(city_out.dump(usecases.change_city(gateway().directory, city, json_body(schemas.CityPatch))))


@bp.get("/cities")
def list_cities() -> Response:
    who = caller_of(need("read"))
    query_args(schemas.NoQuery)
    return jsonify(items=city_out.dump(usecases.list_cities(gateway().directory, who), many=True))


@bp.post("/partnerships")
def add_partnership() -> tuple[Response, int]:
    need("admin")
    doc = usecases.add_partnership(gateway().directory, json_body(schemas.PartnershipIn))
    return jsonify(partnership_out.dump(doc)), 201


@bp.get("/partnerships")
def list_partnerships() -> Response:
    who = caller_of(need("read"))
    query_args(schemas.NoQuery)
    return jsonify(items=partnership_out.dump(usecases.list_partnerships(gateway().directory, who), many=True))


@bp.post("/api-keys")
def add_key() -> tuple[Response, int]:
    need("admin")
    made = usecases.add_key(gateway().directory, gateway().keys, json_body(schemas.ApiKeyIn))
    return jsonify(key_out.dump(made)), 201


@bp.get("/api-keys")
def list_keys() -> Response:
    need("admin")
    query_args(schemas.NoQuery)
    return jsonify(items=key_out.dump(usecases.list_keys(gateway().keys), many=True))


@bp.delete("/api-keys/<key_id>")
def revoke_key(key_id: str) -> tuple[str, int]:
    usecases.revoke_key(gateway().keys, key_id, caller_id=need("admin").id, configured_id=gateway().bootstrap_key)
    return "", 204


@bp.post("/api-keys/<key_id>/rotate")
def rotate_key(key_id: str) -> Response:
    made = usecases.rotate_key(gateway().keys, key_id, caller_id=need("admin").id,
                               configured_id=gateway().bootstrap_key)
    return jsonify(key_out.dump(made))


@bp.get("/audit")
def read_audit() -> Response:
    need("admin")
    query = query_args(schemas.PageQuery)
    items, next_cursor = usecases.read_audit(gateway().audit, query["limit"], query.get("cursor"))
    return jsonify(schemas.AuditPage().dump({"items": items, "next_cursor": next_cursor}))


@bp.get("/themes")
def list_themes() -> Response:
    who = caller_of(need("read"))
    query = query_args(schemas.ThemeQuery)
    return jsonify(items=usecases.themes(gateway().directory, who, query.get("partnership")))


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(gateway().merged_spec())


@bp.post("/invitations")
def invite() -> tuple[Response, int]:
    who = caller_of(need("write"))
    parts = gateway()
    assert parts.invitations is not None and parts.invitation_mail is not None
    people = ServiceRegistrar(parts.services["ideas"], parts.directory)
    doc, link = usecases.invite(parts.invitations, parts.invitation_mail, people, who, json_body(schemas.InvitationIn),
                                lambda token: f"{parts.public_url}/signin/invitation/{token}")
    return jsonify(schemas.InvitationOut().dump({**doc, **({"link": link} if parts.embedded else {})})), 201


@bp.get("/invitations")
def list_invitations() -> Response:
    who = caller_of(need("read"))
    query = query_args(schemas.InvitationQuery)
    assert gateway().invitations is not None
    items = usecases.list_invitations(gateway().invitations, who, query.get("city"))
    return jsonify(items=schemas.InvitationOut(many=True).dump(items))


@bp.put("/cities/<city>/sign-up")
def set_sign_up(city: str) -> Response:
    who = caller_of(need("write"))
    doc = usecases.set_sign_up(gateway().directory, who, city, json_body(schemas.SignUpMode)["mode"])
    return jsonify(schemas.SignUpMode().dump({"mode": doc.get("sign_up", "closed")}))


@bp.get("/sign-ups")
def waiting_sign_ups() -> Response:
    who = caller_of(need("read"))
    query = query_args(schemas.InvitationQuery)
    assert gateway().invitations is not None
    return jsonify(items=schemas.SignUpOut(many=True).dump(
        usecases.waiting_sign_ups(gateway().invitations, who, query.get("city"))))


@bp.post("/sign-ups/<signup_id>/<any(approve, decline):answer>")
def answer_sign_up(signup_id: str, answer: str) -> Response:
    who = caller_of(need("write"))
    parts = gateway()
    assert parts.invitations is not None and parts.invitation_mail is not None
    doc = usecases.answer_sign_up(parts.invitations, ServiceRegistrar(parts.services["ideas"], parts.directory),
                                  parts.invitation_mail, who, signup_id, answer == "approve",
                                  f"{parts.public_url}/signin")
    return jsonify(schemas.SignUpOut().dump(doc))


@bp.get("/rounds/<round_id>/report")
def round_report(round_id: str) -> Response:
    who = caller_of(need("read"))
    query_args(schemas.NoQuery)
    try:
        report = usecases.round_report(_ServicesFor(who), round_id)
    except _Refused as refused:
        return refused.response
    return jsonify(schemas.RoundReport().dump(report))


class _Refused(Exception):
    """A service's refusal, passed on as it came."""

    def __init__(self, reply: Any) -> None:
        super().__init__(reply.status)
        self.response = Response(reply.body, status=reply.status,
                                 content_type=reply.headers.get("Content-Type", "application/problem+json"))


class _ServicesFor:
    """usecases.Services: the services' internal answers in the name of the API's caller."""

    def __init__(self, who: Caller) -> None:
        self.headers = {REQUEST_ID_HEADER: g.request_id, CALLER_HEADER: who.encode(), "Accept": "application/json"}

    def get(self, service: str, path: str) -> Any:
        return self._answer(gateway().services[service].request("GET", path, headers=self.headers))

    @staticmethod
    def _answer(reply: Any) -> Any:
        if reply.status >= 400:
            raise _Refused(reply)
        return json.loads(reply.body)


# --- everything else goes to the service that owns it ------------------------------------------------------------

@bp.route("/<path:rest>", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
def proxy(rest: str) -> Response:
    services = gateway().services
    service = next((name for pattern, name in ROUTES if pattern.match(rest)), None)
    segments = rest.split("/")
    if service is None or service not in services or any(s in (".", "..") for s in segments):
        raise Problem(404, "Not Found", f"no such resource: {PREFIX}/{rest}; see {PREFIX}/openapi.json")
    key = need("read" if request.method == "GET" else "write")
    body = request.get_data() if request.method in ("POST", "PATCH", "PUT") else None
    headers = {REQUEST_ID_HEADER: g.request_id, CALLER_HEADER: caller_of(key).encode(), "Accept": "application/json",
               **({"Content-Type": request.headers.get("Content-Type", "")} if body is not None else {})}
    # Re-encoded from the parsed arguments: plain ASCII on the wire, repeated parameters kept. Each segment stays
    # one segment on the service's side: a decoded "?" or "#" in an id is not a query.
    query = urlencode(list(request.args.items(multi=True)))
    path = "/" + "/".join(quote(segment, safe="") for segment in segments) + (f"?{query}" if query else "")
    refused = _idea_first(rest, headers)
    if refused is not None:
        return refused
    reply = services[service].request(request.method, path, body=body, headers=headers)
    response = Response(reply.body, status=reply.status,
                        content_type=reply.headers.get("Content-Type", "application/json"))
    if reply.headers.get("Location"):
        response.headers["Location"] = PREFIX + reply.headers["Location"]
    if reply.headers.get("Retry-After"):  # a service's 503 that did nothing: when to send it again
        response.headers["Retry-After"] = reply.headers["Retry-After"]
    return response


def _idea_first(rest: str, headers: Mapping[str, str]) -> Response | None:
    """For a path about an idea that another service answers: the ideas service's answer when it does not show
    the caller the idea. Matching alone cannot tell an idea it has not heard of yet from one that does not exist (a
    key could probe ids)."""
    owner = _OWNED_BY_AN_IDEA.match(rest)
    ideas = gateway().services.get("ideas")
    if not owner or ideas is None:
        return None
    seen = ideas.request("GET", f"/ideas/{quote(owner.group(1), safe='')}", body=None, headers=headers)
    if seen.status == 200:
        return None
    return Response(seen.body, status=seen.status,
                    content_type=seen.headers.get("Content-Type", "application/problem+json"))
