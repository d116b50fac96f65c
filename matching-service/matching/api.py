"""The matching service's internal HTTP API (called by the gateway only, which passes the caller)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError

from matching import domain
from matching.repository import Conflict, NotFound, Repository
from matching.schemas import (
    AnswerIn,
    IdeaMatchesQuery,
    MatchingSettings,
    MatchOut,
    MatchPage,
    MatchQuery,
    PageQuery,
    ProjectOut,
    ProjectPage,
)
from services.openapi import ApiDocs
from services.tenancy import Caller, caller
from services.web import Problem, json_body, problem_response, query_args

DOCS = ApiDocs("matching")
DOCS.operation("/ideas/{idea_id}/matches", "get", "The matches of an idea, best first, with reasons",
               tag="Matches", query=IdeaMatchesQuery, responses={200: MatchPage})
DOCS.operation("/matches", "get", "List matches of your partnerships", tag="Matches", query=MatchQuery,
               responses={200: MatchPage}, description="Newest first; filter by status, city, idea, kind.")
DOCS.operation("/matches/{match_id}", "get", "Read one match", tag="Matches", responses={200: MatchOut})
DOCS.operation("/matches/{match_id}/accept", "post", "Accept a match for your city", tag="Matches",
               scope="write", body=AnswerIn, responses={200: MatchOut},
               description="When both sides accepted, the match is confirmed and a joint project forms.")
DOCS.operation("/matches/{match_id}/decline", "post", "Decline a match for your city", tag="Matches",
               scope="write", body=AnswerIn, responses={200: MatchOut})
DOCS.operation("/projects", "get", "List joint projects of your partnerships", tag="Projects",
               query=PageQuery, responses={200: ProjectPage})
DOCS.operation("/projects/{project_id}", "get", "Read one project", tag="Projects", responses={200: ProjectOut})
DOCS.operation("/partnerships/{partnership_id}/matching", "get", "How a partnership matches", tag="Partnerships",
               responses={200: MatchingSettings})
DOCS.operation("/partnerships/{partnership_id}/matching", "put", "Change how a partnership matches",
               tag="Partnerships", scope="admin", body=MatchingSettings, responses={200: MatchingSettings},
               description="Weights of the score's parts, threshold, proposals per idea, days until expiry. "
                           "Applies to matching from now on.")

match_out, match_page, project_out, project_page = MatchOut(), MatchPage(), ProjectOut(), ProjectPage()


def _visible_partnerships(who: Caller) -> list[str] | None:
    return None if who.admin else [p.id for p in who.partnerships]


def build(repo: Repository) -> Blueprint:
    bp = Blueprint("matching", __name__)

    @bp.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> Response:
        return problem_response(404, "Not Found", f"no {exc} here")

    @bp.errorhandler(Conflict)
    @bp.errorhandler(domain.RuleViolation)
    def _conflict(exc: Exception) -> Response:
        return problem_response(409, "Conflict", str(exc))

    def visible_match(who: Caller, match_id: str) -> dict[str, Any]:
        match = repo.match(match_id)
        allowed = _visible_partnerships(who)
        if allowed is not None and match["partnership"] not in allowed:
            raise NotFound("match", match_id)
        return match

    @bp.get("/ideas/<idea_id>/matches")
    def idea_matches(idea_id: str) -> Response:
        who = caller()
        query = query_args(IdeaMatchesQuery)
        idea = repo.idea(idea_id)
        if idea is None:
            # Not heard of here yet (matching follows the ideas service a moment later): no matches yet.
            return jsonify(match_page.dump({"items": [], "next_cursor": None}))
        if not who.can_see(idea["city"]):
            raise NotFound("idea", idea_id)
        allowed = _visible_partnerships(who)
        matches = [m for m in repo.matches_of_idea(idea_id, query.get("status"))
                   if allowed is None or m["partnership"] in allowed]
        return jsonify(match_page.dump({"items": matches, "next_cursor": None}))

    @bp.get("/matches")
    def list_matches() -> Response:
        who = caller()
        query = query_args(MatchQuery)
        limit, cursor = query.pop("limit"), query.pop("cursor", None)
        items, next_cursor = repo.list_matches(partnerships=_visible_partnerships(who), filters=query,
                                               limit=limit, cursor=cursor)
        return jsonify(match_page.dump({"items": items, "next_cursor": next_cursor}))

    @bp.get("/matches/<match_id>")
    def read_match(match_id: str) -> Response:
        return jsonify(match_out.dump(visible_match(caller(), match_id)))

    def answer(match_id: str, accept: bool) -> Response:
        who = caller()
        body = json_body(AnswerIn) if request.get_data() else {"participant_id": None}
        match = visible_match(who, match_id)
        if who.city is None:
            raise Problem(403, "Forbidden", "a match is answered by a key of one of its cities, not an admin key")
        if who.city not in [s["city"] for s in match["sides"]]:
            raise Problem(403, "Forbidden", f"{who.city} is not a side of this match")
        answering = body.get("participant_id")
        if answering is not None:
            # Named in match.accepted/declined, which partner cities and webhooks read: a person of this city only.
            person = repo.participant(answering)
            if person is None or person.get("erased") or person.get("city") != who.city:
                raise ValidationError({"participant_id": [f"no participant {answering} in {who.city}"]})
        result = domain.answer(match, who.city, accept)
        sides = [{**s, "answer": ("accepted" if accept else "declined")} if s["city"] == who.city else s
                 for s in match["sides"]]
        updated = repo.change_match(match, {"status": result.status, "sides": sides}, result.events,
                                    city=who.city, participant_id=body.get("participant_id"))
        return jsonify(match_out.dump(updated))

    @bp.post("/matches/<match_id>/accept")
    def accept(match_id: str) -> Response:
        return answer(match_id, True)

    @bp.post("/matches/<match_id>/decline")
    def decline(match_id: str) -> Response:
        return answer(match_id, False)

    @bp.get("/projects")
    def list_projects() -> Response:
        who = caller()
        query = query_args(PageQuery)
        items, next_cursor = repo.list_projects(partnerships=_visible_partnerships(who), limit=query["limit"],
                                                cursor=query.get("cursor"))
        return jsonify(project_page.dump({"items": items, "next_cursor": next_cursor}))

    @bp.get("/projects/<project_id>")
    def read_project(project_id: str) -> Response:
        who = caller()
        project = repo.project(project_id)
        allowed = _visible_partnerships(who)
        if allowed is not None and project["partnership"] not in allowed:
            raise NotFound("project", project_id)
        return jsonify(project_out.dump(project))

    def visible_partnership(who: Caller, pid: str) -> None:
        # The gateway's list is authoritative (admin keys get all): no waiting for partnership.formed here.
        if pid not in {p.id for p in who.partnerships}:
            raise NotFound("partnership", pid)

    @bp.get("/partnerships/<pid>/matching")
    def read_settings(pid: str) -> Response:
        visible_partnership(caller(), pid)
        return jsonify(MatchingSettings().dump(repo.settings(pid).as_doc()))

    @bp.put("/partnerships/<pid>/matching")
    def change_settings(pid: str) -> Response:
        who = caller()
        if not who.admin:
            raise Problem(403, "Forbidden", "only an admin key changes how a partnership matches")
        visible_partnership(who, pid)
        changes = json_body(MatchingSettings)
        settings = replace(repo.settings(pid), **changes)
        if settings.semantic + settings.theme + settings.tags + settings.complement <= 0:
            raise Problem(422, "Unprocessable Content", "at least one weight must be above 0")
        repo.put_settings(pid, settings)
        return jsonify(MatchingSettings().dump(settings.as_doc()))

    return bp
