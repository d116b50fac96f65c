"""Web helpers: problem+json for every error, request ids, health, readiness, metrics."""

import pytest
from marshmallow import Schema, fields

from services import context
from services.web import PROBLEM, Problem, create_base_app, json_body


class Thing(Schema):
    name = fields.Str(required=True)


@pytest.fixture
def client():
    seen = {}

    def broken():
        raise RuntimeError("store down")

    app = create_base_app("test", {"store": lambda: None, "broker": broken})

    @app.post("/things")
    def create():
        data = json_body(Thing)
        seen["correlation"] = context.correlation_id.get()
        return {"name": data["name"]}, 201

    @app.get("/gone")
    def gone():
        raise Problem(410, "Gone", "this idea was withdrawn", idea="i1")

    @app.get("/bug")
    def bug():
        raise ZeroDivisionError

    c = app.test_client()
    c.seen = seen
    return c


def test_health_is_always_ok(client):
    assert client.get("/healthz").json == {"status": "ok", "service": "test"}


def test_readiness_names_what_is_unavailable(client):
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json["checks"] == {"store": "ok", "broker": "unavailable: store down"}


def test_a_degrading_check_leaves_the_process_ready_and_says_so():
    def down():
        raise RuntimeError("connection refused")

    app = create_base_app("test", {"store": lambda: None, "broker": down}, degrading={"broker"})
    r = app.test_client().get("/readyz")
    assert r.status_code == 200 and r.json["status"] == "degraded"
    assert r.json["checks"] == {"store": "ok", "broker": "unavailable: connection refused"}
    app = create_base_app("test", {"store": down, "broker": down}, degrading={"broker"})
    assert app.test_client().get("/readyz").status_code == 503, "without its store a process cannot serve"


def test_metrics_are_prometheus_text(client):
    client.get("/healthz")
    r = client.get("/metrics")
    assert r.status_code == 200 and b"twincity_http_request_seconds" in r.data


def test_request_id_is_passed_on_and_becomes_the_correlation_id(client):
    r = client.post("/things", json={"name": "x"}, headers={"X-Request-ID": "req-from-gateway-1"})
    assert r.status_code == 201 and r.headers["X-Request-ID"] == "req-from-gateway-1"
    assert client.seen["correlation"] == "req-from-gateway-1"
    assert context.correlation_id.get() is None, "the request's context does not leak"


def test_a_bad_request_id_is_replaced(client):
    r = client.post("/things", json={"name": "x"}, headers={"X-Request-ID": "<script>"})
    assert r.headers["X-Request-ID"] != "<script>" and len(r.headers["X-Request-ID"]) == 36


@pytest.mark.parametrize(
    ("kwargs", "status", "says"),
    [
        ({"data": "{nope", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": "name=x", "content_type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({"json": [1, 2]}, 400, "JSON object"),
        ({"json": {"name": 5}}, 422, "see errors"),
        ({"json": {}}, 422, "see errors"),
    ],
)
def test_bad_input_gets_a_clear_problem(client, kwargs, status, says):
    r = client.post("/things", **kwargs)
    assert r.status_code == status and r.mimetype == PROBLEM
    assert says in r.json["detail"] and r.json["status"] == status and r.json["request_id"]


def test_validation_errors_say_which_field(client):
    assert client.post("/things", json={"name": 5}).json["errors"] == {"name": ["Not a valid string."]}


def test_problems_carry_their_extra_fields(client):
    r = client.get("/gone")
    assert r.status_code == 410 and r.json["idea"] == "i1" and r.json["detail"] == "this idea was withdrawn"


def test_unknown_route_and_wrong_method_are_problems(client):
    assert client.get("/nowhere").mimetype == PROBLEM
    r = client.delete("/things")
    assert r.status_code == 405 and r.mimetype == PROBLEM and "POST" in r.headers["Allow"]


def test_a_bug_is_a_logged_500_problem_without_internals(client):
    r = client.get("/bug")
    assert r.status_code == 500 and r.mimetype == PROBLEM and "ZeroDivision" not in r.get_data(as_text=True)
