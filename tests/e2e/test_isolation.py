"""Isolation proven for every endpoint: each route of the OpenAPI document, called by every kind of caller.

One row per (method, path) of GET /api/v1/openapi.json (a route without a row fails
`test_the_table_has_a_row_for_every_documented_route`), with the exact status for a key of the owner city
(Karlsruhe), of its partner in the object's partnership (Krasnodar), of its partner in another partnership
(Nancy: twinned with Karlsruhe, not with Krasnodar), of a city of another partnership (Dijon), for Karlsruhe's
read-only key and for the admin key. A revoked key, the old secret of a rotated key and no key get 401 everywhere.
Every answer is also searched for what the caller must not learn (e-mail addresses, other cities' object ids,
secrets).

The objects are made once for the module (in-process platform on memory://). Rows that change their object
(delete, withdraw, accept, ...) get a fresh one for each call, so no row depends on the order rows run in.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import ADMIN, Api, running_platform
from tests.e2e.test_matching import GARDEN_DE, GARDEN_RU

SECRET = "isolation-webhook-secret-0123456789"
HOOK_URL = "http://127.0.0.1:9/hook"  # registration only resolves the host; nothing listens there
PLAIN_IDEA = {"title": "Digitale Bürgerbeteiligung im Rathaus",
              "description": "Ein Portal, in dem Bürgerinnen und Bürger Anträge online stellen und verfolgen.",
              "theme": "city-admin-development", "tags": ["verwaltung"]}
UNLIMITED = "100000/minute"  # hundreds of calls with one key: keep the rate limit out of the way

# Columns of the table, and the order of the calls in a row: refusals first, the successful callers last.
COLUMNS = ("owner", "krasnodar", "nancy", "dijon", "read", "admin")
CALL_ORDER = ("revoked", "rotated", "none", "read", "dijon", "nancy", "krasnodar", "owner", "admin")
UNAUTHENTICATED = ("revoked", "rotated", "none")


@dataclass
class Lab:
    """The lab of conftest.Api.lab() and, owned by Karlsruhe, one of each kind of object."""

    api: Api
    keys: dict[str, str | None]
    participant: str
    email: str
    idea: str  # a plain idea, for reading and changing
    matched_idea: str  # an idea with proposals in Karlsruhe–Krasnodar
    match: str  # proposed, stays unanswered
    project: str
    webhook: str
    notification: str
    idea_ids: list[str]
    match_ids: list[str]
    open_matches: list[str] = field(default_factory=list)  # proposed; each taken by one call that answers
    member: str = ""  # Lea, Karlsruhe's member of the project
    meeting: str = ""  # a meeting of the project offered with one time (`slot`)
    slot: str = ""
    request: str = ""  # a join request of the project, answered by the first call that accepts or declines
    round: str = ""  # a round of Karlsruhe–Krasnodar
    sign_up: str = ""  # a sign-up of Karlsruhe waiting for an answer
    counter: Iterator[int] = field(default_factory=itertools.count)

    @classmethod
    def build(cls, api: Api) -> Lab:
        keys: dict[str, str | None] = dict(api.lab())
        k, kr = keys["karlsruhe"], keys["krasnodar"]
        revoked = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read", "write"]})
        assert api.call("DELETE", f"/api-keys/{revoked['id']}").status_code == 204
        rotated = api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read", "write"]})
        api.ok("POST", f"/api-keys/{rotated['id']}/rotate")
        keys.update(owner=k, read=keys["karlsruhe-read"], admin=ADMIN, revoked=revoked["key"],
                    rotated=rotated["key"], none=None)

        # Every Karlsruhe–Krasnodar pair below gets proposed (identical texts: no pair may crowd out another).
        api.ok("PUT", "/partnerships/karlsruhe-krasnodar/matching", body={"top_k": 20})
        email = "jonas.isolation@example.org"
        person = api.ok("POST", "/participants", k, {"name": "Jonas", "email": email, "language": "de",
                                                     "preferences": {"channels": ["inbox"], "digest": "immediate"}})
        # The project's members (accepting a match shares their addresses with the partners, by design): Lea of
        # Karlsruhe and Anna of Krasnodar. Jonas's address stays Karlsruhe's: his match stays unanswered.
        lea = api.ok("POST", "/participants", k, {"name": "Lea", "email": "lea.project@example.org", "language": "de"})
        anna = api.ok("POST", "/participants", kr, {"name": "Анна", "email": "anna.project@example.org",
                                                    "language": "ru"})
        api.settle()  # the notify service knows Jonas before his idea is matched: an inbox entry
        authors = {0: (lea["id"], anna["id"]), 1: (person["id"], None)}
        pairs = [(api.ok("POST", "/ideas", k, {**GARDEN_DE, "author_id": authors.get(i, (None,))[0]}),
                  api.ok("POST", "/ideas", kr, {**GARDEN_RU, "author_id": authors.get(i, (None, None))[1]}))
                 for i in range(9)]

        def match_of(de: dict[str, Any], ru: dict[str, Any]) -> str | None:
            found = [m["id"] for m in api.ok("GET", f"/ideas/{de['id']}/matches", k)["items"]
                     if ru["id"] in {s["idea_id"] for s in m["sides"]}]
            return found[0] if found else None

        for de, ru in pairs:
            wait_for(lambda de=de, ru=ru: match_of(de, ru), 30, 0.05, message="a proposal for each pair")
        matches = [match_of(de, ru) for de, ru in pairs]
        api.ok("POST", f"/matches/{matches[0]}/accept", k)
        assert api.ok("POST", f"/matches/{matches[0]}/accept", kr)["status"] == "confirmed"
        wait_for(lambda: api.ok("GET", "/projects", k)["items"], 30, message="the project")
        [project] = api.ok("GET", "/projects", k)["items"]

        idea = api.ok("POST", "/ideas", k, PLAIN_IDEA)
        hook = api.ok("POST", "/webhooks", k, {"url": HOOK_URL, "events": ["*"], "secret": SECRET})
        inbox = f"/participants/{person['id']}/notifications"
        wait_for(lambda: api.ok("GET", inbox, k)["items"], 30, message="an inbox entry")
        notification = api.ok("GET", inbox, k)["items"][0]["id"]
        start = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
        meeting = api.ok("POST", f"/projects/{project['id']}/meetings", k, {
            "proposer_id": lea["id"], "title": "Kennenlernen", "duration_minutes": 60, "slots": [start.isoformat()]})
        lab = cls(api=api, keys=keys, participant=person["id"], email=email, idea=idea["id"],
                  matched_idea=pairs[1][0]["id"], match=matches[1], project=project["id"], webhook=hook["id"],
                  notification=notification, idea_ids=[idea["id"]] + [de["id"] for de, _ in pairs],
                  match_ids=list(matches), open_matches=list(matches[2:]), member=lea["id"], meeting=meeting["id"],
                  slot=start.isoformat())
        lab.request = lab.join_request()
        lab.round = lab.new_round()
        lab.sign_up = lab.new_sign_up()
        return lab

    # --- fresh objects for calls that change or remove theirs -------------------------------------------------

    def n(self) -> int:
        return next(self.counter)

    def new_idea(self) -> str:
        return self.api.ok("POST", "/ideas", self.keys["owner"], PLAIN_IDEA)["id"]

    def new_pair(self) -> dict[str, Any]:
        """Two fresh ideas of Karlsruhe and Krasnodar, once matching has heard of both, for a coordinator to pair."""
        a = self.api.ok("POST", "/ideas", self.keys["owner"], PLAIN_IDEA)["id"]
        b = self.api.ok("POST", "/ideas", self.keys["krasnodar"], {  # nothing like any other: never proposed
            "title": "Ремонт подъездов", "description": "Жильцы сами красят стены и меняют лампы в подъездах.",
            "theme": "leisure-youth-social", "tags": []})["id"]
        self.api.settle()
        return {"ideas": [a, b], "note": "Beide wollen lesen"}

    def new_participant(self) -> str:
        return self.api.ok("POST", "/participants", self.keys["owner"], self.participant_body())["id"]

    def new_webhook(self) -> str:
        return self.api.ok("POST", "/webhooks", self.keys["owner"], self.webhook_body())["id"]

    def new_key(self) -> str:
        return self.api.ok("POST", "/api-keys", body={"city": "karlsruhe", "scopes": ["read"]})["id"]

    def join_request(self) -> str:
        """A fresh request of a fresh Karlsruhe participant to join the project."""
        person = self.new_participant()
        self.api.settle()  # matching knows the person
        return self.api.ok("POST", f"/projects/{self.project}/join-requests", self.keys["owner"],
                           {"participant_id": person, "message": "Darf ich mitmachen?"})["id"]

    def new_sign_up(self) -> str:
        """A sign-up for Karlsruhe whose address is confirmed (made in the gateway's store, as the pages would)."""
        from gateway.api import EXTENSION

        invitations = self.api.platform.gateway.extensions[EXTENSION].invitations
        doc, _token = invitations.request_sign_up("karlsruhe", f"self{self.n()}@example.org",
                                                  {"name": "Selma", "language": "de", "interests": ""})
        assert invitations.move(doc["_id"], "requested", "confirmed")
        return doc["_id"]

    def round_body(self) -> dict[str, Any]:
        """A round that collected until yesterday (its workshop to come): one of many beside each other, as only
        one round of a partnership may collect at a time."""
        day = datetime.now(UTC).date() - timedelta(days=2)
        return {"name": f"Runde {self.n()}", "collect_until": day.isoformat(),
                "workshop_at": f"{(day + timedelta(days=5)).isoformat()}T10:00:00+01:00",
                "projects_from": (day + timedelta(days=8)).isoformat(), "timezone": "Europe/Berlin"}

    def new_round(self) -> str:
        return self.api.ok("POST", "/partnerships/karlsruhe-krasnodar/rounds", self.keys["owner"],
                           self.round_body())["id"]

    def joiner(self) -> dict[str, Any]:
        person = self.new_participant()
        self.api.settle()
        return {"participant_id": person, "message": "Ich gieße gern."}

    def open_match(self) -> str:
        assert self.open_matches, "no unanswered match left in the pool: make more pairs in Lab.build"
        return self.open_matches.pop()

    # --- bodies ---------------------------------------------------------------------------------------------

    def participant_body(self) -> dict[str, Any]:
        return {"name": "Paula", "email": f"paula{self.n()}@example.org", "language": "de", "city": "karlsruhe"}

    def webhook_body(self) -> dict[str, Any]:
        return {"url": HOOK_URL, "events": ["idea.submitted"], "secret": SECRET, "city": "karlsruhe"}

    def city_body(self) -> dict[str, Any]:
        return {"key": f"isolation-{self.n()}", "name": "Isolation", "country": "DE", "language": "de"}

    def partnership_body(self) -> dict[str, Any]:
        a, b = (self.api.ok("POST", "/cities", body=self.city_body())["key"] for _ in range(2))
        return {"cities": [a, b], "name": f"{a}–{b}"}

    # --- what a caller must never read ----------------------------------------------------------------------

    def hidden_from(self, role: str) -> set[str]:
        hidden = {SECRET} | {secret for secret in self.keys.values() if secret}
        if role in ("owner", "read", "admin"):
            return hidden
        hidden |= {self.email, self.webhook, self.notification}  # Karlsruhe's own, even for its partners
        if role == "krasnodar":
            return hidden
        hidden |= {*self.match_ids, self.project}  # Karlsruhe–Krasnodar's: Nancy is not in it
        if role == "nancy":
            return hidden
        return hidden | {*self.idea_ids, self.participant, "krasnodar", "Краснодар"}


def unauthenticated(role: str) -> bool:
    return role in UNAUTHENTICATED


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as in the OpenAPI document, below /api/v1
    statuses: tuple[int, int, int, int, int, int]  # in the order of COLUMNS
    url: Callable[[Lab, bool], str]  # (lab, the call should succeed) -> the URL to call
    body: Callable[[Lab], Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def expected(self) -> dict[str, int]:
        table = dict(zip(COLUMNS, self.statuses, strict=True))
        return {role: 401 if unauthenticated(role) else table[role] for role in CALL_ORDER}

    def matches(self, url: str) -> bool:
        pattern = re.sub(r"\\{[a-z_]+\\}", "[^/?]+", re.escape(self.path))
        return re.fullmatch(pattern + r"(\?.*)?", url) is not None


ADMIN_ONLY = (403, 403, 403, 403, 403)  # every city key, with any scope

ROUTES: tuple[Route, ...] = (
    #     method    path                          owner krasnod nancy dijon read  admin
    Route("POST", "/cities", (*ADMIN_ONLY, 201), lambda x, _: "/cities", lambda x: x.city_body()),
    Route("GET", "/cities", (200, 200, 200, 200, 200, 200), lambda x, _: "/cities"),
    Route("PATCH", "/cities/{city}", (*ADMIN_ONLY, 200), lambda x, _: "/cities/dijon",
          lambda x: {"names": {"de": f"Dijon {x.n()}"}}),
    Route("POST", "/partnerships", (*ADMIN_ONLY, 201), lambda x, _: "/partnerships",
          lambda x: x.partnership_body()),
    Route("GET", "/partnerships", (200, 200, 200, 200, 200, 200), lambda x, _: "/partnerships"),
    Route("POST", "/api-keys", (*ADMIN_ONLY, 201), lambda x, _: "/api-keys",
          lambda x: {"city": "karlsruhe", "scopes": ["read", "write"]}),
    Route("GET", "/api-keys", (*ADMIN_ONLY, 200), lambda x, _: "/api-keys"),
    Route("DELETE", "/api-keys/{key_id}", (*ADMIN_ONLY, 204), lambda x, _: f"/api-keys/{x.new_key()}"),
    Route("POST", "/api-keys/{key_id}/rotate", (*ADMIN_ONLY, 200), lambda x, _: f"/api-keys/{x.new_key()}/rotate"),
    Route("GET", "/audit", (*ADMIN_ONLY, 200), lambda x, _: "/audit"),
    Route("GET", "/themes", (200, 200, 404, 404, 200, 200), lambda x, _: "/themes?partnership=karlsruhe-krasnodar"),
    # ideas: partners read, only the own city changes; another partnership's do not exist
    Route("POST", "/ideas", (201, 403, 403, 403, 403, 201), lambda x, _: "/ideas",
          lambda x: {**PLAIN_IDEA, "city": "karlsruhe"}),
    Route("GET", "/ideas", (200, 200, 200, 200, 200, 200), lambda x, _: "/ideas?city=karlsruhe"),
    Route("GET", "/ideas/{idea_id}", (200, 200, 200, 404, 200, 200), lambda x, _: f"/ideas/{x.idea}"),
    Route("PATCH", "/ideas/{idea_id}", (200, 403, 403, 404, 403, 200), lambda x, _: f"/ideas/{x.idea}",
          lambda x: {"description": f"Jetzt auch mit Terminbuchung ({x.n()})."}),
    Route("POST", "/ideas/{idea_id}/withdraw", (200, 403, 403, 404, 403, 200),
          lambda x, _: f"/ideas/{x.new_idea()}/withdraw"),
    # participants: partners read without the e-mail address
    Route("POST", "/participants", (201, 403, 403, 403, 403, 201), lambda x, _: "/participants",
          lambda x: x.participant_body()),
    Route("GET", "/participants", (200, 200, 200, 200, 200, 422), lambda x, _: "/participants?q=a"),
    Route("POST", "/invitations", (201, 201, 201, 201, 403, 422), lambda x, _: "/invitations",
          lambda x: {"email": f"invited{x.n()}@example.org", "language": "de"}),
    Route("GET", "/invitations", (200, 200, 200, 200, 200, 422), lambda x, _: "/invitations"),
    Route("PUT", "/cities/{city}/sign-up", (200, 403, 403, 403, 403, 200), lambda x, _: "/cities/karlsruhe/sign-up",
          lambda x: {"mode": "approval"}),
    Route("GET", "/sign-ups", (200, 200, 200, 200, 200, 422), lambda x, _: "/sign-ups"),
    Route("POST", "/sign-ups/{signup_id}/approve", (200, 404, 404, 404, 403, 200),
          lambda x, ok: f"/sign-ups/{x.new_sign_up() if ok else x.sign_up}/approve"),
    Route("POST", "/sign-ups/{signup_id}/decline", (200, 404, 404, 404, 403, 200),
          lambda x, ok: f"/sign-ups/{x.new_sign_up() if ok else x.sign_up}/decline"),
    Route("GET", "/participants/{participant_id}", (200, 200, 200, 404, 200, 200),
          lambda x, _: f"/participants/{x.participant}"),
    Route("PATCH", "/participants/{participant_id}", (200, 403, 403, 404, 403, 200),
          lambda x, _: f"/participants/{x.participant}", lambda x: {"name": f"Jonas {x.n()}"}),
    Route("DELETE", "/participants/{participant_id}", (204, 403, 403, 404, 403, 204),
          lambda x, _: f"/participants/{x.new_participant()}"),
    # matching: a match and a project belong to their partnership; only its cities answer
    Route("GET", "/ideas/{idea_id}/matches", (200, 200, 200, 404, 200, 200),
          lambda x, _: f"/ideas/{x.matched_idea}/matches"),
    Route("GET", "/matches", (200, 200, 200, 200, 200, 200), lambda x, _: "/matches?city=karlsruhe"),
    Route("GET", "/matches/{match_id}", (200, 200, 404, 404, 200, 200), lambda x, _: f"/matches/{x.match}"),
    Route("POST", "/matches/{match_id}/accept", (200, 200, 404, 404, 403, 403),
          lambda x, ok: f"/matches/{x.open_match() if ok else x.match}/accept"),
    Route("POST", "/matches/{match_id}/decline", (200, 200, 404, 404, 403, 403),
          lambda x, ok: f"/matches/{x.open_match() if ok else x.match}/decline"),
    Route("GET", "/ideas/{idea_id}/candidates", (200, 200, 200, 404, 200, 200),
          lambda x, _: f"/ideas/{x.matched_idea}/candidates"),
    # a coordinator pairs ideas of the two cities by hand (Nancy and Dijon do not see Krasnodar's: no such idea)
    Route("POST", "/matches", (201, 201, 422, 422, 403, 201), lambda x, _: "/matches", lambda x: x.new_pair()),
    Route("POST", "/matches/{match_id}/withdraw", (200, 200, 404, 404, 403, 200),
          lambda x, ok: f"/matches/{x.open_match() if ok else x.match}/withdraw", lambda x: {"reason": "Doppelt"}),
    Route("GET", "/projects", (200, 200, 200, 200, 200, 200), lambda x, _: "/projects"),
    Route("GET", "/projects/{project_id}", (200, 200, 404, 404, 200, 200), lambda x, _: f"/projects/{x.project}"),
    # a project: its two cities change and talk in it (in their own members' names); admin keys read its plan only
    Route("PATCH", "/projects/{project_id}", (200, 200, 404, 404, 403, 403), lambda x, _: f"/projects/{x.project}",
          lambda x: {"next_steps": [f"Treffen Nr. {x.n()}"]}),
    Route("POST", "/projects/{project_id}/messages", (201, 422, 404, 404, 403, 403),
          lambda x, _: f"/projects/{x.project}/messages", lambda x: {"author_id": x.member, "text": "Hallo!"}),
    Route("GET", "/projects/{project_id}/messages", (200, 200, 404, 404, 200, 403),
          lambda x, _: f"/projects/{x.project}/messages"),
    Route("POST", "/projects/{project_id}/meetings", (201, 422, 404, 404, 403, 403),
          lambda x, _: f"/projects/{x.project}/meetings",
          lambda x: {"proposer_id": x.member, "title": "Call", "duration_minutes": 30, "slots": [x.slot]}),
    Route("GET", "/meetings/{meeting_id}", (200, 200, 404, 404, 200, 200), lambda x, _: f"/meetings/{x.meeting}"),
    Route("POST", "/meetings/{meeting_id}/answer", (200, 422, 404, 404, 403, 403),
          lambda x, _: f"/meetings/{x.meeting}/answer", lambda x: {"participant_id": x.member, "slots": [x.slot]}),
    Route("POST", "/meetings/{meeting_id}/schedule", (200, 200, 404, 404, 403, 403),
          lambda x, _: f"/meetings/{x.meeting}/schedule", lambda x: {"slot": x.slot}),
    Route("POST", "/projects/{project_id}/join-requests", (201, 422, 404, 404, 403, 403),
          lambda x, _: f"/projects/{x.project}/join-requests", lambda x: x.joiner()),
    Route("POST", "/join-requests/{request_id}/accept", (200, 200, 404, 404, 403, 403),
          lambda x, ok: f"/join-requests/{x.join_request() if ok else x.request}/accept"),
    Route("POST", "/join-requests/{request_id}/decline", (200, 200, 404, 404, 403, 403),
          lambda x, ok: f"/join-requests/{x.join_request() if ok else x.request}/decline"),
    # rounds of a partnership: its cities open and move them on; others do not see them
    Route("POST", "/partnerships/{partnership_id}/rounds", (201, 201, 404, 404, 403, 201),
          lambda x, _: "/partnerships/karlsruhe-krasnodar/rounds", lambda x: x.round_body()),
    Route("POST", "/partnerships/{partnership_id}/adopt-ideas", (200, 200, 404, 404, 403, 200),
          lambda x, _: "/partnerships/karlsruhe-krasnodar/adopt-ideas"),
    Route("GET", "/partnerships/{partnership_id}/rounds", (200, 200, 404, 404, 200, 200),
          lambda x, _: "/partnerships/karlsruhe-krasnodar/rounds"),
    Route("GET", "/rounds/{round_id}", (200, 200, 404, 404, 200, 200), lambda x, _: f"/rounds/{x.round}"),
    Route("PATCH", "/rounds/{round_id}", (200, 200, 404, 404, 403, 200), lambda x, _: f"/rounds/{x.round}",
          lambda x: {"name": f"Runde {x.n()} (umbenannt)"}),
    Route("GET", "/rounds/{round_id}/report", (200, 200, 404, 404, 200, 200),
          lambda x, _: f"/rounds/{x.round}/report"),
    Route("POST", "/rounds/{round_id}/advance", (200, 200, 404, 404, 403, 200),
          lambda x, ok: f"/rounds/{x.new_round() if ok else x.round}/advance"),
    Route("GET", "/partnerships/{partnership_id}/matching", (200, 200, 404, 404, 200, 200),
          lambda x, _: "/partnerships/karlsruhe-krasnodar/matching"),
    Route("PUT", "/partnerships/{partnership_id}/matching", (*ADMIN_ONLY, 200),
          lambda x, _: "/partnerships/karlsruhe-krasnodar/matching", lambda x: {"top_k": 20}),
    # webhooks and inboxes: private to their own city, partners included
    Route("POST", "/webhooks", (201, 403, 403, 403, 403, 201), lambda x, _: "/webhooks", lambda x: x.webhook_body()),
    Route("GET", "/webhooks", (200, 200, 200, 200, 200, 200), lambda x, _: "/webhooks"),
    Route("GET", "/webhooks/{webhook_id}", (200, 404, 404, 404, 200, 200), lambda x, _: f"/webhooks/{x.webhook}"),
    Route("DELETE", "/webhooks/{webhook_id}", (204, 404, 404, 404, 403, 204),
          lambda x, _: f"/webhooks/{x.new_webhook()}"),
    Route("POST", "/webhooks/{webhook_id}/ping", (202, 404, 404, 404, 403, 202),
          lambda x, _: f"/webhooks/{x.webhook}/ping"),
    Route("POST", "/webhooks/{webhook_id}/resume", (200, 404, 404, 404, 403, 200),
          lambda x, _: f"/webhooks/{x.webhook}/resume"),
    Route("GET", "/webhooks/{webhook_id}/deliveries", (200, 404, 404, 404, 200, 200),
          lambda x, _: f"/webhooks/{x.webhook}/deliveries"),
    Route("GET", "/participants/{participant_id}/notifications", (200, 404, 404, 404, 200, 200),
          lambda x, _: f"/participants/{x.participant}/notifications"),
    Route("POST", "/participants/{participant_id}/notifications/{notification_id}/read",
          (200, 404, 404, 404, 403, 200),
          lambda x, _: f"/participants/{x.participant}/notifications/{x.notification}/read"),
)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_platform("memory://", webhook_allow=("127.0.0.0/8",), rate_limit=UNLIMITED) as api:
        yield Lab.build(api)
    if os.environ.get("TWINCITY_RECORD_EXAMPLES"):  # scripts/openapi-examples
        record_examples(RECORDED, Path(os.environ["TWINCITY_RECORD_EXAMPLES"]))


# The first successful call of each route (a city key's where one succeeds), for the OpenAPI document's examples.
RECORDED: dict[str, dict[str, Any]] = {}


def remember(route: Route, body: Any, response: Any) -> None:
    if route.label in RECORDED or response.status_code >= 300:
        return
    example: dict[str, Any] = {"status": response.status_code}
    if body is not None:
        example["request"] = body
    if response.status_code != 204:
        example["response"] = response.json_body
    RECORDED[route.label] = example


def record_examples(recorded: dict[str, dict[str, Any]], path: Path) -> None:
    """Writes the examples, lists cut to their first two items and secrets replaced by a placeholder."""
    def shortened(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: shortened(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [shortened(v) for v in value[:2]]
        if key == "key" and isinstance(value, str) and value.startswith("tcl_"):
            return "tcl_EXAMPLE-the-secret-is-shown-once"
        return value

    examples = {label: shortened(recorded[label]) for label in sorted(recorded)}
    path.write_text(json.dumps(examples, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def test_the_table_has_a_row_for_every_documented_route(lab: Lab):
    spec = lab.api.client.get("/api/v1/openapi.json").json
    documented = {(method.upper(), path.removeprefix("/api/v1")) for path, ops in spec["paths"].items()
                  for method in ops if method in ("get", "post", "put", "patch", "delete")}
    table = [(r.method, r.path) for r in ROUTES]
    assert len(set(table)) == len(table), "one row per route"
    assert sorted(documented - set(table)) == [], "documented routes without a row in ROUTES"
    assert sorted(set(table) - documented) == [], "rows for routes the OpenAPI document does not have"


@pytest.mark.parametrize("route", ROUTES, ids=[r.label for r in ROUTES])
def test_every_kind_of_caller_gets_exactly_its_status(lab: Lab, route: Route):
    expected = route.expected()
    got: dict[str, int] = {}
    wrong: list[str] = []
    for role in CALL_ORDER:
        url = route.url(lab, expected[role] < 300)
        assert route.matches(url), f"the row of {route.label} calls {url}"
        body = route.body(lab) if route.body else None
        response = lab.api.call(route.method, url, lab.keys[role], body)
        got[role] = response.status_code
        if role in ("owner", "admin"):
            remember(route, body, response)
        where = f"{role}: {route.method} {url}" + (f" {json.dumps(body, ensure_ascii=False)}" if body else "")
        if response.status_code != expected[role]:
            wrong.append(f"{where} -> {response.status_code} (expected {expected[role]}): {response.json_body}")
        if response.status_code >= 400 and (response.mimetype != "application/problem+json"
                                            or (response.json_body or {}).get("status") != response.status_code):
            wrong.append(f"{where} -> {response.status_code} is not a problem+json: {response.get_data()[:200]!r}")
        text = response.get_data(as_text=True)
        sent = url + json.dumps(body, ensure_ascii=False)
        leaked = sorted(s for s in lab.hidden_from(role) if s in text and s not in sent)
        if leaked:
            wrong.append(f"{where} -> {response.status_code} shows {leaked}: {text[:300]}")
    assert not wrong, "\n".join(wrong)
    assert got == expected


# --- an unknown id looks exactly like an invisible one ---------------------------------------------------

UNKNOWN = "unknown0000"


WITH_IDS = [pytest.param(r, id=r.label) for r in ROUTES if "{" in r.path]


@pytest.mark.parametrize("route", WITH_IDS)
def test_an_unknown_id_is_a_404_like_an_object_of_another_partnership(lab: Lab, route: Route):
    url = re.sub(r"\{[a-z_]+\}", UNKNOWN, route.path)
    body = route.body(lab) if route.body else None
    expected = route.expected()
    # Whoever may use the route gets 404; so does Dijon, wherever it gets 404 for Karlsruhe's existing object.
    callers = ["admin" if expected["owner"] == 403 else "owner"] + (["dijon"] if expected["dijon"] == 404 else [])
    got = {role: lab.api.call(route.method, url, lab.keys[role], body) for role in callers}
    assert {role: r.status_code for role, r in got.items()} == dict.fromkeys(callers, 404), {
        role: r.json_body for role, r in got.items()}
    assert all(r.mimetype == "application/problem+json" for r in got.values())


# --- what an object says about partnerships ------------------------------------------------------------

def test_an_idea_names_only_the_partnerships_the_reader_is_in(lab: Lab):
    seen = {role: lab.api.ok("GET", f"/ideas/{lab.idea}", lab.keys[role])["partnerships"]
            for role in ("owner", "admin", "krasnodar", "nancy")}
    listed = {role: {i["id"]: i["partnerships"] for i in lab.api.ok("GET", "/ideas?city=karlsruhe&limit=100",
                                                                     lab.keys[role])["items"]}[lab.idea]
              for role in ("krasnodar", "nancy")}
    assert seen == {"owner": ["karlsruhe-krasnodar", "karlsruhe-nancy"],
                    "admin": ["karlsruhe-krasnodar", "karlsruhe-nancy"],
                    "krasnodar": ["karlsruhe-krasnodar"], "nancy": ["karlsruhe-nancy"]}
    assert listed == {"krasnodar": ["karlsruhe-krasnodar"], "nancy": ["karlsruhe-nancy"]}
