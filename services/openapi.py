"""OpenAPI 3 documents built from marshmallow schemas (apispec); each service documents its own routes.

A service lists its operations in an `ApiDocs`; the gateway merges the documents of all services under
/api/v1 with its own, so the public document always says what the running code does.
"""

from __future__ import annotations

import re
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
    operation_id: str = ""  # where the view's name says too little (`accept` -> `acceptMatch`)


class ApiDocs:
    def __init__(self, title: str) -> None:
        self.title = title
        self.operations: list[Operation] = []

    def operation(self, path: str, method: str, summary: str, *, tag: str, scope: str = "read",
                  body: type[Schema] | None = None, responses: Mapping[int, Any] | None = None,
                  query: type[Schema] | None = None, description: str = "", operation_id: str = "") -> None:
        self.operations.append(Operation(path, method.lower(), summary, tag, scope, body,
                                         responses or {200: None}, query, description, operation_id))

    def spec(self, prefix: str = "", version: str = "1.0.0", names: Mapping[tuple[str, str], str] | None = None
             ) -> dict[str, Any]:
        return build_spec(self.title, version, self.operations, prefix, names=names)


def view_names(url_map: Any, prefix: str = "") -> dict[tuple[str, str], str]:
    """(path as the document writes it, below `prefix`; method) -> the name of the Flask view that answers it.

    The views' names are the operations' ids (`listIdeas`, `acceptMatch`): one name in the code and in clients.
    """
    names: dict[tuple[str, str], str] = {}
    for rule in url_map.iter_rules():
        path = _shape(rule.rule)
        if not path.startswith(prefix):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            names[(path.removeprefix(prefix), method.lower())] = rule.endpoint.rsplit(".", 1)[-1]
    return names


def _shape(path: str) -> str:
    """A path with its parameters unnamed (a Flask rule's <wid> and the document's {webhook_id} alike)."""
    return re.sub(r"<[^<>]+>|\{[^{}]+\}", "{}", path)


def operation_id(op: Operation, names: Mapping[tuple[str, str], str]) -> str:
    """camelCase of the view's name; of the method and path where no view is known (a document without an app)."""
    name = op.operation_id or names.get((_shape(op.path), op.method)) or "_".join(
        [op.method, *(part.strip("{}") for part in op.path.split("/") if part)])
    head, *rest = re.split(r"[_\-]+", name)
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def build_spec(title: str, version: str, operations: Sequence[Operation], prefix: str = "",
               description: str = "", names: Mapping[tuple[str, str], str] | None = None) -> dict[str, Any]:
    spec = APISpec(title=title, version=version, openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
                   info={"description": description} if description else {})
    spec.components.schema("Problem", PROBLEM_SCHEMA)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                                "description": "An API key: Authorization: Bearer tcl_..."})
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": operation_id(op, names or {}), "summary": op.summary, "tags": [op.tag],
            "security": [{"bearer": []}],
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
        for status in ERROR_STATUSES:
            entry["responses"].setdefault(str(status), {
                "description": _STATUS_WORDS[status],
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            })
        paths.setdefault(prefix + op.path, {})[op.method] = entry
    for path, operations_of_path in paths.items():
        spec.path(path=path, operations=operations_of_path)
    return spec.to_dict()


# What any operation may answer besides its own: the gateway's checks (key, scope, body, rate) come first, the
# services' refusals (unknown, conflict, invalid) next, and the gateway's word when a service is not reached.
ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503, 504)


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


_STATUS_WORDS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Malformed request",
    401: "No or unknown API key", 403: "The key lacks the scope, or the object belongs to another city",
    404: "Not found (or not visible to this key)", 409: "Conflict with the current state",
    413: "Request body too large", 415: "Not JSON", 422: "Invalid fields (see errors)",
    429: "Too many requests (wait as Retry-After says)",
    503: "A service could not be reached: with Retry-After nothing was done, send it again then; without it, "
         "the connection broke after the change was sent (read before sending it again)",
    504: "A service did not answer in time (the change may have been made: read before sending it again)",
}
