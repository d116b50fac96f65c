"""The coordinators' participants: list and find their city's people, add, edit and erase them, and invite someone
by e-mail."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError

from gateway import usecases
from gateway.domain import Exists, RuleViolation
from gateway.pages.account import IdeasRegistrar, People
from gateway.pages.coordinator import caller
from gateway.pages.messages import all_in_words
from gateway.pages.web import LOCALES, ServiceError, backend, city_name, coordinator_only, me, pages, seg
from gateway.schemas import InvitationIn
from services.store import NotFound

bp = Blueprint("participants", __name__)


def _person_form() -> dict[str, Any]:
    form = request.form
    return {"name": form.get("name", "").strip(), "email": form.get("email", "").strip() or None,
            "language": form.get("language", ""), "interests": form.get("interests", "").strip()}


@bp.get("/coordinator/participants")
@coordinator_only
def list_people() -> Any:
    return people_page({}, {})


def people_page(values: dict[str, Any], errors: dict[str, Any], status: int = 200) -> Any:
    """The city's people (found by `q`), the waiting sign-ups and the forms (`values`, `errors`: the add form
    again, as it was sent, with what was wrong)."""
    q = request.args.get("q", "").strip()[:100]
    page = backend().call(caller(), "ideas", "GET", "/participants",
                          query={"q": q, "limit": 50, "cursor": request.args.get("cursor")})
    more = page.get("next_cursor")
    waiting = usecases.waiting_sign_ups(pages().invitations, caller(), None) if pages().invitations else []
    mode = (backend().directory.city(me().city) or {}).get("sign_up", "closed")
    return render_template("pages/participants.html", people=page["items"], q=q, languages=LOCALES,
                           next_url=url_for("pages.participants.list_people", q=q or None, cursor=more) if more
                           else None, values=values, errors=errors, waiting=waiting, mode=mode), status


def person_errors(exc: ServiceError) -> dict[str, list[str]]:
    """What the ideas service said of a person's fields, in the visitor's words."""
    if exc.status == 409:
        return {"email": [_("There is a participant with this e-mail address already.")]}
    errors = all_in_words(exc.errors, city_name) if exc.errors else {}
    if "language" in errors:
        errors["language"] = [_("Choose a language.")]
    return errors or {"name": [exc.detail]}


@bp.post("/coordinator/participants")
@coordinator_only
def add_person() -> Any:
    body = _person_form()
    try:
        backend().call(caller(), "ideas", "POST", "/participants", body=body)
    except ServiceError as exc:
        if exc.status not in (409, 422):
            raise
        return people_page(body, person_errors(exc), exc.status)
    flash(_("%(name)s is a participant now.", name=body["name"]), "ok")
    return redirect(url_for("pages.participants.list_people"))


@bp.route("/coordinator/participants/<pid>", methods=["GET", "POST"])
@coordinator_only
def edit_person(pid: str) -> Any:
    person = backend().call(caller(), "ideas", "GET", f"/participants/{seg(pid)}")
    if request.method == "GET":
        return render_template("pages/participant.html", person=person, values=person, errors={},
                               languages=LOCALES)
    body = _person_form()
    try:
        backend().call(caller(), "ideas", "PATCH", f"/participants/{seg(pid)}",
                       body={**body, "version": person["version"]})
    except ServiceError as exc:
        if exc.status not in (409, 422):
            raise
        return render_template("pages/participant.html", person=person, values=body, errors=person_errors(exc),
                               languages=LOCALES), exc.status
    flash(_("Saved."), "ok")
    return redirect(url_for("pages.participants.list_people"))


@bp.post("/coordinator/participants/<pid>/erase")
@coordinator_only
def erase_person(pid: str) -> Any:
    if request.form.get("confirm") != "yes":
        flash(_("Tick the box to confirm: erasing cannot be undone."), "error")
        return redirect(url_for("pages.participants.edit_person", pid=pid))
    backend().call(caller(), "ideas", "DELETE", f"/participants/{seg(pid)}")
    flash(_("The participant is erased: their name, address and interests, everywhere. Their ideas stay, "
            "without their name."), "ok")
    return redirect(url_for("pages.participants.list_people"))


@bp.post("/coordinator/invitations")
@coordinator_only
def invite() -> Any:
    """Invite someone by e-mail, in their language (under twincity dev, with no mail server, the link is shown)."""
    parts = pages()
    data = {"email": request.form.get("email", "").strip(), "name": request.form.get("name", "").strip(),
            "language": request.form.get("language", "")}
    try:
        checked = InvitationIn().load(data)
    except ValidationError as exc:
        wrong = [str(words) for field, words in (("email", _("an e-mail address")), ("language", _("a language")),
                                                 ("name", _("a name of one line"))) if field in exc.messages]
        flash(_("The invitation was not sent: it needs %(what)s.", what=", ".join(wrong) or "?"), "error")
        return redirect(url_for("pages.participants.list_people"))
    try:
        _doc, link = usecases.invite(parts.invitations, parts.invitation_mail, People(), caller(), checked,
                                     lambda token: parts.settings.public_url + url_for("pages.account.invitation",
                                                                                        token=token))
    except Exists:
        flash(_("%(email)s is a participant of your city already: they sign in with this address.",
                email=checked["email"]), "error")
        return redirect(url_for("pages.participants.list_people"))
    flash(_("%(email)s is invited: the e-mail is on its way.", email=checked["email"]), "ok")
    if parts.settings.embedded:
        flash(_("No mail server under twincity dev: the link is %(link)s", link=link), "ok")
    return redirect(url_for("pages.participants.list_people"))


@bp.post("/coordinator/sign-up")
@coordinator_only
def set_sign_up() -> Any:
    mode = request.form.get("mode", "")
    if mode not in usecases.SIGN_UP_MODES:
        flash(_("Choose one of the ways."), "error")
    else:
        usecases.set_sign_up(backend().directory, caller(), me().city, mode)
        flash(_("Saved."), "ok")
    return redirect(url_for("pages.participants.list_people", _anchor="sign-up"))


@bp.post("/coordinator/sign-ups/<signup_id>/<any(approve, decline):answer>")
@coordinator_only
def answer_sign_up(signup_id: str, answer: str) -> Any:
    parts = pages()
    try:
        doc = usecases.answer_sign_up(parts.invitations, IdeasRegistrar(), parts.invitation_mail, caller(), signup_id,
                                      answer == "approve", parts.settings.public_url + url_for("pages.account.signin"))
    except ServiceError as exc:
        if exc.status != 409:
            raise
        flash(_("There is a participant with this e-mail address already."), "error")
        return redirect(url_for("pages.participants.list_people"))
    except (RuleViolation, NotFound):  # answered meanwhile (a second click), or not this city's
        flash(_("This sign-up was answered already, or it is not your city's."), "error")
        return redirect(url_for("pages.participants.list_people"))
    flash(_("%(name)s is a participant now.", name=doc["name"]) if answer == "approve"
          else _("The sign-up is declined; %(name)s is told.", name=doc["name"]), "ok")
    return redirect(url_for("pages.participants.list_people"))
