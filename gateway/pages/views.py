"""The participants' pages: sign in by e-mail link, browse and submit ideas, answer matches, projects, inbox."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
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
from marshmallow import ValidationError, fields

from gateway.pages.messages import all_in_words
from gateway.pages.signin import LinkInvalid, Sessions, SignInLinks
from gateway.pages.web import (
    IDEA_STATUS,
    LOCALES,
    MATCH_STATUS,
    Backend,
    ServiceError,
    Visitor,
    check_csrf,
    csrf_token,
    label,
    language_name,
    local_path,
    locale,
    seg,
    when,
)
from gateway.themes import DEFAULT_THEMES
from services.config import Settings

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; img-src 'self' data:; "
       "style-src 'self'; form-action 'self'; frame-ancestors 'none'")
EMAIL_MAX = 254  # the longest e-mail address SMTP carries (RFC 5321)
IDEA_LANGUAGES = ("de", "ru", "en", "fr", "uk", "pl", "it", "es", "tr")
_EMAIL = fields.Email()
OPEN_MATCH = ("proposed", "accepted")


def security_headers(response: Response) -> Response:
    """The headers of every page (also of the error pages the app answers for unknown paths)."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # No Referer at all: a sign-in link (/signin/<token>) must not travel to anyone, not even to our own logs.
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    # The pages run no script at all; no <base>, no plugins, no framing, forms post only here.
    response.headers.setdefault("Content-Security-Policy", CSP)
    if g.get("visitor") is not None or request.path.startswith("/signin"):
        response.headers["Cache-Control"] = "private, no-store"
    return response


def build(backend: Backend, links: SignInLinks, settings: Settings, sessions: Sessions) -> Blueprint:
    bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                   static_url_path="/static/pages")
    mailer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sign-in-mail")
    bp.mailer = mailer  # type: ignore[attr-defined]

    # --- who is here ------------------------------------------------------------------------------------

    def load_visitor() -> Visitor | None:
        who = session.get("who")
        if not isinstance(who, dict):
            return None
        # A participant's session must still exist on the server: signing out or erasure ends it everywhere.
        if (who.get("kind") == "participant" and isinstance(who.get("id"), str) and who.get("city")
                and sessions.valid(who.get("sid"), participant_id=who["id"])):
            return Visitor("participant", who["city"], participant_id=who["id"], name=who.get("name", ""))
        if (who.get("kind") == "coordinator" and isinstance(who.get("key"), str)
                and sessions.valid(who.get("sid"), key_id=who["key"])):
            # A revoked key ends the session at once, and so does a rotated one (its fingerprint changes).
            found = backend.coordinator_key(who["key"])
            if found is not None:
                key, fingerprint = found
                if key.city == who.get("city") and hmac.compare_digest(str(who.get("fp", "")), fingerprint):
                    return Visitor("coordinator", key.city, key_id=key.id, scopes=key.scopes)
        session.pop("who", None)
        return None

    @bp.before_request
    def _before() -> None:
        g.visitor = load_visitor()
        if request.method == "POST":
            check_csrf()

    bp.after_request(security_headers)

    @bp.app_context_processor
    def _context() -> dict[str, Any]:
        return {"csrf_token": csrf_token, "visitor": g.get("visitor"), "locale": locale(), "locales": LOCALES,
                "label": label, "language_name": language_name, "when": when, "IDEA_STATUS": IDEA_STATUS,
                "MATCH_STATUS": MATCH_STATUS, "theme_label": theme_label, "city_name": city_name,
                "reason_text": reason_text, "embedded": settings.embedded}

    def participant_only(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            visitor = g.get("visitor")
            if visitor is None or not visitor.participant:
                return redirect(url_for("pages.signin", next=request.full_path.rstrip("?")))
            return view(*args, **kwargs)
        return wrapped

    bp.participant_only = participant_only  # type: ignore[attr-defined]

    def me() -> Visitor:
        return g.visitor

    def call(service: str, method: str, path: str, **kwargs: Any) -> Any:
        return backend.call(backend.caller_of(me()), service, method, path, **kwargs)

    # --- words for keys -------------------------------------------------------------------------------------

    def themes_of(city: str | None) -> dict[str, dict[str, str]]:
        found = dict(DEFAULT_THEMES)
        for p in backend.directory.list_partnerships(city):
            for t in p.get("themes", []):
                found.setdefault(t["key"], t["labels"])
        return found

    def theme_label(key: str) -> str:
        cache = g.setdefault("theme_cache", {})
        if "themes" not in cache:
            visitor = g.get("visitor")
            cache["themes"] = themes_of(visitor.city if visitor else None)
        return label(cache["themes"].get(key), key)

    city_name = backend.city_name

    def reason_text(reason: dict[str, Any]) -> str:
        text = reason.get("text") or {}
        return text.get(locale()) or text.get("en") or next(iter(text.values()), "")

    def visible_cities() -> list[dict[str, Any]]:
        caller = backend.caller_of(me())
        return backend.directory.list_cities(list(caller.visible_cities))

    # --- home, language, sign-in ----------------------------------------------------------------------------

    @bp.get("/")
    def home() -> Any:
        visitor = g.get("visitor")
        if visitor is not None and visitor.participant:
            return redirect(url_for("pages.ideas"))
        if visitor is not None and visitor.coordinator:
            return redirect(url_for("pages.overview"))
        return render_template("pages/home.html")

    @bp.post("/language")
    def choose_language() -> Any:
        wanted = request.form.get("lang", "")
        if wanted in LOCALES:
            session["lang"] = wanted
        return redirect(local_path(request.form.get("next"), url_for("pages.home")))

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
        if not links.may_send(email):
            log.warning("sign-in e-mails for one address throttled")
        elif settings.embedded:
            # `twincity dev` has no mail server: the link goes to the log and onto the next page.
            dev_links = send_links(email, next_page)
        else:
            # The answer must not tell (by its content or its time) whether the address belongs to someone:
            # finding the person and asking notify for the e-mail happen after the answer, off the request.
            request_id = g.get("request_id", "")

            @copy_current_request_context
            def later() -> None:
                g.request_id = request_id
                try:
                    send_links(email, next_page)
                except Exception:  # noqa: BLE001 - nobody waits for this answer: write it down and go on
                    log.exception("a sign-in e-mail could not be sent (request %s)", request_id)

            mailer.submit(later)
        session["signin_sent"] = {"email": email, "dev_links": dev_links}
        return redirect(url_for("pages.signin_sent"))

    def send_links(email: str, next_page: str) -> list[dict[str, str]]:
        """Find the people with this address and have notify send each a link; the links (for `twincity dev`)."""
        sent = []
        found = backend.call(backend.gateway_caller(), "ideas", "GET", "/internal/participants",
                             query={"email": email}).get("items", [])
        for person in found:
            token, link_id = links.make(person["id"], person["city"])
            path = url_for("pages.signin_link", token=token, next=next_page or None)
            backend.call(backend.gateway_caller(), "notify", "POST", "/sign-in-mails", body={
                "participant_id": person["id"], "city": person["city"], "to": person["email"],
                "name": person.get("name", ""), "language": person.get("language", "en"),
                "link": settings.public_url + path, "minutes": links.minutes, "token_id": link_id})
            if settings.embedded:
                log.info("sign-in link for %s (%s): %s%s", person["id"], person["city"], settings.public_url, path)
            sent.append({"name": person.get("name", ""), "city": person["city"], "path": path})
        return sent

    @bp.get("/signin/sent")
    def signin_sent() -> Any:
        sent = session.get("signin_sent") or {}
        if not sent:
            return redirect(url_for("pages.signin"))
        return render_template("pages/signin_sent.html", email=sent.get("email", ""),
                               dev_links=sent.get("dev_links", []), minutes=links.minutes)

    @bp.route("/signin/<token>", methods=["GET", "POST"])
    def signin_link(token: str) -> Any:
        next_page = local_path(request.values.get("next"), url_for("pages.ideas"))
        try:
            # A GET only shows the button: mail scanners open links, and the link works once.
            link = links.check(token) if request.method == "GET" else links.spend(token)
        except LinkInvalid as exc:
            status = 410 if exc.reason in ("expired", "used") else 400
            return render_template("pages/signin_invalid.html", reason=exc.reason), status
        if request.method == "GET":
            return render_template("pages/signin_confirm.html", token=token, next=next_page)
        caller = backend.directory.caller(city=link.city, scopes=("read",), key_id=f"web:{link.participant_id}",
                                          default_themes=list(DEFAULT_THEMES))
        try:
            person = backend.call(caller, "ideas", "GET", f"/participants/{seg(link.participant_id)}")
        except ServiceError as exc:
            if exc.status == 404:
                return render_template("pages/signin_invalid.html", reason="gone"), 410
            raise
        lang = session.get("lang")
        session.clear()  # a new session for the new person (no fixation)
        if lang:
            session["lang"] = lang
        session["who"] = {"kind": "participant", "id": person["id"], "city": person["city"],
                          "name": person.get("name", ""),
                          "sid": sessions.open(person["city"], participant_id=person["id"])}
        session.permanent = True
        flash(_("Welcome, %(name)s! You are signed in.", name=person.get("name", "")), "ok")
        return redirect(next_page)

    @bp.post("/signout")
    def signout() -> Any:
        who = session.get("who")
        if isinstance(who, dict):
            sessions.close(who.get("sid"))  # a copy of the cookie stops working too
        lang = session.get("lang")
        session.clear()
        if lang:
            session["lang"] = lang
        flash(_("You are signed out."), "ok")
        return redirect(url_for("pages.home"))

    # --- ideas -------------------------------------------------------------------------------------------------

    @bp.get("/ideas")
    @participant_only
    def ideas() -> Any:
        filters = {k: request.args.get(k, "").strip() for k in ("theme", "city", "language", "status", "q")}
        mine = request.args.get("mine") == "1"
        query = {**filters, "cursor": request.args.get("cursor"), "limit": 20}
        if mine:
            query["author_id"] = me().participant_id
        status, error, page = 200, None, {"items": [], "next_cursor": None}
        try:
            page = call("ideas", "GET", "/ideas", query=query)
        except ServiceError as exc:
            if exc.status != 422:
                raise
            status, error = 400, _("Some filters are not valid: %(fields)s", fields=", ".join(sorted(exc.errors)))
        next_url = None
        if page.get("next_cursor"):
            next_url = url_for("pages.ideas", **{k: v for k, v in filters.items() if v},
                               **({"mine": "1"} if mine else {}), cursor=page["next_cursor"])
        return render_template("pages/ideas.html", ideas=page.get("items", []), filters=filters, mine=mine,
                               error=error, next_url=next_url, themes=themes_of(me().city),
                               cities=visible_cities(), languages=IDEA_LANGUAGES), status

    def idea_form_data() -> dict[str, Any]:
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
        return data

    def form_values(idea: dict[str, Any]) -> dict[str, Any]:
        return {"title": idea.get("title", ""), "description": idea.get("description", ""),
                "theme": idea.get("theme", ""), "tags": ", ".join(idea.get("tags", [])),
                "seeks": "\n".join(idea.get("seeks", [])), "offers": "\n".join(idea.get("offers", [])),
                "language": idea.get("language") or "auto", "version": idea.get("version")}

    def render_form(values: dict[str, Any], errors: dict[str, Any], *, idea: dict[str, Any] | None = None,
                    message: str | None = None, status: int = 200) -> Any:
        return render_template("pages/idea_form.html", values=values, errors=errors, idea=idea, message=message,
                               themes=themes_of(me().city), languages=IDEA_LANGUAGES), status

    @bp.route("/ideas/new", methods=["GET", "POST"])
    @participant_only
    def new_idea() -> Any:
        if request.method == "GET":
            return render_form({"language": "auto", "theme": request.args.get("theme", "")}, {})
        data = idea_form_data()
        try:
            idea = call("ideas", "POST", "/ideas", body={**data, "author_id": me().participant_id})
        except ServiceError as exc:
            if exc.status not in (409, 422):
                raise
            return render_form(dict(request.form), all_in_words(exc.errors, city_name),
                               message=_("Please check the fields marked below."), status=422)
        flash(_("Your idea is saved. Proposals from the partner city appear under “Matches” as soon as "
                "they are found."), "ok")
        return redirect(url_for("pages.idea", idea_id=idea["id"]))

    def own_idea(idea_id: str) -> dict[str, Any]:
        idea = call("ideas", "GET", f"/ideas/{seg(idea_id)}")
        if idea.get("author_id") != me().participant_id:
            raise ServiceError(403, {"detail": "not yours"})
        return idea

    @bp.get("/ideas/<idea_id>")
    @participant_only
    def idea(idea_id: str) -> Any:
        found = call("ideas", "GET", f"/ideas/{seg(idea_id)}")
        author = None
        if found.get("author_id"):
            try:
                author = call("ideas", "GET", f"/participants/{seg(found['author_id'])}")
            except ServiceError:
                author = None
        mine = found.get("author_id") == me().participant_id
        matches = call("matching", "GET", f"/ideas/{seg(idea_id)}/matches").get("items", []) if mine else []
        return render_template("pages/idea.html", idea=found, author=author, mine=mine,
                               matches=[view_match(m) for m in matches])

    @bp.route("/ideas/<idea_id>/edit", methods=["GET", "POST"])
    @participant_only
    def edit_idea(idea_id: str) -> Any:
        current = own_idea(idea_id)
        if current.get("status") in ("withdrawn", "in_project"):
            flash(_("This idea can no longer be edited."), "error")
            return redirect(url_for("pages.idea", idea_id=idea_id))
        if request.method == "GET":
            return render_form(form_values(current), {}, idea=current)
        data = idea_form_data()
        if "language" not in data:
            data["language"] = None
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
            if exc.status != 422:
                raise
            return render_form({**dict(request.form), "version": version},
                               all_in_words(exc.errors, city_name), idea=current,
                               message=_("Please check the fields marked below."), status=422)
        flash(_("Your changes are saved."), "ok")
        return redirect(url_for("pages.idea", idea_id=idea_id))

    @bp.post("/ideas/<idea_id>/withdraw")
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
        return redirect(url_for("pages.idea", idea_id=idea_id))

    # --- matches --------------------------------------------------------------------------------------------

    def view_match(match: dict[str, Any]) -> dict[str, Any]:
        """A match as the signed-in participant sees it: their side, the other side, whether to answer."""
        pid, city = me().participant_id, me().city
        sides = match.get("sides", [])
        mine = next((s for s in sides if s.get("city") == city
                     and pid in (s.get("author_id"), s.get("participant_id"))), None)
        other = next((s for s in sides if s is not mine), {})
        can_answer = (mine is not None and match.get("status") in OPEN_MATCH and not mine.get("answer"))
        return {**match, "mine": mine or {}, "other": other, "can_answer": can_answer}

    def my_matches() -> list[dict[str, Any]]:
        own = list(backend.all_pages(backend.caller_of(me()), "ideas", "/ideas",
                                     {"author_id": me().participant_id}, most=200))
        found: dict[str, dict[str, Any]] = {}
        for idea in own:
            for match in call("matching", "GET", f"/ideas/{seg(idea['id'])}/matches").get("items", []):
                found[match["id"]] = match
        for match in backend.all_pages(backend.caller_of(me()), "matching", "/matches",
                                       {"kind": "interest", "city": me().city}, most=500):
            if any(s.get("participant_id") == me().participant_id for s in match.get("sides", [])):
                found[match["id"]] = match
        return [view_match(m) for m in sorted(found.values(), key=lambda m: -m.get("score", 0))]

    @bp.get("/matches")
    @participant_only
    def matches() -> Any:
        everything = my_matches()
        groups = [
            ("answer", _("Waiting for your answer"), [m for m in everything if m["can_answer"]]),
            ("partner", _("Waiting for the partner city"),
             [m for m in everything if m["status"] in OPEN_MATCH and not m["can_answer"]]),
            ("confirmed", _("Confirmed"), [m for m in everything if m["status"] == "confirmed"]),
            ("closed", _("Declined or expired"), [m for m in everything if m["status"] in ("declined", "expired")]),
        ]
        return render_template("pages/matches.html", groups=groups, total=len(everything))

    def answer(match_id: str, accept: bool) -> Any:
        back = local_path(request.form.get("next"), url_for("pages.matches"))
        match = view_match(call("matching", "GET", f"/matches/{seg(match_id)}"))
        if not match["mine"]:
            raise ServiceError(403, {"detail": "not your match"})
        try:
            answered = call("matching", "POST", f"/matches/{seg(match_id)}/{'accept' if accept else 'decline'}",
                            body={"participant_id": me().participant_id})
        except ServiceError as exc:
            if exc.status != 409:
                raise
            flash(_("This proposal cannot be answered any more (it was answered, withdrawn or has expired)."),
                  "error")
            return redirect(back)
        if not accept:
            flash(_("You declined the proposal."), "ok")
        elif answered.get("status") == "confirmed":
            flash(_("Both sides accepted: a joint project has formed. See “Projects”."), "ok")
        else:
            flash(_("You accepted. When the partner city accepts too, a joint project forms."), "ok")
        return redirect(back)

    @bp.post("/matches/<match_id>/accept")
    @participant_only
    def accept(match_id: str) -> Any:
        return answer(match_id, True)

    @bp.post("/matches/<match_id>/decline")
    @participant_only
    def decline(match_id: str) -> Any:
        return answer(match_id, False)

    # --- projects, notifications, preferences --------------------------------------------------------------

    @bp.get("/projects")
    @participant_only
    def projects() -> Any:
        pid = me().participant_id
        mine = [p for p in backend.all_pages(backend.caller_of(me()), "matching", "/projects", most=1000)
                if any(m.get("participant_id") == pid for m in p.get("members", []))
                or any(s.get("author_id") == pid or s.get("participant_id") == pid for s in p.get("sides", []))]
        return render_template("pages/projects.html", projects=mine)

    # Notifications name things by the API's paths (/ideas/<id>/matches, /matches/<id>, /projects/<id>); the
    # same paths without /api/v1 open the page that shows them, so links in e-mails and the inbox work for people.

    @bp.get("/ideas/<idea_id>/matches")
    @participant_only
    def idea_matches(idea_id: str) -> Any:
        return redirect(url_for("pages.idea", idea_id=idea_id))

    @bp.get("/matches/<match_id>")
    @participant_only
    def match(match_id: str) -> Any:
        return redirect(url_for("pages.matches", _anchor=f"match-{match_id}"))

    @bp.get("/projects/<project_id>")
    @participant_only
    def project(project_id: str) -> Any:
        return redirect(url_for("pages.projects", _anchor=f"project-{project_id}"))

    def page_link(link: str | None) -> str | None:
        """The page of a notification's link (older notifications carry the /api/v1 prefix)."""
        if not link:
            return None
        path = urlsplit(link).path.removeprefix("/api/v1")
        return path if re.match(r"^/(ideas/[^/]+/matches|matches/[^/]+|projects/[^/]+)$", path) else None

    @bp.get("/notifications")
    @participant_only
    def notifications() -> Any:
        unread = request.args.get("unread") == "1"
        try:
            page = call("notify", "GET", f"/participants/{seg(me().participant_id)}/notifications",
                        query={"limit": 50, "unread": "true" if unread else None,
                               "cursor": request.args.get("cursor")})
        except ServiceError as exc:
            if exc.status not in (404, 422):
                raise
            page = {"items": [], "next_cursor": None}  # notify has not heard of this person yet
        items = [{**n, "page": page_link(n.get("link"))} for n in page.get("items", [])]
        next_url = url_for("pages.notifications", cursor=page["next_cursor"], **({"unread": "1"} if unread else {})) \
            if page.get("next_cursor") else None
        return render_template("pages/notifications.html", items=items, unread=unread, next_url=next_url)

    @bp.post("/notifications/<nid>/read")
    @participant_only
    def notification_read(nid: str) -> Any:
        call("notify", "POST", f"/participants/{seg(me().participant_id)}/notifications/{seg(nid)}/read")
        return redirect(local_path(request.form.get("next"), url_for("pages.notifications")))

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
        return redirect(url_for("pages.preferences"))

    return bp
