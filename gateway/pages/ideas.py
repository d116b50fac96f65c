"""The ideas of a participant's partnership: browse and search them; submit, edit and withdraw one's own."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from gateway.pages.matches import view_match
from gateway.pages.messages import all_in_words
from gateway.pages.web import (
    ServiceError,
    backend,
    call,
    city_name,
    locale,
    me,
    pages,
    participant_only,
    seg,
    themes_of,
    visible_cities,
)
from services.contract import LANGUAGES

bp = Blueprint("ideas", __name__)
FILTERS = ("theme", "city", "language", "status", "q")


@bp.get("/ideas", endpoint="list")
@participant_only
def list_ideas() -> Any:
    filters = {k: request.args.get(k, "").strip() for k in FILTERS}
    mine = request.args.get("mine") == "1"
    query = {**filters, "cursor": request.args.get("cursor"), "limit": 20,
             **({"author_id": me().participant_id} if mine else {})}
    status, error, page = 200, None, {"items": [], "next_cursor": None}
    try:
        page = call("ideas", "GET", "/ideas", query=query)
    except ServiceError as exc:
        if exc.status != 422:
            raise
        status, error = 400, _("Some filters are not valid: %(fields)s", fields=", ".join(sorted(exc.errors)))
    more = page.get("next_cursor")
    next_url = url_for("pages.ideas.list", **{k: v for k, v in filters.items() if v},
                       **({"mine": "1"} if mine else {}), cursor=more) if more else None
    return render_template("pages/ideas.html", ideas=page.get("items", []), filters=filters, mine=mine,
                           error=error, next_url=next_url, themes=themes_of(me().city),
                           cities=visible_cities(), languages=LANGUAGES), status


# --- the form ----------------------------------------------------------------------------------------------

def form_data() -> dict[str, Any]:
    """The idea as the form sent it: tags by comma, seeks and offers by line."""
    form = request.form
    data: dict[str, Any] = {
        "title": form.get("title", "").strip(),
        "description": form.get("description", "").strip(),
        "theme": form.get("theme", "").strip(),
        "tags": [t.strip() for t in re.split(r"[,;\n]", form.get("tags", "")) if t.strip()],
        "seeks": [t.strip() for t in form.get("seeks", "").splitlines() if t.strip()],
        "offers": [t.strip() for t in form.get("offers", "").splitlines() if t.strip()],
    }
    if form.get("language") and form.get("language") != "auto":
        data["language"] = form["language"]
    if form.get("choose_partnerships"):  # the form offered the choice (the city has several partnerships)
        data["partnerships"] = form.getlist("partnerships")
    return data


def form_values(idea: dict[str, Any]) -> dict[str, Any]:
    return {"title": idea.get("title", ""), "description": idea.get("description", ""),
            "theme": idea.get("theme", ""), "tags": ", ".join(idea.get("tags", [])),
            "seeks": "\n".join(idea.get("seeks", [])), "offers": "\n".join(idea.get("offers", [])),
            "language": idea.get("language") or "auto", "version": idea.get("version"),
            "partnerships": idea.get("partnerships")}


def render_form(values: dict[str, Any], errors: dict[str, Any], *, idea: dict[str, Any] | None = None,
                message: str | None = None, status: int = 200) -> Any:
    mine = backend().directory.list_partnerships(me().city)
    partners = [{"id": p["_id"], "city": next((c for c in p["cities"] if c != me().city), "")} for p in mine]
    return render_template("pages/idea_form.html", values=values, errors=errors, idea=idea, message=message,
                           themes=themes_of(me().city), languages=LANGUAGES, partners=partners), status


def refused(exc: ServiceError, values: dict[str, Any], idea: dict[str, Any] | None = None) -> Any:
    """The form again, with what the service said of each field in the visitor's words."""
    if exc.status not in (409, 422):
        raise exc
    return render_form(values, all_in_words(exc.errors, city_name), idea=idea,
                       message=_("Please check the fields marked below."), status=422)


@bp.route("/ideas/new", methods=["GET", "POST"], endpoint="new")
@participant_only
def new_idea() -> Any:
    if request.method == "GET":
        return render_form({"language": "auto", "theme": request.args.get("theme", "")}, {})
    try:
        idea = call("ideas", "POST", "/ideas", body={**form_data(), "author_id": me().participant_id})
    except ServiceError as exc:
        return refused(exc, dict(request.form))
    flash(_("Your idea is saved. Proposals from the partner city appear under “Matches” as soon as "
            "they are found."), "ok")
    return redirect(url_for("pages.ideas.show", idea_id=idea["id"]))


def own_idea(idea_id: str) -> dict[str, Any]:
    idea = call("ideas", "GET", f"/ideas/{seg(idea_id)}")
    if idea.get("author_id") != me().participant_id:
        raise ServiceError(403, {"detail": "not yours"})
    return idea


@bp.get("/ideas/<idea_id>", endpoint="show")
@participant_only
def show_idea(idea_id: str) -> Any:
    # The translate link (when the platform has a translation service) asks for the idea in the visitor's language.
    wanted = locale() if request.args.get("translate") == "1" and pages().settings.translate_url else None
    found = call("ideas", "GET", f"/ideas/{seg(idea_id)}", query={"translate": wanted})
    author = None
    if found.get("author_id"):
        try:
            author = call("ideas", "GET", f"/participants/{seg(found['author_id'])}")
        except ServiceError:
            author = None
    mine = found.get("author_id") == me().participant_id
    matches = call("matching", "GET", f"/ideas/{seg(idea_id)}/matches").get("items", []) if mine else []
    return render_template("pages/idea.html", idea=found, author=author, mine=mine,
                           matches=[view_match(m) for m in matches], translation=found.get("translation"),
                           can_translate=bool(pages().settings.translate_url) and found.get("language") != locale())


@bp.route("/ideas/<idea_id>/edit", methods=["GET", "POST"], endpoint="edit")
@participant_only
def edit_idea(idea_id: str) -> Any:
    current = own_idea(idea_id)
    if current.get("status") in ("withdrawn", "in_project"):
        flash(_("This idea can no longer be edited."), "error")
        return redirect(url_for("pages.ideas.show", idea_id=idea_id))
    if request.method == "GET":
        return render_form(form_values(current), {}, idea=current)
    data = {"language": None, **form_data()}
    try:
        version = int(request.form.get("version", ""))
    except ValueError:
        version = current["version"]
    try:
        call("ideas", "PATCH", f"/ideas/{seg(idea_id)}", body={**data, "version": version})
    except ServiceError as exc:
        if exc.status == 409:
            fresh = own_idea(idea_id)
            return render_form(form_values(fresh), {}, idea=fresh, status=409, message=_(
                "Someone changed this idea while you were editing it. Here is the current version; "
                "please make your changes again."))
        return refused(exc, {**dict(request.form), "version": version}, current)
    flash(_("Your changes are saved."), "ok")
    return redirect(url_for("pages.ideas.show", idea_id=idea_id))


@bp.post("/ideas/<idea_id>/withdraw", endpoint="withdraw")
@participant_only
def withdraw_idea(idea_id: str) -> Any:
    own_idea(idea_id)
    try:
        call("ideas", "POST", f"/ideas/{seg(idea_id)}/withdraw")
        flash(_("Your idea is withdrawn."), "ok")
    except ServiceError as exc:
        if exc.status != 409:
            raise
        flash(_("This idea cannot be withdrawn now."), "error")
    return redirect(url_for("pages.ideas.show", idea_id=idea_id))


# Notifications name things by the API's paths (/ideas/<id>/matches); the same path without /api/v1 opens its page.
@bp.get("/ideas/<idea_id>/matches", endpoint="matches")
@participant_only
def idea_matches(idea_id: str) -> Any:
    return redirect(url_for("pages.ideas.show", idea_id=idea_id))
