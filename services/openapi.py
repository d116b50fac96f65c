"""OpenAPI 3 documents built from marshmallow schemas (apispec); each service documents its own routes.

A service lists its operations in an `ApiDocs`; the gateway merges the documents of all services under
/api/v1 with its own, so the public document always says what the running code does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An error (RFC 9457): what went wrong, in words a person can act on.",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "request_id": {"type": "string"},
        "errors": {"type": "object", "description": "Per field: what is wrong with it."},
    },
    "required": ["title", "status"],
}


@dataclass
class Operation:
    path: str
    method: str
    summary: str
    tag: str
    scope: str
    body: type[Schema] | None = None
    responses: Mapping[int, type[Schema] | str | None] = field(default_factory=dict)
    query: type[Schema] | None = None
    description: str = ""


class ApiDocs:
    def __init__(self, title: str) -> None:
        self.title = title
        self.operations: list[Operation] = []

    def operation(self, path: str, method: str, summary: str, *, tag: str, scope: str = "read",
                  body: type[Schema] | None = None, responses: Mapping[int, Any] | None = None,
                  query: type[Schema] | None = None, description: str = "") -> None:
        self.operations.append(Operation(path, method.lower(), summary, tag, scope, body,
                                         responses or {200: None}, query, description))

    def spec(self, prefix: str = "", version: str = "1.0.0") -> dict[str, Any]:
        return build_spec(self.title, version, self.operations, prefix)


def build_spec(title: str, version: str, operations: Sequence[Operation], prefix: str = "",
               description: str = "") -> dict[str, Any]:
    spec = APISpec(title=title, version=version, openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
                   info={"description": description} if description else {})
    spec.components.schema("Problem", PROBLEM_SCHEMA)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                                "description": "An API key: Authorization: Bearer tcl_..."})
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "summary": op.summary, "tags": [op.tag], "security": [{"bearer": []}],
            "description": (op.description + f"\n\nNeeds the `{op.scope}` scope.").strip(),
            "responses": {},
        }
        params = [{"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
                  for name in _path_params(op.path)]
        if op.query is not None:
            params.append({"in": "query", "schema": op.query})
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
        for status, schema in op.responses.items():
            response: dict[str, Any] = {"description": _STATUS_WORDS.get(status, "OK")}
            if isinstance(schema, str):
                response["description"] = schema
            elif schema is not None:
                response["content"] = {"application/json": {"schema": schema}}
            entry["responses"][str(status)] = response
        for status in (400, 401, 403, 404, 409, 413, 415, 422, 429):
            entry["responses"].setdefault(str(status), {
                "description": _STATUS_WORDS[status],
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            })
        paths.setdefault(prefix + op.path, {})[op.method] = entry
    for path, operations_of_path in paths.items():
        spec.path(path=path, operations=operations_of_path)
    return spec.to_dict()


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


_STATUS_WORDS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Malformed request",
    401: "No or unknown API key", 403: "The key lacks the scope, or the object belongs to another city",
    404: "Not found (or not visible to this key)", 409: "Conflict with the current state",
    413: "Request body too large", 415: "Not JSON", 422: "Invalid fields (see errors)",
    429: "Too many requests",
}
