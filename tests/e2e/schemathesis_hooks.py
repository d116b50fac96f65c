"""schemathesis hooks for tests/e2e/test_schemathesis_cli.py: real objects where a field names one.

A JSON Schema says a field is a string; some fields are references the server checks (the idea's theme is one of its
partnership's themes, a message's author a member of the project, a meeting's time one it offers). Drawn at random,
those make nearly every request a 422, which schemathesis reports as a mismatch between document and server. These
hooks put real values (of the lab the test made, passed in TWINCITY_ST_LAB as JSON) into those fields only; every
other field stays as schemathesis draws it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis

LAB: dict[str, Any] = json.loads(os.environ.get("TWINCITY_ST_LAB", "{}"))


@schemathesis.hook("map_body").apply_to(operation_id="submitIdea").apply_to(operation_id="changeIdea")
def an_idea_of_a_real_theme(ctx: Any, body: Any) -> Any:
    if isinstance(body, dict):
        body["theme"] = "ecology-health"
        for reference in ("author_id", "round_id", "partnerships", "version", "city"):
            body.pop(reference, None)  # references to other objects: left out, as most callers leave them
    return body


@schemathesis.hook("map_body").apply_to(operation_id="pairIdeas")
def two_real_ideas(ctx: Any, body: Any) -> Any:
    if isinstance(body, dict):
        body["ideas"] = LAB["pair"]
    return body


# Which field of each body names a member of the project (and whether it carries the meeting's times).
MEMBER_FIELD = {"postMessage": ("author_id", False), "proposeMeeting": ("proposer_id", True),
                "answerMeeting": ("participant_id", True), "scheduleMeeting": (None, False)}


@(schemathesis.hook("map_body").apply_to(operation_id="postMessage").apply_to(operation_id="proposeMeeting")
  .apply_to(operation_id="answerMeeting").apply_to(operation_id="scheduleMeeting"))
def a_member_and_an_offered_time(ctx: Any, body: Any) -> Any:
    """Messages and meetings come from a member of the project; a meeting's times are ones it offers (a time
    in the future, in its zone: the body's own `timezone` would read it elsewhere)."""
    if isinstance(body, dict):
        member_field, with_slots = MEMBER_FIELD[ctx.operation.definition.raw["operationId"]]
        if member_field:
            body[member_field] = LAB["member"]
        if with_slots:
            body["slots"] = [LAB["slot"]]
        if "slot" in body or member_field is None:
            body["slot"] = LAB["slot"]
        body.pop("timezone", None)
    return body


@schemathesis.hook("map_body").apply_to(operation_id="addKey")
def a_key_of_a_real_city(ctx: Any, body: Any) -> Any:
    """A city key (never with `admin`), or an admin key (always with it), ending within the ten years allowed."""
    if isinstance(body, dict):
        scopes = [s for s in body.get("scopes") or [] if s in ("read", "write", "admin")]
        if body.get("city") is not None:
            body.update(city="karlsruhe", scopes=[s for s in scopes if s != "admin"] or ["read"])
        else:
            body["scopes"] = sorted({"admin", *scopes})
        if body.get("expires_at") is not None:
            body["expires_at"] = "2030-06-30T00:00:00Z"
    return body


@schemathesis.hook("map_body").apply_to(operation_id="addPartnership")
def two_real_cities(ctx: Any, body: Any) -> Any:
    if isinstance(body, dict):
        body["cities"] = LAB["cities_to_twin"]
        body.pop("id", None)
    return body


@schemathesis.hook("map_body").apply_to(operation_id="changeRound")
def a_round_renamed(ctx: Any, body: Any) -> Any:
    """Three dates drawn apart are nearly never in order (collecting, then the workshop, then projects): the round
    is renamed, its dates kept (their rules are test_rounds.py's)."""
    if isinstance(body, dict):
        for field in ("collect_until", "workshop_at", "projects_from", "timezone", "version"):
            body.pop(field, None)
    return body
