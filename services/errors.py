"""Refusals a use case raises, without knowing HTTP: services.web renders each as application/problem+json with its
status. Domain rules raise their own exceptions (each service's domain.RuleViolation, services.store.NotFound,
marshmallow's ValidationError for a field); these are for the rest: who may ask, and parts that do not answer."""

from __future__ import annotations


class Refused(Exception):
    """A request refused; `status` and `title` say how over HTTP, the message says why."""

    status, title = 400, "Bad Request"


class Forbidden(Refused):
    """The caller may not do this (whoever could is named in the message)."""

    status, title = 403, "Forbidden"


class Gone(Refused):
    """What the request names is not there (any more): a link that no longer works."""

    status, title = 404, "Not Found"


class Unprocessable(Refused):
    """The request is well-formed, but what it asks for cannot be."""

    status, title = 422, "Unprocessable Content"


class Unavailable(Refused):
    """A part this needs does not answer right now, and nothing was kept: try again shortly (Retry-After says
    when; the API's rule: a 503 with Retry-After did nothing)."""

    status, title = 503, "Service Unavailable"
    retry_after = 5  # seconds
