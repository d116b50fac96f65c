"""The ideas service's internal HTTP API (called by the gateway only, which passes the caller): thin routes, each
parsing its request, calling one use case (usecases.py) and answering."""

from __future__ import annotations

from typing import Any, Protocol

from flask import Blueprint, Response, current_app, jsonify, request

from ideas import domain, usecases
from ideas.repository import DuplicateEmail, TranslationCache, UnitOfWork
from ideas.schemas import (
    AdoptedOut,
    AdvanceIn,
    IdeaIn,
    IdeaOut,
    IdeaPage,
    IdeaPatch,
    IdeaQuery,
    IdeaRead,
    ImportIn,
    ImportOut,
    ParticipantIn,
    ParticipantList,
    ParticipantOut,
    ParticipantPage,
    ParticipantPatch,
    ParticipantQuery,
    ParticipantsQuery,
    ReadQuery,
    RoundFigures,
    RoundIn,
    RoundList,
    RoundOut,
    RoundPatch,
    TranslationOut,
)
from ideas.translation import Translator
from services.aggregate import Conflict
from services.openapi import ApiDocs
from services.store import NotFound
from services.tenancy import Caller, caller
from services.web import json_body, problem_response, query_args

DOCS = ApiDocs("ideas")
DOCS.operation("/ideas", "post", "Submit an idea", tag="Ideas", scope="write", body=IdeaIn,
               responses={201: IdeaOut},
               description="The idea belongs to the key's city. `language` is detected when left out.")
DOCS.operation("/ideas", "get", "List ideas of your city and its partner cities", tag="Ideas",
               query=IdeaQuery, responses={200: IdeaPage},
               description="Newest first. Pass `next_cursor` back as `cursor` for the next page.")
DOCS.operation("/ideas/{idea_id}", "get", "Read one idea", tag="Ideas", query=ReadQuery, responses={200: IdeaRead},
               description="With `translate=ru` (any ISO 639-1 code) the answer carries `translation`: the title and "
                           "description machine-translated into that language, made once per version of the "
                           "idea; when the translation service is off or down, `translation.error` says so and "
                           "the idea is shown as written.")
DOCS.operation("/ideas/{idea_id}", "patch", "Change an idea of your city", tag="Ideas", scope="write",
               body=IdeaPatch, responses={200: IdeaOut},
               description="Send only the fields to change; with `version`, a concurrent change gives 409.")
DOCS.operation("/ideas/{idea_id}/withdraw", "post", "Withdraw an idea of your city", tag="Ideas",
               scope="write", responses={200: IdeaOut})
DOCS.operation("/partnerships/{partnership_id}/rounds", "post", "Open a round of a partnership's lab",
               tag="Rounds", scope="write", body=RoundIn, responses={201: RoundOut},
               description="By an admin key or a write key of one of its cities. Ideas submitted while it collects "
                           "join it; after collecting ends, an idea for it is a 409 naming the round and its dates.")
DOCS.operation("/partnerships/{partnership_id}/adopt-ideas", "post", "Offer a city's open ideas to a partnership",
               tag="Partnerships", scope="write", responses={200: AdoptedOut},
               description="The open ideas written before the partnership existed are shown and matched in it from "
                           "now on (a city key: its own city's ideas; an admin key: both cities'). `adopted` says "
                           "how many.")
DOCS.operation("/partnerships/{partnership_id}/rounds", "get", "List a partnership's rounds, newest first",
               tag="Rounds", responses={200: RoundList})
DOCS.operation("/rounds/{round_id}", "get", "Read a round and its phase", tag="Rounds", responses={200: RoundOut})
DOCS.operation("/rounds/{round_id}", "patch", "Rename a round or change its dates", tag="Rounds", scope="write",
               body=RoundPatch, responses={200: RoundOut},
               description="By a key of one of its cities or an admin key, while it is not closed (round.updated); "
                           "send only what changes. Its dates are checked as when it was opened; its phase follows "
                           "the new dates (collecting again when its last day moved later, unless another round of "
                           "the partnership collects: 409); a round moved on by hand stays moved, and once its "
                           "projects started no date takes it back (409).")
DOCS.operation("/rounds/{round_id}/advance", "post", "Move a round on to its next phase now", tag="Rounds",
               scope="write", body=AdvanceIn, responses={200: RoundOut},
               description="collecting -> matching -> projects -> closed (round.phase_changed; round.closed). The "
                           "dates move it on by themselves; this is for a workshop held early, or to close it. "
                           "Send the phase you saw as `from_phase` to be told (409) when it moved on meanwhile.")
DOCS.operation("/participants", "post", "Register a participant in your city",
               operation_id="registerParticipant", tag="Participants",
               scope="write", body=ParticipantIn, responses={201: ParticipantOut})
DOCS.operation("/participants", "get", "List your city's participants", tag="Participants",
               query=ParticipantsQuery, responses={200: ParticipantPage},
               description="Newest first, `q` finds a part of a name or e-mail address. A city key lists its own "
                           "city's people only (a partner city's addresses stay there); an admin key names the "
                           "city.")
DOCS.operation("/participants/{participant_id}", "get", "Read a participant", tag="Participants",
               responses={200: ParticipantOut},
               description="Partner cities see participants without their e-mail address.")
DOCS.operation("/participants/{participant_id}", "patch", "Change a participant of your city",
               tag="Participants", scope="write", body=ParticipantPatch, responses={200: ParticipantOut})
DOCS.operation("/participants/{participant_id}", "delete", "Erase a participant (right to erasure)",
               operation_id="eraseParticipant",
               tag="Participants", scope="write", responses={204: "Erased; every service forgets them"},
               description="Their ideas stay, without the author. The erasure travels as participant.erased.")

idea_out, page_out, participant_out = IdeaOut(), IdeaPage(), ParticipantOut()
bp = Blueprint("ideas", __name__)
EXTENSION = "twincity.ideas"  # app.extensions[EXTENSION]: the service's wiring (bootstrap.IdeasService)


class Wired(Protocol):
    uow: UnitOfWork
    clock: usecases.Clock
    translations: TranslationCache
    translator: Translator | None


def wired() -> Wired:
    return current_app.extensions[EXTENSION]


# Error handlers return their response: an exception raised in one would become a 500.
@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Response:
    return problem_response(404, "Not Found", f"no {exc} here")


@bp.errorhandler(Conflict)
@bp.errorhandler(domain.RuleViolation)
def _conflict(exc: Exception) -> Response:
    return problem_response(409, "Conflict", str(exc))


@bp.errorhandler(DuplicateEmail)
def _duplicate(exc: DuplicateEmail) -> Response:
    return problem_response(409, "Conflict", "a participant with this e-mail address exists in this city")


@bp.errorhandler(usecases.RowErrors)
def _rows(exc: usecases.RowErrors) -> Response:
    return problem_response(422, "Unprocessable Content", str(exc), rows=exc.errors)


# --- ideas ---------------------------------------------------------------------------------------------

@bp.post("/ideas")
def submit_idea() -> tuple[Response, int, dict[str, str]]:
    who = caller()
    idea = usecases.submit_idea(wired().uow, who, json_body(), wired().clock)
    return jsonify(_shown(who, idea.doc)), 201, {"Location": f"/ideas/{idea.id}"}


@bp.get("/ideas")
def list_ideas() -> Response:
    who = caller()
    items, next_cursor = usecases.list_ideas(wired().uow, who, query_args(IdeaQuery))
    page = page_out.dump({"items": items, "next_cursor": next_cursor})
    page["items"] = [_only_visible_partnerships(who, item) for item in page["items"]]
    return jsonify(page)


@bp.get("/ideas/<idea_id>")
def read_idea(idea_id: str) -> Response:
    who = caller()
    target = query_args(ReadQuery).get("translate")
    idea = usecases.read_idea(wired().uow, who, idea_id)
    shown = _shown(who, idea.doc)
    if target:
        found = usecases.translated(wired().translations, wired().translator, idea.doc, target, wired().clock)
        shown["translation"] = None if found is None else TranslationOut().dump(found)
    return jsonify(shown)


@bp.patch("/ideas/<idea_id>")
def change_idea(idea_id: str) -> Response:
    who = caller()
    return jsonify(_shown(who, usecases.change_idea(wired().uow, who, idea_id, json_body(), wired().clock).doc))


@bp.post("/ideas/<idea_id>/withdraw")
def withdraw_idea(idea_id: str) -> Response:
    who = caller()
    return jsonify(_shown(who, usecases.withdraw_idea(wired().uow, who, idea_id, wired().clock).doc))


# --- for the gateway's web pages only: /internal/... is never routed from the public /api/v1 -----------------

# --- rounds ---------------------------------------------------------------------------------------------------

@bp.post("/partnerships/<pid>/rounds")
def open_round(pid: str) -> tuple[Response, int, dict[str, str]]:
    found = usecases.open_round(wired().uow, caller(), pid, json_body(RoundIn), wired().clock)
    return jsonify(RoundOut().dump(usecases.round_view(found, wired().clock()))), 201, {
        "Location": f"/rounds/{found.id}"}


@bp.get("/partnerships/<pid>/rounds")
def list_rounds(pid: str) -> Response:
    return jsonify(RoundList().dump({"items": usecases.list_rounds(wired().uow, caller(), pid, wired().clock)}))


@bp.post("/partnerships/<pid>/adopt-ideas")
def adopt_ideas(pid: str) -> Response:
    return jsonify(adopted=usecases.adopt_ideas(wired().uow, caller(), pid, wired().clock))


@bp.get("/rounds/<round_id>")
def read_round(round_id: str) -> Response:
    return jsonify(RoundOut().dump(usecases.read_round(wired().uow, caller(), round_id, wired().clock)))


@bp.patch("/rounds/<round_id>")
def change_round(round_id: str) -> Response:
    return jsonify(RoundOut().dump(usecases.change_round(wired().uow, caller(), round_id, json_body(RoundPatch),
                                                         wired().clock)))


@bp.post("/rounds/<round_id>/advance")
def advance_round(round_id: str) -> Response:
    body = json_body(AdvanceIn) if request.get_data() else {}
    return jsonify(RoundOut().dump(usecases.advance_round(wired().uow, caller(), round_id, wired().clock,
                                                          body.get("from_phase"))))


@bp.get("/internal/rounds/<round_id>/figures")
def round_figures(round_id: str) -> Response:
    """What a round's report counts of its ideas and people (the gateway composes the report)."""
    figures = usecases.round_figures(wired().uow, caller(), round_id, wired().clock)
    return jsonify(RoundFigures().dump(figures))


@bp.post("/internal/ideas/import")
def import_ideas() -> tuple[Response, int]:
    """A workshop's ideas in one go: every row checked before any is stored (nothing half-imported).

    Body `{ideas: [IdeaRow...], dry_run}`; an invalid row gives 422 with `rows` (errors by position).
    """
    who = caller()
    data = json_body(ImportIn)
    stored = usecases.import_ideas(wired().uow, who, data["ideas"], dry_run=data["dry_run"], clock=wired().clock,
                                   round_id=data.get("round_id"))
    shown = ImportOut().dump({"count": len(data["ideas"]), "dry_run": data["dry_run"],
                              "items": [idea.doc for idea in stored]})
    shown["items"] = [_only_visible_partnerships(who, item) for item in shown["items"]]
    return jsonify(shown), 200 if data["dry_run"] else 201


@bp.get("/internal/participants")
def find_participants() -> Response:
    """By e-mail address; a city's key finds only its own city's people (addresses stay in the city)."""
    found = usecases.find_participants(wired().uow, caller(), query_args(ParticipantQuery)["email"])
    return jsonify(ParticipantList().dump({"items": found}))


# --- participants --------------------------------------------------------------------------------------

@bp.post("/participants")
def register() -> tuple[Response, int, dict[str, str]]:
    person = usecases.register_participant(wired().uow, caller(), json_body(ParticipantIn), wired().clock)
    return jsonify(participant_out.dump(person.doc)), 201, {"Location": f"/participants/{person.id}"}


@bp.get("/participants")
def list_participants() -> Response:
    items, next_cursor = usecases.list_participants(wired().uow, caller(), query_args(ParticipantsQuery))
    return jsonify(ParticipantPage().dump({"items": items, "next_cursor": next_cursor}))


@bp.get("/participants/<participant_id>")
def read_participant(participant_id: str) -> Response:
    person, with_email = usecases.read_participant(wired().uow, caller(), participant_id)
    shown = participant_out.dump(person.doc)
    if not with_email:
        shown.pop("email", None)  # e-mail addresses stay within the person's own city
    return jsonify(shown)


@bp.patch("/participants/<participant_id>")
def change_participant(participant_id: str) -> Response:
    person = usecases.change_participant(wired().uow, caller(), participant_id, json_body(), wired().clock)
    return jsonify(participant_out.dump(person.doc))


@bp.delete("/participants/<participant_id>")
def erase(participant_id: str) -> tuple[str, int]:
    usecases.erase_participant(wired().uow, caller(), participant_id, wired().clock)
    return "", 204


# --- how an idea is shown --------------------------------------------------------------------------------

def _shown(who: Caller, idea: dict[str, Any]) -> dict[str, Any]:
    return _only_visible_partnerships(who, idea_out.dump(idea))


def _only_visible_partnerships(who: Caller, shown: dict[str, Any]) -> dict[str, Any]:
    return domain.partnerships_shown(shown, admin=who.admin, callers_partnerships={p.id for p in who.partnerships})
