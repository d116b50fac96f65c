"""Signing in and out (participants by e-mail link, coordinators by city key), the language, a person's
notifications and preferences."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    copy_current_request_context,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import refresh
from marshmallow import ValidationError, fields

from gateway import usecases
from gateway.clients import ServiceRegistrar
from gateway.pages.messages import all_in_words
from gateway.pages.web import (
    LOCALES,
    ServiceError,
    backend,
    call,
    city_name,
    local_path,
    locale,
    me,
    pages,
    participant_only,
    seg,
)
from gateway.signin import LinkInvalid
from gateway.themes import DEFAULT_THEMES

log = logging.getLogger(__name__)
bp = Blueprint("account", __name__)
EMAIL_MAX = 254  # the longest e-mail address SMTP carries (RFC 5321)
_EMAIL = fields.Email()


@bp.get("/")
def home() -> Any:
    visitor = g.get("visitor")
    if visitor is not None and visitor.participant:
        return redirect(url_for("pages.ideas.list"))
    if visitor is not None and visitor.coordinator:
        return redirect(url_for("pages.coordinator.overview"))
    return render_template("pages/home.html")


@bp.post("/language")
def choose_language() -> Any:
    wanted = request.form.get("lang", "")
    if wanted in LOCALES:
        session["lang"] = wanted
    return redirect(local_path(request.form.get("next"), url_for("pages.account.home")))


# --- participants sign in by e-mail link ---------------------------------------------------------------------

@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    next_page = local_path(request.values.get("next"), "")
    if request.method == "GET":
        return render_template("pages/signin.html", email="", error=None, next=next_page)
    email = request.form.get("email", "").strip()
    try:
        if len(email) > EMAIL_MAX:
            raise ValidationError("too long")
        _EMAIL.deserialize(email)
    except ValidationError:
        return render_template("pages/signin.html", email=email[:EMAIL_MAX], next=next_page,
                               error=_("Please enter a valid e-mail address, like name@example.org.")), 422
    dev_links: list[dict[str, str]] = []
    if pages().settings.embedded:
        dev_links = send_links(email, next_page)  # `twincity dev` has no mail server: the link goes onto the page
    else:
        send_later(email, next_page)
    session["signin_sent"] = {"email": email, "dev_links": dev_links}
    return redirect(url_for("pages.account.signin_sent"))


def send_later(email: str, next_page: str) -> None:
    """The answer must not tell (by its content or its time) whether the address belongs to someone: finding the
    person and asking notify for the e-mail happen after the answer, off the request."""
    request_id = g.get("request_id", "")

    @copy_current_request_context
    def later() -> None:
        g.request_id = request_id
        try:
            send_links(email, next_page)
        except Exception:  # noqa: BLE001 - nobody waits for this answer: write it down and go on
            log.exception("a sign-in e-mail could not be sent (request %s)", request_id)

    pages().mailer.submit(later)


class People:
    """usecases.People through the ideas service's endpoints."""

    def with_email(self, email: str) -> list[dict[str, Any]]:
        return ServiceRegistrar(backend().clients["ideas"], backend().directory).with_email(email)

    def read(self, participant_id: str, city: str) -> dict[str, Any] | None:
        caller = backend().directory.caller(city=city, scopes=("read",), key_id=f"web:{participant_id}",
                                            default_themes=list(DEFAULT_THEMES))
        try:
            return backend().call(caller, "ideas", "GET", f"/participants/{seg(participant_id)}")
        except ServiceError as exc:
            if exc.status == 404:
                return None
            raise


class IdeasRegistrar:
    """usecases.Registrar through the ideas service: a participant made in the name of their city."""

    def register(self, city: str, data: Mapping[str, Any]) -> dict[str, Any]:
        caller = backend().directory.caller(city=city, scopes=("read", "write"), key_id="web:invitation",
                                            default_themes=list(DEFAULT_THEMES))
        return backend().call(caller, "ideas", "POST", "/participants", body=dict(data))


class _SignInMail:
    """usecases.SignInMail through the notify service."""

    def send(self, person: Mapping[str, Any], link: str, minutes: int, token_id: str) -> None:
        backend().call(backend().gateway_caller(), "notify", "POST", "/sign-in-mails", body={
            "participant_id": person["id"], "city": person["city"], "to": person["email"],
            "name": person.get("name", ""), "language": person.get("language", "en"),
            "link": link, "minutes": minutes, "token_id": token_id})
        if pages().settings.embedded:
            log.info("sign-in link for %s (%s): %s", person["id"], person["city"], link)


def send_links(email: str, next_page: str) -> list[dict[str, str]]:
    """Have a link sent to everyone with this address; the links (shown on the page by `twincity dev`)."""
    def link_to(token: str) -> tuple[str, str]:
        path = url_for("pages.account.signin_link", token=token, next=next_page or None)
        return path, pages().settings.public_url + path

    sent = usecases.request_sign_in(pages().links, People(), _SignInMail(), email, link_to)
    return [{"name": s.name, "city": s.city, "path": s.path} for s in sent]


@bp.get("/signin/sent")
def signin_sent() -> Any:
    sent = session.get("signin_sent") or {}
    if not sent:
        return redirect(url_for("pages.account.signin"))
    return render_template("pages/signin_sent.html", email=sent.get("email", ""),
                           dev_links=sent.get("dev_links", []), minutes=pages().links.minutes)


@bp.route("/signin/<token>", methods=["GET", "POST"])
def signin_link(token: str) -> Any:
    next_page = local_path(request.values.get("next"), url_for("pages.ideas.list"))
    try:
        if request.method == "GET":
            usecases.check_sign_in_link(pages().links, token)
            return render_template("pages/signin_confirm.html", token=token, next=next_page)
        person, sid = usecases.sign_in_with_link(pages().links, pages().sessions, People(), token)
    except LinkInvalid as exc:
        status = 410 if exc.reason in ("expired", "used", "gone") else 400
        return render_template("pages/signin_invalid.html", reason=exc.reason), status
    _new_session({"kind": "participant", "id": person["id"], "city": person["city"], "name": person.get("name", ""),
                  "sid": sid})
    flash(_("Welcome, %(name)s! You are signed in.", name=person.get("name", "")), "ok")
    return redirect(next_page)


def _new_session(who: dict[str, Any]) -> None:
    """A new session for the one who signed in (no fixation), keeping the language they chose."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    if who:
        session["who"] = who
        session.permanent = True


@bp.post("/signout")
def signout() -> Any:
    who = session.get("who")
    if isinstance(who, dict):
        usecases.sign_out(pages().sessions, who.get("sid"))
    _new_session({})
    flash(_("You are signed out."), "ok")
    return redirect(url_for("pages.account.home"))


# --- coordinators sign in with their city's key -----------------------------------------------------------------

@bp.route("/coordinator/signin", methods=["GET", "POST"])
def coordinator_signin() -> Any:
    next_page = local_path(request.values.get("next"), url_for("pages.coordinator.overview"))
    if request.method == "GET":
        return render_template("pages/coordinator_signin.html", error=None, next=next_page)
    try:
        key, sid = usecases.sign_in_coordinator(backend().keys, pages().sessions, request.form.get("key", "").strip())
    except usecases.CoordinatorRefused as exc:
        error = {"unknown": _("This key is unknown, revoked or expired."),
                 "admin": _("Sign in with the key of a city (an admin key belongs to no city)."),
                 "no-read": _("This key may not read; the coordinator pages need a key with the read scope.")}
        return render_template("pages/coordinator_signin.html", error=error[exc.reason], next=next_page), 401
    # The key's id and a fingerprint of its secret, never the secret itself: the cookie is signed, not secret.
    current = backend().coordinator_key(key.id)
    _new_session({"kind": "coordinator", "key": key.id, "city": key.city, "fp": current[1] if current else "",
                  "sid": sid})  # signing out ends it on the server
    city = backend().directory.city(key.city)
    flash(_("You are signed in as coordinator of %(city)s.", city=city["name"] if city else key.city), "ok")
    return redirect(next_page)


# --- a person's notifications and preferences ---------------------------------------------------------------

def page_link(link: str | None) -> str | None:
    """The page of a notification's link: the API's path without /api/v1 (older notifications carry it), and a
    meeting's place on its project's page (#meeting-<id>)."""
    if not link:
        return None
    parts = urlsplit(link)
    path = parts.path.removeprefix("/api/v1")
    if not re.match(r"^/(ideas/[^/]+/matches|matches/[^/]+|projects/[^/]+)$", path):
        return None
    if path.startswith("/projects/") and re.fullmatch(r"meeting-[\w-]{1,64}", parts.fragment, re.ASCII):
        return f"{path}#{parts.fragment}"
    return path


def inbox_item(n: dict[str, Any]) -> dict[str, Any]:
    """A notification as the inbox shows it: its title, the one line of what happened (older notifications have
    none: the start of their text instead) and the page it opens."""
    title = n.get("title") or n.get("subject") or ""
    line = n.get("line") if n.get("line") and n.get("line") != title else None
    return {**n, "title": title, "line": line, "page": page_link(n.get("link"))}


@bp.get("/notifications")
@participant_only
def notifications() -> Any:
    unread = request.args.get("unread") == "1"
    try:
        page = call("notify", "GET", f"/participants/{seg(me().participant_id)}/notifications",
                    query={"limit": 50, "unread": "true" if unread else None, "cursor": request.args.get("cursor")})
    except ServiceError as exc:
        if exc.status not in (404, 422):
            raise
        page = {"items": [], "next_cursor": None}  # notify has not heard of this person yet
    items = [inbox_item(n) for n in page.get("items", [])]
    next_url = url_for("pages.account.notifications", cursor=page["next_cursor"],
                       **({"unread": "1"} if unread else {})) if page.get("next_cursor") else None
    return render_template("pages/notifications.html", items=items, unread=unread, next_url=next_url)


@bp.post("/notifications/<nid>/read")
@participant_only
def notification_read(nid: str) -> Any:
    call("notify", "POST", f"/participants/{seg(me().participant_id)}/notifications/{seg(nid)}/read")
    return redirect(local_path(request.form.get("next"), url_for("pages.account.notifications")))


@bp.route("/preferences", methods=["GET", "POST"])
@participant_only
def preferences() -> Any:
    person = call("ideas", "GET", f"/participants/{seg(me().participant_id)}")
    if request.method == "GET":
        return render_template("pages/preferences.html", person=person, errors={})
    prefs = {"channels": [c for c in ("email", "inbox") if request.form.get(f"channel_{c}") == "on"],
             "digest": request.form.get("digest", "immediate")}
    changes = {"language": request.form.get("language", ""), "interests": request.form.get("interests", ""),
               "preferences": prefs}
    try:
        updated = call("ideas", "PATCH", f"/participants/{seg(me().participant_id)}", body=changes)
    except ServiceError as exc:
        if exc.status not in (409, 422):
            raise
        return render_template("pages/preferences.html", person={**person, **changes},
                               errors=all_in_words(exc.errors, city_name),
                               message=_("Please check the fields marked below.")), 422
    if updated.get("language") in LOCALES:
        session["lang"] = updated["language"]
    flash(_("Your preferences are saved."), "ok")
    return redirect(url_for("pages.account.preferences"))


# --- an invitation's link: the invited person says yes ----------------------------------------------------------

@bp.route("/signin/invitation/<token>", methods=["GET", "POST"], endpoint="invitation")
def invitation(token: str) -> Any:
    """The link of an invitation: a form for name, language and interests; sent, a participant, signed in."""
    parts = pages()
    assert parts.invitations is not None
    try:
        found = usecases.check_invitation(parts.invitations, token)
        _speak(found.get("language"))
        if request.method == "GET":
            return render_template("pages/invitation.html", invitation=found, values={
                "name": found.get("name", ""), "language": found.get("language")}, errors={})
        data = {"name": request.form.get("name", "").strip(), "language": request.form.get("language", ""),
                "interests": request.form.get("interests", "").strip()}
        person, sid = usecases.accept_invitation(parts.invitations, IdeasRegistrar(), parts.sessions, token, data)
    except LinkInvalid as exc:
        return render_template("pages/signin_invalid.html", reason=exc.reason), 410 if exc.reason != "invalid" \
            else 400
    except ServiceError as exc:
        if exc.status == 409:  # the address is a participant's already: sign in instead
            flash(_("There is a participant with this e-mail address already: sign in with it."), "error")
            return redirect(url_for("pages.account.signin"))
        if exc.status != 422:
            raise
        return render_template("pages/invitation.html", invitation=found, values=data,
                               errors=all_in_words(exc.errors, city_name)), 422
    _new_session({"kind": "participant", "id": person["id"], "city": person["city"], "name": person.get("name", ""),
                  "sid": sid})
    if person.get("language") in LOCALES:
        session["lang"] = person["language"]  # the pages speak the language they chose
    flash(_("Welcome, %(name)s! You are a participant of %(city)s now.", name=person.get("name", ""),
            city=city_name(person["city"])), "ok")
    return redirect(url_for("pages.ideas.list"))


# --- signing up by oneself, where a city lets people --------------------------------------------------------------

@bp.route("/signin/signup", methods=["GET", "POST"], endpoint="signup")
def signup() -> Any:
    """A city that lets people sign up: name, address, language, interests; a mail confirms the address."""
    parts = pages()
    cities = [c for c in backend().directory.list_cities() if c.get("sign_up", "closed") != "closed"]
    if request.method == "GET":
        return render_template("pages/signup.html", cities=cities, values={"language": locale()}, errors={})
    data = {k: request.form.get(k, "").strip() for k in ("city", "email", "name", "language", "interests")}
    errors = _signup_errors(data, cities)
    if errors:
        return render_template("pages/signup.html", cities=cities, values=data, errors=errors), 422
    links: list[str] = []

    def link_to(token: str) -> str:
        links.append(url_for("pages.account.signup_link", token=token))
        return parts.settings.public_url + links[-1]

    try:
        usecases.request_sign_up(backend().directory, parts.invitations, parts.invitation_mail, data, link_to)
    except usecases.SignUpClosed:
        return render_template("pages/signup.html", cities=cities, values=data,
                               errors={"city": [_("This city does not take sign-ups.")]}), 422
    return render_template("pages/signup_sent.html", email=data["email"],
                           link=links[-1] if parts.settings.embedded else None)


def _signup_errors(data: Mapping[str, str], cities: Any) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if data["city"] not in {c["_id"] for c in cities}:
        errors["city"] = [_("Choose a city.")]
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", data["email"]):
        errors["email"] = [_("An e-mail address, please.")]
    if not 1 <= len(data["name"]) <= 200:
        errors["name"] = [_("Your name, please.")]
    if data["language"] not in LOCALES:
        data["language"] = "en"
    return errors


@bp.route("/signin/signup/<token>", methods=["GET", "POST"], endpoint="signup_link")
def signup_link(token: str) -> Any:
    """The link that confirms a sign-up's address (a button: mail scanners open links)."""
    parts = pages()
    assert parts.invitations is not None
    try:
        if request.method == "GET":
            found = parts.invitations.check(token, status="requested")
            _speak(found.get("language"))
            return render_template("pages/signup_confirm.html", signup=found)
        done, person, sid = usecases.confirm_sign_up(backend().directory, parts.invitations, IdeasRegistrar(),
                                                     parts.sessions, token)
    except LinkInvalid as exc:
        return render_template("pages/signin_invalid.html", reason=exc.reason), 410 if exc.reason != "invalid" \
            else 400
    except ServiceError as exc:
        if exc.status != 409:
            raise
        flash(_("There is a participant with this e-mail address already: sign in with it."), "error")
        return redirect(url_for("pages.account.signin"))
    if person is None:
        return render_template("pages/message.html", title=_("Thank you"), text=_(
            "Your address is confirmed. The coordinators of %(city)s look at your sign-up; you get an e-mail "
            "when they said yes.", city=city_name(done["city"])))
    _new_session({"kind": "participant", "id": person["id"], "city": person["city"], "name": person.get("name", ""),
                  "sid": sid})
    flash(_("Welcome, %(name)s! You are a participant of %(city)s now.", name=person.get("name", ""),
            city=city_name(person["city"])), "ok")
    return redirect(url_for("pages.ideas.list"))


def _speak(language: str | None) -> None:
    """The pages in the language an invitation or a sign-up was made in, unless the visitor chose one."""
    if language in LOCALES and "lang" not in session:
        session["lang"] = language
        refresh()
