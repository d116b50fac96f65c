"""The web pages of the gateway: participants and coordinators, in German, Russian and English.

They call the services through the same internal endpoints and caller header as the public API, and
work without JavaScript (plain forms, POST-redirect-GET, a CSRF token in every form).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, g, make_response, render_template, request, session
from flask_babel import Babel
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gateway.clients import ServiceClient
from gateway.keys import KeyStore
from gateway.pages import account, coordinator, ideas, matches, projects, signin
from gateway.pages.web import (
    EXTENSION,
    LOCALES,
    Backend,
    Pages,
    ServiceError,
    check_csrf,
    load_visitor,
    security_headers,
    template_words,
)
from gateway.repository import Directory
from services.config import Settings
from services.store import ensure_indexes
from services.web import PROBLEM, Problem, problem_response

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
TRANSLATIONS = HERE / "translations"
_ERASE = re.compile(r"/api/v1/participants/([^/]+)")


def select_locale() -> str:
    """The language the visitor chose, else the browser's (Accept-Language), else English."""
    chosen = session.get("lang")
    if chosen in LOCALES:
        return chosen
    return request.accept_languages.best_match(LOCALES) or "en"


# The pages' blueprint: what every area shares (who is here, CSRF, headers, error pages, templates and static
# files); each area is a blueprint of its own inside it (pages.account.signin, pages.ideas.list, ...).
bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/pages")
for area in (account.bp, ideas.bp, matches.bp, projects.bp, coordinator.bp):
    bp.register_blueprint(area)


@bp.before_request
def _before() -> None:
    g.visitor = load_visitor()
    if request.method == "POST":
        check_csrf()


bp.after_request(security_headers)
bp.app_context_processor(template_words)


def install(app: Flask, *, settings: Settings, db: Any, directory: Directory, keys: KeyStore,
            clients: Mapping[str, ServiceClient]) -> None:
    """Add the pages to the gateway's app: sessions, Babel, their parts (app.extensions) and the blueprint."""
    ensure_indexes(db, signin.INDEXES)
    secret = signin.web_secret(db, settings.web_secret)
    app.config.update(
        SECRET_KEY=secret,
        SESSION_COOKIE_NAME="twincity_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(days=signin.SESSION_DAYS),
    )
    Babel(app, locale_selector=select_locale, default_translation_directories=str(TRANSLATIONS),
          default_domain="messages")
    sessions = signin.Sessions(db)
    app.extensions[EXTENSION] = Pages(
        backend=Backend(clients, directory, keys), links=signin.SignInLinks(db, secret, settings.signin_minutes),
        sessions=sessions, settings=settings,
        mailer=ThreadPoolExecutor(max_workers=4, thread_name_prefix="sign-in-mail"))

    @app.after_request
    def _end_sessions_of_the_erased(response: Response) -> Response:
        # Erasure goes through the public API (DELETE /api/v1/participants/<id>): the person's pages end with it.
        if request.method == "DELETE" and response.status_code == 204:
            erased = _ERASE.fullmatch(request.path)
            if erased:
                sessions.close_all(erased.group(1))
        return response

    app.register_blueprint(bp)


def _error_pages(bp: Blueprint) -> None:
    """Errors on a page are pages (in the visitor's language), never problem+json and never a 500 for bad input."""

    def page(status: int, title: str, text: str) -> tuple[str, int]:
        return render_template("pages/message.html", title=title, text=text, status=status), status

    @bp.errorhandler(ServiceError)
    def _service(exc: ServiceError) -> Any:
        if exc.status == 404:
            return page(404, _("Not found"), _("This page does not exist, or it is not visible to you."))
        if exc.status == 403:
            return page(403, _("Not allowed"), _("This belongs to someone else; you cannot change it."))
        if exc.status in (400, 409, 413, 415, 422):
            return page(400, _("That did not work"), exc.detail or _("Please check what you entered."))
        log.warning("a service answered %s on a page: %s", exc.status, exc.detail)
        return page(503, _("Please try again"), _("A part of the platform does not answer right now. "
                                                   "Please try again in a moment."))

    @bp.errorhandler(Problem)
    def _problem(exc: Problem) -> Any:
        if exc.status >= 500 and "Retry-After" not in exc.headers and request.method == "POST":
            # The service may have made the change before it stopped answering: sending the form again could
            # make it twice.
            return page(exc.status, _("Please check before you try again"), _(
                "The platform took too long to answer. What you sent may have been saved: please look before you "
                "send it again."))
        if exc.status >= 500:
            return page(503, _("Please try again"), _("A part of the platform does not answer right now. "
                                                       "Please try again in a moment."))
        return page(exc.status, _("That did not work"), exc.detail or exc.title)

    @bp.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc: RequestEntityTooLarge) -> Any:
        return page(413, _("File too large"), _("The upload is larger than this platform accepts. "
                                                "Please split the file."))

    @bp.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        if exc.code == 400 and exc.description == "csrf":
            return page(400, _("The form has expired"), _("For your safety, forms work only for a while and only "
                                                          "from this site. Please go back, reload the page and "
                                                          "send it again."))
        if exc.code == 404:
            return page(404, _("Not found"), _("This page does not exist, or it is not visible to you."))
        if exc.code == 405:
            return page(405, _("Not found"), _("This page does not exist, or it is not visible to you."))
        return page(exc.code or 400, _("That did not work"), _("Please check what you entered."))

    def wants_page() -> bool:
        """A person with a browser (not a client of the API, which gets problem+json as everywhere on /api)."""
        if request.path.startswith("/api/"):
            return False
        best = request.accept_mimetypes.best_match(("text/html", "application/json", PROBLEM), default="text/html")
        return best == "text/html"

    @bp.app_errorhandler(404)
    @bp.app_errorhandler(405)
    def _unknown_path(exc: HTTPException) -> Any:
        """An unknown path, or a page asked with the wrong method (GET /signout): a page, not problem+json."""
        allow = ", ".join(getattr(exc, "valid_methods", None) or ())
        if wants_page():
            response = make_response(page(exc.code or 404, _("Not found"),
                                          _("This page does not exist, or it is not visible to you.")))
            security_headers(response)
        else:
            response = problem_response(exc.code or 404, exc.name, exc.description)
        if exc.code == 405 and allow:
            response.headers["Allow"] = allow
        return response

    @bp.app_errorhandler(429)
    def _too_many(exc: HTTPException) -> Any:
        """The sign-in forms' limit per address (the API's limit answers problem+json, with Retry-After)."""
        if wants_page():
            response = make_response(page(429, _("Too many attempts"),
                                          _("Please wait a minute, then try again.")))
            security_headers(response)
            return response
        return problem_response(429, "Too Many Requests", exc.description)

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on page %s %s (request %s)", request.method, request.path,
                      g.get("request_id"))
        return page(500, _("Something went wrong"), _("Something went wrong on our side; it is logged. "
                                                      "Please try again."))


_error_pages(bp)
