"""The coordinators' participants: list and find their city's people, add, edit and erase them, and invite someone
by e-mail."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError

from gateway import usecases
from gateway.pages.coordinator import caller
from gateway.pages.messages import all_in_words
from gateway.pages.web import LOCALES, ServiceError, backend, city_name, coordinator_only, pages, seg
from gateway.schemas import InvitationIn

bp = Blueprint("participants", __name__)


def _person_form() -> dict[str, Any]:
    form = request.form
    return {"name": form.get("name", "").strip(), "email": form.get("email", "").strip() or None,
            "language": form.get("language", ""), "interests": form.get("interests", "").strip()}


@bp.get("/coordinator/participants")
@coordinator_only
def list_people() -> Any:
    q = request.args.get("q", "").strip()
    page = backend().call(caller(), "ideas", "GET", "/participants",
                          query={"q": q, "limit": 50, "cursor": request.args.get("cursor")})
    more = page.get("next_cursor")
    return render_template("pages/participants.html", people=page["items"], q=q, languages=LOCALES,
                           next_url=url_for("pages.participants.list_people", q=q or None, cursor=more) if more
                           else None, values={}, errors={})


@bp.post("/coordinator/participants")
@coordinator_only
def add_person() -> Any:
    body = _person_form()
    try:
        backend().call(caller(), "ideas", "POST", "/participants", body=body)
    except ServiceError as exc:
        if exc.status not in (409, 422):
            raise
        errors = all_in_words(exc.errors, city_name) if exc.errors else {"email": [exc.detail]}
        return render_template("pages/participants.html", people=[], q="", languages=LOCALES, next_url=None,
                               values=body, errors=errors), exc.status
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
        errors = all_in_words(exc.errors, city_name) if exc.errors else {"name": [exc.detail]}
        return render_template("pages/participant.html", person=person, values=body, errors=errors,
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
        flash(_("The invitation was not sent: %(why)s", why="; ".join(
            f"{field}: {' '.join(msgs) if isinstance(msgs, list) else msgs}" for field, msgs in exc.messages.items())),
              "error")
        return redirect(url_for("pages.participants.list_people"))
    _doc, link = usecases.invite(parts.invitations, parts.invitation_mail, caller(), checked,
                                 lambda token: parts.settings.public_url + url_for("pages.account.invitation",
                                                                                    token=token))
    flash(_("%(email)s is invited: the e-mail is on its way.", email=checked["email"]), "ok")
    if parts.settings.embedded:
        flash(_("No mail server under twincity dev: the link is %(link)s", link=link), "ok")
    return redirect(url_for("pages.participants.list_people"))
