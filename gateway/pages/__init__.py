"""The web pages of the gateway: participants and coordinators, in German, Russian and English.

They call the services through the same internal endpoints and caller header as the public API, and
work without JavaScript (plain forms, POST-redirect-GET, a CSRF token in every form).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, g, request, session
from flask_babel import Babel
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gateway import signin
from gateway.clients import ServiceClient
from gateway.keys import KeyStore
from gateway.pages import account, coordinator, errors, ideas, matches, participants, projects, rounds
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
from services.web import Problem

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
for area in (account.bp, ideas.bp, matches.bp, projects.bp, coordinator.bp, rounds.bp,
             participants.bp):
    bp.register_blueprint(area)


@bp.before_request
def _before() -> None:
    g.visitor = load_visitor()
    if request.method == "POST":
        check_csrf()


bp.after_request(security_headers)
bp.app_context_processor(template_words)


def install(app: Flask, *, settings: Settings, db: Any, directory: Directory, keys: KeyStore,
            clients: Mapping[str, ServiceClient], invitations: signin.Invitations | None = None,
            invitation_mail: Any = None) -> None:
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
        mailer=ThreadPoolExecutor(max_workers=4, thread_name_prefix="sign-in-mail"),
        invitations=invitations, invitation_mail=invitation_mail)

    @app.after_request
    def _end_sessions_of_the_erased(response: Response) -> Response:
        # Erasure goes through the public API (DELETE /api/v1/participants/<id>): the person's pages end with it.
        if request.method == "DELETE" and response.status_code == 204:
            erased = _ERASE.fullmatch(request.path)
            if erased:
                sessions.close_all(erased.group(1))
        return response

    app.register_blueprint(bp)


for kind, handler in ((ServiceError, errors.service_error), (Problem, errors.problem),
                      (RequestEntityTooLarge, errors.too_large), (HTTPException, errors.http_error),
                      (Exception, errors.unexpected)):
    bp.register_error_handler(kind, handler)
for code, handler in ((404, errors.unknown_path), (405, errors.unknown_path), (429, errors.too_many)):
    bp.app_errorhandler(code)(handler)
