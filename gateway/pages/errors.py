"""Errors on a page are pages (in the visitor's language), never problem+json and never a 500 for bad input; an
unknown path is a page for a browser and problem+json for an API client."""

from __future__ import annotations

import logging
from typing import Any

from flask import g, make_response, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gateway.pages.web import ServiceError, security_headers
from services.web import PROBLEM, Problem, problem_response

log = logging.getLogger(__name__)


def page(status: int, title: str, text: str) -> tuple[str, int]:
    return render_template("pages/message.html", title=title, text=text, status=status), status


def not_found() -> tuple[str, int]:
    return page(404, _("Not found"), _("This page does not exist, or it is not visible to you."))


def try_again() -> tuple[str, int]:
    return page(503, _("Please try again"), _("A part of the platform does not answer right now. "
                                               "Please try again in a moment."))


def service_error(exc: ServiceError) -> Any:
    if exc.status == 404:
        return not_found()
    if exc.status == 403:
        return page(403, _("Not allowed"), _("This belongs to someone else; you cannot change it."))
    if exc.status in (400, 409, 413, 415, 422):
        return page(400, _("That did not work"), exc.detail or _("Please check what you entered."))
    log.warning("a service answered %s on a page: %s", exc.status, exc.detail)
    return try_again()


def problem(exc: Problem) -> Any:
    if exc.status >= 500 and "Retry-After" not in exc.headers and request.method == "POST":
        # The service may have made the change before it stopped answering: sending the form again could make it
        # twice.
        return page(exc.status, _("Please check before you try again"), _(
            "The platform took too long to answer. What you sent may have been saved: please look before you "
            "send it again."))
    if exc.status >= 500:
        return try_again()
    return page(exc.status, _("That did not work"), exc.detail or exc.title)


def too_large(_exc: RequestEntityTooLarge) -> Any:
    return page(413, _("File too large"), _("The upload is larger than this platform accepts. Please split the file."))


def http_error(exc: HTTPException) -> Any:
    if exc.code == 400 and exc.description == "csrf":
        return page(400, _("The form has expired"), _("For your safety, forms work only for a while and only "
                                                      "from this site. Please go back, reload the page and "
                                                      "send it again."))
    if exc.code in (404, 405):
        return page(exc.code, _("Not found"), _("This page does not exist, or it is not visible to you."))
    return page(exc.code or 400, _("That did not work"), _("Please check what you entered."))


def unexpected(exc: Exception) -> Any:
    log.exception("unhandled error on page %s %s (request %s)", request.method, request.path, g.get("request_id"))
    return page(500, _("Something went wrong"), _("Something went wrong on our side; it is logged. "
                                                  "Please try again."))


def wants_page() -> bool:
    """A person with a browser (not a client of the API, which gets problem+json as everywhere on /api)."""
    if request.path.startswith("/api/"):
        return False
    best = request.accept_mimetypes.best_match(("text/html", "application/json", PROBLEM), default="text/html")
    return best == "text/html"


def unknown_path(exc: HTTPException) -> Any:
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


def too_many(exc: HTTPException) -> Any:
    """The sign-in forms' limit per address (the API's limit answers problem+json, with Retry-After)."""
    if wants_page():
        response = make_response(page(429, _("Too many attempts"), _("Please wait a minute, then try again.")))
        security_headers(response)
        return response
    return problem_response(429, "Too Many Requests", exc.description)
