"""The ideas service's internal HTTP API (called by the gateway only, which passes the caller)."""

from __future__ import annotations

import contextlib
from typing import Any

from flask import Blueprint, Response, jsonify
from marshmallow import ValidationError

from ideas import domain
from ideas.repository import Conflict, DuplicateEmail, NotFound, Repository
from ideas.schemas import (
    IdeaIn,
    IdeaOut,
    IdeaPage,
    IdeaPatch,
    IdeaQuery,
    IdeaRow,
    ImportIn,
    ImportOut,
    ParticipantIn,
    ParticipantList,
    ParticipantOut,
    ParticipantPatch,
    ParticipantQuery,
)
from services.contract import schema_instance
from services.openapi import ApiDocs
from services.tenancy import Caller, caller
from services.web import Problem, json_body, problem_response, query_args

DOCS = ApiDocs("ideas")
DOCS.operation("/ideas", "post", "Submit an idea", tag="Ideas", scope="write", body=IdeaIn,
               responses={201: IdeaOut},
               description="The idea belongs to the key's city. `language` is detected when left out.")
DOCS.operation("/ideas", "get", "List ideas of your city and its partner cities", tag="Ideas",
               query=IdeaQuery, responses={200: IdeaPage},
               description="Newest first. Pass `next_cursor` back as `cursor` for the next page.")
DOCS.operation("/ideas/{idea_id}", "get", "Read one idea", tag="Ideas", responses={200: IdeaOut})
DOCS.operation("/ideas/{idea_id}", "patch", "Change an idea of your city", tag="Ideas", scope="write",
               body=IdeaPatch, responses={200: IdeaOut},
               description="Send only the fields to change; with `version`, a concurrent change gives 409.")
DOCS.operation("/ideas/{idea_id}/withdraw", "post", "Withdraw an idea of your city", tag="Ideas",
               scope="write", responses={200: IdeaOut})
DOCS.operation("/participants", "post", "Register a participant in your city", tag="Participants",
               scope="write", body=ParticipantIn, responses={201: ParticipantOut})
DOCS.operation("/participants/{participant_id}", "get", "Read a participant", tag="Participants",
               responses={200: ParticipantOut},
               description="Partner cities see participants without their e-mail address.")
DOCS.operation("/participants/{participant_id}", "patch", "Change a participant of your city",
               tag="Participants", scope="write", body=ParticipantPatch, responses={200: ParticipantOut})
DOCS.operation("/participants/{participant_id}", "delete", "Erase a participant (right to erasure)",
               tag="Participants", scope="write", responses={204: "Erased; every service forgets them"},
               description="Their ideas stay, without the author. The erasure travels as participant.erased.")

idea_out, page_out, participant_out = IdeaOut(), IdeaPage(), ParticipantOut()


def build(repo: Repository) -> Blueprint:
    bp = Blueprint("ideas", __name__)

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

    # --- ideas -----------------------------------------------------------------------------------------

    @bp.post("/ideas")
    def submit_idea() -> tuple[Response, int, dict[str, str]]:
        who = caller()
        raw = json_body()
        idea = repo.add_idea(_new_idea(who, _loaded(who, IdeaIn, raw)))
        return jsonify(_shown(who, idea)), 201, {"Location": f"/ideas/{idea['_id']}"}

    @bp.get("/ideas")
    def list_ideas() -> Response:
        who = caller()
        query = query_args(IdeaQuery)
        limit, cursor, q = query.pop("limit"), query.pop("cursor", None), query.pop("q", None)
        items, next_cursor = repo.list_ideas(
            cities=None if who.admin else list(who.visible_cities), filters=query, q=q, limit=limit,
            cursor=cursor,
        )
        page = page_out.dump({"items": items, "next_cursor": next_cursor})
        page["items"] = [_only_visible_partnerships(who, item) for item in page["items"]]
        return jsonify(page)

    @bp.get("/ideas/<idea_id>")
    def read_idea(idea_id: str) -> Response:
        who = caller()
        return jsonify(_shown(who, _visible_idea(who, idea_id)))

    @bp.patch("/ideas/<idea_id>")
    def change_idea(idea_id: str) -> Response:
        who = caller()
        current = _own_idea(who, idea_id)
        changes = json_body(IdeaPatch, partial=True)
        expected = changes.pop("version", None)
        if "theme" in changes:
            _check_theme(who, current["city"], changes["theme"])
        if changes.get("language") is None:
            changes.pop("language", None)

        def edit(doc: dict[str, Any]) -> tuple[dict[str, Any], str, list[str]] | None:
            domain.check_editable(doc["status"])
            changed = domain.changed_fields(doc, changes)
            if not changed:
                return None
            return {k: changes[k] for k in changed}, "idea.updated", changed

        return jsonify(_shown(who, repo.change_idea(idea_id, edit, expected_version=expected)))

    @bp.post("/ideas/<idea_id>/withdraw")
    def withdraw_idea(idea_id: str) -> Response:
        who = caller()
        _own_idea(who, idea_id)

        def withdraw(doc: dict[str, Any]) -> tuple[dict[str, Any], str, list[str]]:
            domain.check_transition(doc["status"], domain.WITHDRAWN)
            return {"status": domain.WITHDRAWN}, "idea.withdrawn", ["status"]

        return jsonify(_shown(who, repo.change_idea(idea_id, withdraw)))

    # --- for the gateway's web pages only: /internal/... is never routed from the public /api/v1 -------------

    @bp.post("/internal/ideas/import")
    def import_ideas() -> tuple[Response, int]:
        """A workshop's ideas in one go: every row checked before any is stored (nothing half-imported).

        Body `{ideas: [IdeaRow...], dry_run}`; an invalid row gives 422 with `rows` (errors by position).
        """
        who = caller()
        data = json_body(ImportIn)
        rows, errors = [], {}
        for number, raw in enumerate(data["ideas"]):
            try:
                rows.append(_new_idea(who, _loaded(who, IdeaRow, raw)))
            except ValidationError as exc:
                errors[str(number)] = exc.messages
        if errors:
            return problem_response(422, "Unprocessable Content",
                                    f"{len(errors)} of {len(data['ideas'])} rows are invalid; nothing was stored",
                                    rows=errors), 422
        stored = [] if data["dry_run"] else repo.add_ideas(rows)
        shown = ImportOut().dump({"count": len(rows), "dry_run": data["dry_run"], "items": stored})
        shown["items"] = [_only_visible_partnerships(who, item) for item in shown["items"]]
        return jsonify(shown), 200 if data["dry_run"] else 201

    def _loaded(who: Caller, schema: type[Any], raw: Any) -> dict[str, Any]:
        """`raw` loaded by `schema`; when it is refused, the fields it let through are checked against the
        caller's city too (theme, author), so that one answer names every error, not the first kind found."""
        try:
            return schema_instance(schema).load(raw)
        except ValidationError as exc:
            errors = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
            if isinstance(raw, dict) and "city" not in errors:
                # As the schema saw them (stripped): a padded theme is no unknown theme.
                passed = {k: v.strip() for k, v in raw.items() if k not in errors and isinstance(v, str)}
                with contextlib.suppress(Problem):  # a key that may not act for the city: field errors first
                    _context_errors(who, passed, errors)
            raise ValidationError(errors) from None

    def _context_errors(who: Caller, data: dict[str, Any], errors: dict[str, Any]) -> str | None:
        """Add to `errors` what the caller's city says of `data` (its city, theme, author); returns the city.
        Fills in author_id from author_email."""
        try:
            city = _acting_city(who, data.pop("city", None))
        except ValidationError as exc:
            errors.update(exc.messages)
            return None
        email = data.pop("author_email", None)
        if "theme" in data:
            try:
                _check_theme(who, city, data["theme"])
            except ValidationError as exc:
                errors.update(exc.messages)
        if email:
            found = repo.participants_by_email(email, [city])
            if not found:
                errors["author_email"] = [f"no participant with this e-mail address in {city}"]
            elif data.get("author_id") and data["author_id"] != found[0]["_id"]:
                errors["author_email"] = ["names another participant than author_id"]
            else:
                data["author_id"] = found[0]["_id"]
        elif data.get("author_id") and not repo.participant_exists(data["author_id"], city):
            errors["author_id"] = [f"no participant with this id in {city}"]
        return city

    def _new_idea(who: Caller, data: dict[str, Any]) -> dict[str, Any]:
        """A submitted idea (POST /ideas, or a row of an import) checked and completed for storing."""
        errors: dict[str, Any] = {}
        city = _context_errors(who, data, errors)
        if errors or city is None:
            raise ValidationError(errors)
        detected = data.get("language") is None
        if detected:  # a text with too few words to tell is taken to be in its author's language
            author = repo.participant_or_none(data["author_id"]) if data.get("author_id") else None
            author = author or {}  # erased since it was checked: the idea is stored, in English
            data["language"] = domain.detect_language(f"{data['title']}. {data.get('description', '')}",
                                                      default=author.get("language") or "en")
        data.update(city=city, partnerships=[p.id for p in who.partnerships_of(city)], language_detected=detected)
        return data

    # --- participants ----------------------------------------------------------------------------------

    @bp.get("/internal/participants")
    def find_participants() -> Response:
        """By e-mail address; a city's key finds only its own city's people (addresses stay in the city)."""
        who = caller()
        query = query_args(ParticipantQuery)
        cities = list(who.visible_cities) if who.admin else [who.city] if who.city else []
        found = repo.participants_by_email(query["email"], cities)
        return jsonify(ParticipantList().dump({"items": found}))

    @bp.post("/participants")
    def register() -> tuple[Response, int, dict[str, str]]:
        who = caller()
        data = json_body(ParticipantIn)
        data["city"] = _acting_city(who, data.pop("city", None))
        person = repo.add_participant(data)
        return jsonify(participant_out.dump(person)), 201, {"Location": f"/participants/{person['_id']}"}

    @bp.get("/participants/<participant_id>")
    def read_participant(participant_id: str) -> Response:
        who = caller()
        person = repo.get_participant(participant_id)
        if not who.can_see(person["city"]):
            raise NotFound("participant", participant_id)
        shown = participant_out.dump(person)
        if not who.can_change(person["city"]):
            shown.pop("email", None)  # e-mail addresses stay within the person's own city
        return jsonify(shown)

    @bp.patch("/participants/<participant_id>")
    def change_participant(participant_id: str) -> Response:
        who = caller()
        person = _own(who, repo.get_participant(participant_id), "participant", participant_id)
        changes = json_body(ParticipantPatch, partial=True)
        expected = changes.pop("version", None)
        return jsonify(participant_out.dump(
            repo.update_participant(person["_id"], changes, expected_version=expected)
        ))

    @bp.delete("/participants/<participant_id>")
    def erase(participant_id: str) -> tuple[str, int]:
        who = caller()
        _own(who, repo.get_participant(participant_id), "participant", participant_id)
        repo.erase_participant(participant_id)
        return "", 204

    # --- helpers ---------------------------------------------------------------------------------------

    def _shown(who: Caller, idea: dict[str, Any]) -> dict[str, Any]:
        return _only_visible_partnerships(who, idea_out.dump(idea))

    def _visible_idea(who: Caller, idea_id: str) -> dict[str, Any]:
        idea = repo.get_idea(idea_id)
        if not who.can_see(idea["city"]):
            raise NotFound("idea", idea_id)  # not 403: another partnership's ideas do not exist for this key
        return idea

    def _own_idea(who: Caller, idea_id: str) -> dict[str, Any]:
        return _own(who, _visible_idea(who, idea_id), "idea", idea_id)

    return bp


def _own(who: Caller, doc: dict[str, Any], kind: str, ref: str) -> dict[str, Any]:
    if not who.can_see(doc["city"]):
        raise NotFound(kind, ref)
    if not who.can_change(doc["city"]):
        raise Problem(403, "Forbidden", f"this belongs to {doc['city']}; your key may change only its own city's")
    return doc


def _acting_city(who: Caller, asked: str | None) -> str:
    if who.admin:
        if not asked:
            raise ValidationError({"city": ["an admin key must say which city this belongs to"]})
        if asked not in who.visible_cities:
            raise ValidationError({"city": [f"unknown city {asked!r}"]})
        return asked
    if asked and asked != who.city:
        raise Problem(403, "Forbidden", f"your key belongs to {who.city}; it cannot act for {asked}")
    if who.city is None:
        raise Problem(403, "Forbidden", "this key belongs to no city")
    return who.city


def _check_theme(who: Caller, city: str, theme: str) -> None:
    allowed = who.themes_of(city)
    if not theme:
        raise ValidationError({"theme": [f"choose a theme; one of: {', '.join(sorted(allowed))}"]})
    if theme not in allowed:
        raise ValidationError({"theme": [f"unknown theme {theme!r}; one of: {', '.join(sorted(allowed))}"]})


def _only_visible_partnerships(who: Caller, shown: dict[str, Any]) -> dict[str, Any]:
    """An idea names only the partnerships the caller is in: Nancy must not learn Karlsruhe's other twins."""
    if not who.admin:
        mine = {p.id for p in who.partnerships}
        shown["partnerships"] = [p for p in shown.get("partnerships", []) if p in mine]
    return shown
