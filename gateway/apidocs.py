"""The API's description for people: the order and words of its tags, examples recorded from real calls, /docs.

The OpenAPI document is built from the code (services/openapi.py: each service's operations and marshmallow
schemas); this module finishes it for its readers. Its tags come in the order a city website developer needs
them (what participants and cities do first, the admin's last), and each operation's success answer carries an
example: a real request and answer, recorded by tests/e2e/test_isolation.py (`scripts/openapi-examples` renews
them; tests/e2e/test_api.py checks each against its schema).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from flask import render_template_string
from markupsafe import Markup, escape

# (tag, what its operations are for), in the order the document and /docs show them.
TAGS: tuple[tuple[str, str], ...] = (
    ("Ideas", "Project ideas of your city and its partner cities: submit, browse and search, change, withdraw."),
    ("Matches", "Ideas and people of partner cities that fit, with their reasons; both sides accept or decline. "
                "Coordinators see the candidates, pair ideas by hand and withdraw proposals."),
    ("Projects", "Joint projects formed by confirmed matches: members, plan, messages, meetings, join requests."),
    ("Participants", "The people of your city, invitations and sign-ups."),
    ("Notifications", "A participant's in-app inbox."),
    ("Rounds", "Rounds of a partnership's lab (collecting, workshop, projects) and their reports."),
    ("Themes", "The themes ideas can have."),
    ("Webhooks", "Events sent to your own HTTP endpoint, signed with your secret (docs/integrate.md)."),
    ("Partnerships", "Twinned cities, and how each partnership matches."),
    ("Cities", "The cities of this deployment."),
    ("API keys", "Keys and their scopes (admin)."),
    ("Audit", "What admin keys changed (admin)."),
)
EXAMPLES = Path(__file__).with_name("openapi_examples.json")


@cache
def examples() -> dict[str, dict[str, Any]]:
    """"METHOD /path" -> {"status", "request"?, "response"?}: one real call of each operation."""
    return json.loads(EXAMPLES.read_text(encoding="utf-8")) if EXAMPLES.exists() else {}


def finish(spec: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The merged document with its tags in order and each operation's recorded example."""
    spec["tags"] = [{"name": name, "description": words} for name, words in TAGS]
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            example = examples().get(f"{method.upper()} {path.removeprefix(prefix)}")
            if example:
                _attach(op, example)
    return spec


def _attach(op: dict[str, Any], example: Mapping[str, Any]) -> None:
    if "request" in example and "requestBody" in op:
        op["requestBody"]["content"]["application/json"]["example"] = example["request"]
    answer = op.get("responses", {}).get(str(example["status"]), {})
    if "response" in example and "application/json" in answer.get("content", {}):
        answer["content"]["application/json"]["example"] = example["response"]


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Twin City Lab API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/pages/docs.css"></head><body>
<h1>Twin City Lab API</h1>
<p>Every call needs <code>Authorization: Bearer &lt;key&gt;</code>. Errors are
<code>application/problem+json</code> with a <code>detail</code> that says what is wrong. Lists return
<code>items</code> and, when there is more, <code>next_cursor</code>: send it back as <code>cursor</code>.
The machine-readable document is <a href="{{ prefix }}/openapi.json">{{ prefix }}/openapi.json</a>; the guide for
city websites and chat bots (keys, first calls, paging, errors, webhooks and their signatures) is
<code>docs/integrate.md</code> in the repository.</p>
<nav aria-label="Contents"><h2 id="contents">Contents</h2><ol class="toc">
{% for tag in tags %}<li><a href="#{{ tag.id }}">{{ tag.name }}</a> — {{ tag.description }}<ul>
{% for op in tag.ops %}<li><a href="#{{ op.id }}"><span class="m">{{ op.method|upper }}</span>
<code>{{ op.path }}</code></a> {{ op.summary }}</li>{% endfor %}</ul></li>{% endfor %}</ol></nav>
{% for tag in tags %}<section><h2 id="{{ tag.id }}">{{ tag.name }}</h2><p>{{ tag.description }}</p>
{% for op in tag.ops %}<div class="op" id="{{ op.id }}"><h3><span class="m">{{ op.method|upper }}</span>
<code>{{ op.path }}</code> — {{ op.summary }}</h3>
<p class="opid">operationId <code>{{ op.operation_id }}</code></p>
{% if op.description %}<p>{{ op.description }}</p>{% endif %}
{% if op.params %}<table><caption>Parameters</caption><tr><th>name</th><th>in</th><th>type</th><th>required</th>
<th>meaning</th></tr>{% for p in op.params %}<tr><td><code>{{ p.name }}</code></td><td>{{ p.where }}</td>
<td>{{ p.type }}</td><td>{{ "yes" if p.required else "" }}</td><td>{{ p.description }}</td></tr>{% endfor %}</table>
{% endif %}
{% if op.fields %}<table><caption>Body</caption><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>
{% for f in op.fields %}<tr><td><code>{{ f.name }}</code></td><td>{{ f.type }}</td>
<td>{{ "yes" if f.required else "" }}</td><td>{{ f.description }}</td></tr>{% endfor %}</table>{% endif %}
{% if op.example %}<details><summary>Example</summary>
<pre>{{ op.example.curl }}</pre>
{% if op.example.request is defined %}<p>Request body</p><pre>{{ op.example.request }}</pre>{% endif %}
<p>Answer: {{ op.example.status }}</p>{% if op.example.response is defined %}<pre>{{ op.example.response }}</pre>
{% endif %}</details>{% endif %}
</div>{% endfor %}<p><a href="#contents">Contents</a></p></section>{% endfor %}
</body></html>"""


def docs_page(spec: Mapping[str, Any], prefix: str, origin: str = "") -> str:
    """A readable page of the OpenAPI document, rendered on the server (works without JavaScript)."""
    tags = {name: {"id": _anchor(name), "name": name, "description": words, "ops": []} for name, words in TAGS}
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            tag = op.get("tags", ["Other"])[0]
            tags.setdefault(tag, {"id": _anchor(tag), "name": tag, "description": "", "ops": []})["ops"].append({
                "id": op.get("operationId") or _anchor(f"{method}-{path}"), "operation_id": op.get("operationId"),
                "method": method, "path": path, "summary": op.get("summary", ""),
                "description": _code(op.get("description", "")), "fields": _fields(spec, op),
                "params": _params(op), "example": _shown_example(
                    method, path, examples().get(f"{method.upper()} {path.removeprefix(prefix)}"), origin),
            })
    return render_template_string(DOCS_PAGE, tags=[tag for tag in tags.values() if tag["ops"]], prefix=prefix)


def _fields(spec: Mapping[str, Any], op: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request body's fields: name, type, whether required, meaning."""
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    schema = spec.get("components", {}).get("schemas", {}).get(body.get("$ref", "").rsplit("/", 1)[-1], {})
    return [{"name": name, "type": prop.get("type", "object"), "required": name in schema.get("required", []),
             "description": prop.get("description", "")} for name, prop in schema.get("properties", {}).items()]


def _params(op: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The path and query parameters: name, where, type, whether required, meaning."""
    return [{"name": p["name"], "where": p["in"], "type": p.get("schema", {}).get("type", ""),
             "required": p.get("required", False), "description": p.get("description", "")}
            for p in op.get("parameters", []) if "name" in p]


def _shown_example(method: str, path: str, example: Mapping[str, Any] | None, origin: str) -> dict[str, Any] | None:
    """The recorded call as a curl line, its body and its answer, for the page."""
    if not example:
        return None
    shown = {key: json.dumps(example[key], ensure_ascii=False, indent=2)
             for key in ("request", "response") if key in example}
    verb = "" if method == "get" else f" -X {method.upper()}"
    curl = f'curl -sg{verb} "{origin}{path}" -H "Authorization: Bearer $KEY"'
    if "request" in example:
        body = json.dumps(example["request"], ensure_ascii=False).replace("'", "'\\''")
        curl += " \\\n     -H 'Content-Type: application/json' -d '" + body + "'"
    return {"status": example["status"], "curl": curl, **shown}


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _code(text: str) -> Markup:
    """OpenAPI descriptions are Markdown: `x` shows as code on the page (the rest stays escaped text)."""
    return Markup(re.sub(r"`([^`<>]+)`", r"<code>\1</code>", str(escape(text))))
