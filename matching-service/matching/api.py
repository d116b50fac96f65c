"""The matching service's internal HTTP API (called by the gateway only, which passes the caller): thin routes, each
parsing its request, calling one use case (usecases.py) and answering."""

from __future__ import annotations

from typing import Protocol

from flask import Blueprint, Response, current_app, jsonify, request

from matching import domain, usecases
from matching.engine import Engine
from matching.repository import UnitOfWork
from matching.schemas import (
    AnswerIn,
    CandidateList,
    CandidatesQuery,
    IdeaMatchesQuery,
    MatchingSettings,
    MatchOut,
    MatchPage,
    MatchQuery,
    PageQuery,
    PairIn,
    ProjectOut,
    ProjectPage,
    WithdrawIn,
)
from services.aggregate import Conflict
from services.openapi import ApiDocs
from services.store import NotFound
from services.tenancy import caller
from services.web import json_body, problem_response, query_args

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
DOCS.operation("/ideas/{idea_id}/candidates", "get", "An idea's candidates in its partner cities, near misses too",
               tag="Matches", query=CandidatesQuery, responses={200: CandidateList},
               description="Best first, with score, parts and reasons; `proposed` says whether the partnership's "
                           "rules propose the pair, `match_id` names its match where one exists.")
DOCS.operation("/matches", "post", "Pair two ideas by hand (a coordinator)", tag="Matches", scope="write",
               body=PairIn, responses={201: MatchOut},
               description="A match of kind `coordinator`, the note first among its reasons; then both sides accept "
                           "as for any proposal. 422 when the ideas are not of two partner cities of one "
                           "partnership or one is withdrawn or in a project; 409 with `match_id` when the pair has "
                           "a match already.")
DOCS.operation("/matches/{match_id}/withdraw", "post", "Withdraw an open proposal (a coordinator)", tag="Matches",
               scope="write", body=WithdrawIn, responses={200: MatchOut},
               description="By a key of either side's city; both sides are told, with the reason. 409 when the "
                           "match is no longer open.")
DOCS.operation("/projects", "get", "List joint projects of your partnerships", tag="Projects",
               query=PageQuery, responses={200: ProjectPage})
DOCS.operation("/projects/{project_id}", "get", "Read one project", tag="Projects", responses={200: ProjectOut})
DOCS.operation("/partnerships/{partnership_id}/matching", "get", "How a partnership matches", tag="Partnerships",
               responses={200: MatchingSettings})
DOCS.operation("/partnerships/{partnership_id}/matching", "put", "Change how a partnership matches",
               tag="Partnerships", scope="admin", body=MatchingSettings, responses={200: MatchingSettings},
               description="Weights of the score's parts, threshold, floor and margin, proposals per idea, days "
                           "until expiry. The partnership's open ideas are matched again (off the request; "
                           "`last_run` says when it started and finished and what it did): new proposals are "
                           "made, none twice; unanswered ones the rules no longer make are withdrawn with that "
                           "reason; answered ones stay.")

match_out, match_page, project_out, project_page = MatchOut(), MatchPage(), ProjectOut(), ProjectPage()
bp = Blueprint("matching", __name__)
EXTENSION = "twincity.matching"  # app.extensions[EXTENSION]: the service's wiring (bootstrap.MatchingService)


class Wired(Protocol):
    uow: UnitOfWork
    engine: Engine
    clock: usecases.Clock


def wired() -> Wired:
    return current_app.extensions[EXTENSION]


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Response:
    return problem_response(404, "Not Found", f"no {exc} here")


@bp.errorhandler(domain.NotASide)
def _not_a_side(exc: domain.NotASide) -> Response:
    return problem_response(403, "Forbidden", str(exc))


@bp.errorhandler(usecases.PairExists)
def _pair_exists(exc: usecases.PairExists) -> Response:
    return problem_response(409, "Conflict", str(exc), match_id=exc.match_id)


@bp.errorhandler(Conflict)
@bp.errorhandler(domain.RuleViolation)
def _conflict(exc: Exception) -> Response:
    return problem_response(409, "Conflict", str(exc))


@bp.get("/ideas/<idea_id>/matches")
def idea_matches(idea_id: str) -> Response:
    items = usecases.idea_matches(wired().uow, caller(), idea_id, query_args(IdeaMatchesQuery).get("status"))
    return jsonify(match_page.dump({"items": items, "next_cursor": None}))


@bp.get("/ideas/<idea_id>/candidates")
def candidates(idea_id: str) -> Response:
    items = usecases.candidates(wired().uow, wired().engine, caller(), idea_id, query_args(CandidatesQuery)["limit"])
    return jsonify(CandidateList().dump({"items": items}))


@bp.post("/matches")
def pair_ideas() -> tuple[Response, int, dict[str, str]]:
    body = json_body(PairIn)
    match = usecases.pair_ideas(wired().uow, wired().engine, caller(), body["ideas"], body["note"], wired().clock)
    return jsonify(match_out.dump(match.doc)), 201, {"Location": f"/matches/{match.id}"}


@bp.post("/matches/<match_id>/withdraw")
def withdraw(match_id: str) -> Response:
    body = json_body(WithdrawIn)
    return jsonify(match_out.dump(usecases.withdraw_match(wired().uow, caller(), match_id, body["reason"],
                                                          wired().clock).doc))


@bp.get("/matches")
def list_matches() -> Response:
    items, next_cursor = usecases.list_matches(wired().uow, caller(), query_args(MatchQuery))
    return jsonify(match_page.dump({"items": items, "next_cursor": next_cursor}))


@bp.get("/matches/<match_id>")
def read_match(match_id: str) -> Response:
    return jsonify(match_out.dump(usecases.read_match(wired().uow, caller(), match_id).doc))


def _answer(match_id: str, accept: bool) -> Response:
    who = caller()
    body = json_body(AnswerIn) if request.get_data() else {"participant_id": None}
    match = usecases.answer_match(wired().uow, who, match_id, accept, body.get("participant_id"), wired().clock)
    return jsonify(match_out.dump(match.doc))


@bp.post("/matches/<match_id>/accept")
def accept(match_id: str) -> Response:
    return _answer(match_id, True)


@bp.post("/matches/<match_id>/decline")
def decline(match_id: str) -> Response:
    return _answer(match_id, False)


@bp.get("/projects")
def list_projects() -> Response:
    items, next_cursor = usecases.list_projects(wired().uow, caller(), query_args(PageQuery))
    return jsonify(project_page.dump({"items": items, "next_cursor": next_cursor}))


@bp.get("/projects/<project_id>")
def read_project(project_id: str) -> Response:
    return jsonify(project_out.dump(usecases.read_project(wired().uow, caller(), project_id).doc))


@bp.get("/partnerships/<pid>/matching")
def read_settings(pid: str) -> Response:
    settings = usecases.read_settings(wired().uow, caller(), pid)
    return jsonify(MatchingSettings().dump({**settings.as_doc(), "last_run": usecases.last_run(wired().uow, pid)}))


@bp.put("/partnerships/<pid>/matching")
def change_settings(pid: str) -> Response:
    who = caller()
    settings = usecases.change_settings(wired().uow, who, pid, json_body(MatchingSettings) if who.admin else {},
                                        wired().clock)
    return jsonify(MatchingSettings().dump({**settings.as_doc(), "last_run": usecases.last_run(wired().uow, pid)}))
