"""Web helpers shared by every Flask app: problem+json errors, request ids, health, readiness, metrics."""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from services import context, metrics
from services.contract import schema_instance
from services.errors import Refused
from services.store import ID_PATTERN

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

ReadinessCheck = Callable[[], None]  # raises when the dependency does not answer


class Problem(Exception):
    """An error a client can act on, rendered as RFC 9457 application/problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}  # sent with the problem (Retry-After, say)


def problem_response(status: int, title: str, detail: str | None = None, **extra: Any) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    rid = getattr(g, "request_id", None)
    if rid:
        body["request_id"] = rid
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM
    return response


def cursor_field(kind: str) -> fields.Str:
    """A list's `cursor` parameter: the `next_cursor` of the page before, which is the id of one of the list's
    items (`kind` is their ids' prefix, as store.new_id makes them)."""
    pattern = ID_PATTERN.replace("[a-z]+", re.escape(kind), 1)
    return fields.Str(validate=validate.Regexp(pattern, error="not a cursor of this list: send back the "
                                               "next_cursor of the page before, as it came"),
                      metadata={"description": "next_cursor of the page before"})


def query_args(schema: type[Schema]) -> Any:
    """The request's query string loaded through `schema`: one value a parameter. A repeated parameter is a
    validation error (422) naming it, never a silent pick of one of its values."""
    data: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        if len(values) > 1:
            raise ValidationError({key: ["give this parameter once"]})
        data[key] = values[0]
    return schema_instance(schema).load(data)


MAX_JSON_DEPTH = 64  # nesting of arrays and objects a JSON body may have; no request of the API needs more than 4


def too_deep(data: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `limit` in parsed JSON (counted without recursion)."""
    level = [(data, 0)]
    while level:
        value, depth = level.pop()
        if isinstance(value, dict | list):
            if depth >= limit:
                return True
            level.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return False


def json_body(schema: type[Schema] | None = None, *, partial: bool = False) -> Any:
    """The request's JSON object, loaded through `schema` when given; clear 4xx problems otherwise.

    Parsed by the json module's scanner (linear; its recursion is bounded by the interpreter's limit, past which it
    raises RecursionError, taken here for what it is), then held to MAX_JSON_DEPTH before anything recurses
    through it (the schema, the store's encoder)."""
    if not request.is_json:
        raise Problem(415, "Unsupported Media Type", "send a JSON body with Content-Type: application/json")
    raw = request.get_data()
    deep = Problem(400, "Bad Request", f"the JSON body nests arrays and objects more than {MAX_JSON_DEPTH} levels "
                   "deep; no request needs that")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise deep from None
    except ValueError:
        raise Problem(400, "Malformed JSON", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Problem(400, "Bad Request", "the request body must be a JSON object")
    if too_deep(data):
        raise deep
    if (b"\\ud" in raw or b"\\uD" in raw) and not _unicode(data):  # an escaped surrogate, maybe a lone one
        raise Problem(400, "Bad Request", "the request body holds text that is not Unicode (a lone surrogate "
                      "escape such as \\ud800): send UTF-8 text")
    if schema is None:
        return data
    return schema_instance(schema).load(data, partial=partial)


def _unicode(data: Any) -> bool:
    """Whether every string in `data` can be stored (UTF-8): JSON can escape half a surrogate pair, BSON can't."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ChunkedBodyLimit:
    """WSGI middleware: a body sent without Content-Length (chunked) is read here, up to the app's
    MAX_CONTENT_LENGTH. Werkzeug cuts such a body at the limit without a word, and the request would go on with
    half a body; here a body over the limit is refused with 413, as one with a Content-Length is."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.wsgi_app = app.wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        if limit and not environ.get("CONTENT_LENGTH") and environ.get("wsgi.input") is not None \
                and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                environ[TOO_LARGE], body = True, b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ.pop("wsgi.input_terminated", None)
        return self.wsgi_app(environ, start_response)


TOO_LARGE = "twincity.body_too_large"


@dataclass(frozen=True)
class Readiness:
    """What /readyz checks (name -> a check that raises when its dependency does not answer), and which of them
    only degrade the process: without those it still serves (the broker: changes wait in the outbox)."""

    checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    degrading: Collection[str] = ()


def create_base_app(service: str, readiness: Mapping[str, ReadinessCheck] | None = None,
                    degrading: Collection[str] = (), metrics_token: str = "") -> Flask:
    """A Flask app with the platform's common behaviour; services add their blueprints to it.

    /readyz is 503 while a check fails, except the checks named in `degrading`: without them the process still
    serves, so it stays ready and says "degraded". /metrics answers only to `metrics_token` when one is given."""
    app = Flask(service, static_folder=None)
    app.config.update(SERVICE=service, METRICS_TOKEN=metrics_token)
    app.extensions["twincity.readiness"] = Readiness(dict(readiness or {}), tuple(degrading))
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Cyrillic stays readable
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_teardown)
    app.register_error_handler(Problem, _problem)
    app.register_error_handler(Refused, _refused)
    app.register_error_handler(ValidationError, _invalid)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(Exception, _unexpected)
    app.register_blueprint(probes)
    return app


# --- what every request goes through --------------------------------------------------------------------------

def _start() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else context.new_id()
    g.started = time.perf_counter()
    g.context_token = context.correlation_id.set(g.request_id)
    if request.environ.get(TOO_LARGE):
        raise RequestEntityTooLarge()


def _finish(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = getattr(g, "request_id", "")
    started = getattr(g, "started", None)
    if started is not None:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUEST_SECONDS.labels(current_app.config["SERVICE"], request.method, endpoint,
                                       response.status_code).observe(time.perf_counter() - started)
    return response


def _teardown(_exc: BaseException | None) -> None:
    token = g.pop("context_token", None)
    if token is not None:
        context.correlation_id.reset(token)


def _problem(exc: Problem) -> Response:
    response = problem_response(exc.status, exc.title, exc.detail, **exc.extra)
    response.headers.update(exc.headers)
    return response


def _refused(exc: Refused) -> Response:
    response = problem_response(exc.status, exc.title, str(exc))
    if getattr(exc, "retry_after", None):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _invalid(exc: ValidationError) -> Response:
    return problem_response(422, "Unprocessable Content", "some fields are missing or wrong; see errors",
                            errors=exc.messages)


def _http(exc: HTTPException) -> Response:
    detail = exc.description
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if exc.code == 413 and limit:  # werkzeug's own words name neither the limit nor how to change it
        detail = (f"the request body is over this server's limit of {limit:,} bytes "
                  "(TWINCITY_MAX_BODY; a CSV import can be split into several files)")
    response = problem_response(exc.code or 500, exc.name, detail)
    valid = getattr(exc, "valid_methods", None)
    if exc.code == 405 and exc.response is None and valid:
        response.headers["Allow"] = ", ".join(valid)
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem_response(500, "Internal Server Error", "something went wrong on our side; it is logged")


# --- health, readiness, metrics -------------------------------------------------------------------------------

probes = Blueprint("probes", __name__)


@probes.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok", service=current_app.config["SERVICE"])


@probes.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    readiness: Readiness = current_app.extensions["twincity.readiness"]
    results: dict[str, str] = {}
    for name, check in readiness.checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"unavailable: {exc}"[:300]
    failed = {name for name, result in results.items() if result != "ok"}
    ready = not failed - set(readiness.degrading)
    status = "not ready" if not ready else "degraded" if failed else "ready"
    body = jsonify(status=status, service=current_app.config["SERVICE"], checks=results)
    return (body, 200) if ready else (body, 503)


@probes.get("/metrics")
def prometheus() -> Response:
    token = current_app.config.get("METRICS_TOKEN")
    if token:  # counts per endpoint and status are for the operator, not for every visitor
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
            response = problem_response(401, "Unauthorized", "/metrics needs 'Authorization: Bearer <token>' "
                                        "with the value of TWINCITY_METRICS_TOKEN")
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # gunicorn with several workers: add them all up
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
