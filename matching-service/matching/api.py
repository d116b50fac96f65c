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
    FiguresOut,
    FiguresQuery,
    IdeaMatchesQuery,
    JoinRequestIn,
    JoinRequestOut,
    MatchingSettings,
    MatchOut,
    MatchPage,
    MatchQuery,
    MeetingAnswerIn,
    MeetingIn,
    MeetingOut,
    MessageIn,
    MessageOut,
    MessagePage,
    MessageQuery,
    PageQuery,
    PairIn,
    ProjectOut,
    ProjectPage,
    ProjectPatch,
    ScheduleIn,
    WithdrawIn,
)
from services.aggregate import Conflict
from services.openapi import ApiDocs
from services.store import NotFound
from services.tenancy import caller
from services.web import json_body, problem_response, query_args

DOCS = ApiDocs("matching")
DOCS.operation("/ideas/{idea_id}/matches", "get", "The matches of an idea, best first, with reasons",
               operation_id="listIdeaMatches",
               tag="Matches", query=IdeaMatchesQuery, responses={200: MatchPage})
DOCS.operation("/matches", "get", "List matches of your partnerships", tag="Matches", query=MatchQuery,
               responses={200: MatchPage}, description="Newest first; filter by status, city, idea, kind.")
DOCS.operation("/matches/{match_id}", "get", "Read one match", tag="Matches", responses={200: MatchOut})
DOCS.operation("/matches/{match_id}/accept", "post", "Accept a match for your city",
               operation_id="acceptMatch", tag="Matches",
               scope="write", body=AnswerIn, responses={200: MatchOut},
               description="When both sides accepted, the match is confirmed and a joint project forms. Accepting "
                           "shares the name and e-mail address of the person who accepts (the idea's author, or the "
                           "person whose interests were matched) with their future project partners: say so to "
                           "them before you accept in their name.")
DOCS.operation("/matches/{match_id}/decline", "post", "Decline a match for your city",
               operation_id="declineMatch", tag="Matches",
               scope="write", body=AnswerIn, responses={200: MatchOut})
DOCS.operation("/ideas/{idea_id}/candidates", "get", "An idea's candidates in its partner cities, near misses too",
               operation_id="listIdeaCandidates",
               tag="Matches", query=CandidatesQuery, responses={200: CandidateList},
               description="Best first, with score, parts and reasons; `proposed` says whether the partnership's "
                           "rules propose the pair, `match_id` names its match where one exists.")
DOCS.operation("/matches", "post", "Pair two ideas by hand (a coordinator)", tag="Matches", scope="write",
               body=PairIn, responses={201: MatchOut},
               description="A match of kind `coordinator`, the note first among its reasons; then both sides accept "
                           "as for any proposal. 422 when the ideas are not of two partner cities of one "
                           "partnership or one is withdrawn or in a project; 409 with `match_id` when the pair has "
                           "a match already.")
DOCS.operation("/matches/{match_id}/withdraw", "post", "Withdraw an open proposal (a coordinator)",
               operation_id="withdrawMatch", tag="Matches",
               scope="write", body=WithdrawIn, responses={200: MatchOut},
               description="By a key of either side's city; both sides are told, with the reason. 409 when the "
                           "match is no longer open.")
DOCS.operation("/projects", "get", "List joint projects of your partnerships", tag="Projects",
               query=PageQuery, responses={200: ProjectPage})
DOCS.operation("/projects/{project_id}", "get", "Read one project: plan, members, meetings, join requests",
               tag="Projects", responses={200: ProjectOut},
               description="Members with name, city, language and role; their e-mail addresses only to keys of the "
                           "members' cities. One project per idea: a further confirmed match of one of its ideas "
                           "brings the partner idea and its author in.")
DOCS.operation("/projects/{project_id}", "patch", "Change a project's title, status, summary or next steps",
               tag="Projects", scope="write", body=ProjectPatch, responses={200: ProjectOut},
               description="By a key of one of its members' cities. Send the `version` you read to be told (409) "
                           "when someone changed it since. project.updated tells members and webhooks.")
DOCS.operation("/projects/{project_id}/messages", "post", "Write to a project's members", tag="Projects",
               scope="write", body=MessageIn, responses={201: MessageOut},
               description="The author is a member in your key's city (422 otherwise). The other members are told "
                           "in their language over their channels; webhooks never get message texts.")
DOCS.operation("/projects/{project_id}/messages", "get", "Read a project's messages, oldest first",
               tag="Projects", query=MessageQuery, responses={200: MessagePage},
               description="For keys of the project's cities and its members only.")
DOCS.operation("/projects/{project_id}/meetings", "post", "Offer a meeting with times to choose from",
               tag="Projects", scope="write", body=MeetingIn, responses={201: MeetingOut},
               description="Times in the past, an unknown time zone or more than 10 times are 422. Members say "
                           "which times suit (answer), then one is set (schedule).")
DOCS.operation("/meetings/{meeting_id}", "get", "Read a meeting", tag="Projects", responses={200: MeetingOut})
DOCS.operation("/meetings/{meeting_id}/answer", "post", "Say which of a meeting's times suit a member",
               tag="Projects", scope="write", body=MeetingAnswerIn, responses={200: MeetingOut},
               description="Replaces the member's earlier answer; a time that was not offered is 422.")
DOCS.operation("/meetings/{meeting_id}/schedule", "post", "Set a meeting to one of its times", tag="Projects",
               scope="write", body=ScheduleIn, responses={200: MeetingOut},
               description="meeting.scheduled: every member gets an e-mail with the time in their own city's zone "
                           "and an iCalendar invitation. A time not offered or in the past is 422.")
DOCS.operation("/projects/{project_id}/join-requests", "post", "Ask to join a project",
               operation_id="requestToJoinProject", tag="Projects",
               scope="write", body=JoinRequestIn, responses={201: JoinRequestOut},
               description="For a participant of one of the project's cities (your key's city); its members are "
                           "told. 409 when the person is a member or asked already.")
DOCS.operation("/join-requests/{request_id}/accept", "post", "Accept a join request",
               operation_id="acceptJoinRequest", tag="Projects",
               scope="write", responses={200: JoinRequestOut},
               description="By a key of a member's city: the person becomes a member (project.member_joined) and "
                           "is told.")
DOCS.operation("/join-requests/{request_id}/decline", "post", "Decline a join request",
               operation_id="declineJoinRequest", tag="Projects",
               scope="write", responses={200: JoinRequestOut}, description="The person is told.")
DOCS.operation("/partnerships/{partnership_id}/matching", "get", "How a partnership matches",
               operation_id="readMatchingSettings", tag="Partnerships",
               responses={200: MatchingSettings})
DOCS.operation("/partnerships/{partnership_id}/matching", "put", "Change how a partnership matches",
               operation_id="changeMatchingSettings",
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
    return jsonify(project_out.dump(usecases.read_project(wired().uow, caller(), project_id)))


@bp.patch("/projects/<project_id>")
def change_project(project_id: str) -> Response:
    changes = json_body(ProjectPatch)
    return jsonify(project_out.dump(usecases.change_project(wired().uow, caller(), project_id, changes,
                                                            wired().clock)))


@bp.post("/projects/<project_id>/messages")
def post_message(project_id: str) -> tuple[Response, int]:
    body = json_body(MessageIn)
    message = usecases.post_message(wired().uow, caller(), project_id, body["author_id"], body["text"],
                                    wired().clock)
    return jsonify(MessageOut().dump(message)), 201


@bp.get("/projects/<project_id>/messages")
def list_messages(project_id: str) -> Response:
    query = query_args(MessageQuery)
    items, next_cursor = usecases.list_messages(wired().uow, caller(), project_id, query["limit"],
                                                query.get("cursor"))
    return jsonify(MessagePage().dump({"items": items, "next_cursor": next_cursor}))


@bp.post("/projects/<project_id>/meetings")
def propose_meeting(project_id: str) -> tuple[Response, int, dict[str, str]]:
    meeting = usecases.propose_meeting(wired().uow, caller(), project_id, json_body(MeetingIn), wired().clock)
    return jsonify(MeetingOut().dump(meeting)), 201, {"Location": f"/meetings/{meeting['id']}"}


@bp.get("/meetings/<meeting_id>")
def read_meeting(meeting_id: str) -> Response:
    return jsonify(MeetingOut().dump(usecases.read_meeting(wired().uow, caller(), meeting_id)))


@bp.post("/meetings/<meeting_id>/answer")
def answer_meeting(meeting_id: str) -> Response:
    body = json_body(MeetingAnswerIn)
    return jsonify(MeetingOut().dump(usecases.answer_meeting(wired().uow, caller(), meeting_id,
                                                             body["participant_id"], body["slots"], wired().clock,
                                                             body.get("timezone"))))


@bp.post("/meetings/<meeting_id>/schedule")
def schedule_meeting(meeting_id: str) -> Response:
    body = json_body(ScheduleIn)
    return jsonify(MeetingOut().dump(usecases.schedule_meeting(wired().uow, caller(), meeting_id, body["slot"],
                                                               wired().clock, body.get("timezone"))))


@bp.post("/projects/<project_id>/join-requests")
def request_join(project_id: str) -> tuple[Response, int]:
    body = json_body(JoinRequestIn)
    request_ = usecases.request_join(wired().uow, caller(), project_id, body["participant_id"], body["message"],
                                     wired().clock)
    return jsonify(JoinRequestOut().dump(request_)), 201


@bp.post("/join-requests/<request_id>/<any(accept, decline):answer>")
def answer_join(request_id: str, answer: str) -> Response:
    return jsonify(JoinRequestOut().dump(usecases.answer_join(wired().uow, caller(), request_id, answer == "accept",
                                                              wired().clock)))


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


# --- for the gateway only: /internal/... is never routed from the public /api/v1 ------------------------------

@bp.get("/internal/rounds/<round_id>/figures")
def round_figures(round_id: str) -> Response:
    """What a round's report counts of matches and projects (the gateway composes the report)."""
    query = query_args(FiguresQuery)
    return jsonify(FiguresOut().dump(usecases.round_figures(wired().uow, caller(), query["partnership"],
                                                            round_id)))
