"""The gateway's rate limits: the API's per key, the sign-in forms' per address (moving windows).

They are kept by `limits` itself, in MongoDB when the gateway has one (every worker and replica counts together),
else in this process's memory. Flask-Limiter did the same with ~85 µs of bookkeeping on every API call (its
limit filtering, exemption scopes and header injection) for one limit per request that is known in advance;
what it checked is the few lines of `RateLimits`, on limits' documented API.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from flask import Flask, Response, g, request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

View = TypeVar("View", bound=Callable[..., Any])


class RateLimits:
    """Moving-window limits checked before a request runs; its response says where the caller stands.

    Every limited response carries X-RateLimit-Limit, -Remaining and -Reset (epoch seconds); a call over a
    limit is refused with 429 Too Many Requests and Retry-After (seconds), answered by the app's 429 handler
    (problem+json for the API, a page for a form).
    """

    def __init__(self, storage_uri: str, api_limit: str, key: Callable[[], str]) -> None:
        self.storage = storage_from_string(storage_uri)
        self.window = MovingWindowRateLimiter(self.storage)
        self.api_limit = parse(api_limit)
        self.key = key

    def install(self, app: Flask) -> None:
        app.before_request(self._limit_api)
        app.after_request(self._headers)

    def per(self, limit: str, key: Callable[[], str], methods: Collection[str]) -> Callable[[View], View]:
        """A view's own limit (its own count per key), for the given methods."""
        item = parse(limit)

        def decorate(view: View) -> View:
            @functools.wraps(view)
            def limited(*args: Any, **kwargs: Any) -> Any:
                if request.method in methods:
                    self.check(item, f"view:{view.__module__}.{view.__name__}", key())
                return view(*args, **kwargs)

            return limited  # type: ignore[return-value]

        return decorate

    def check(self, item: RateLimitItem, scope: str, key: str) -> None:
        allowed = self.window.hit(item, scope, key)
        reset, remaining = self.window.get_window_stats(item, scope, key)
        g.twincity_rate_limit = (item, reset, remaining)
        if not allowed:
            raise TooManyRequests(str(item))  # "5 per 1 minute"

    def _limit_api(self) -> None:
        if request.path.startswith("/api/"):  # pages, health checks and metrics are not limited
            # A count per endpoint, as Flask-Limiter's default limits kept: every call passed on to a service
            # is one endpoint (api.proxy), and each of the gateway's own resources has its own.
            self.check(self.api_limit, f"api:{request.endpoint}", self.key())

    @staticmethod
    def _headers(response: Response) -> Response:
        found = g.get("twincity_rate_limit")
        if found is not None:
            item, reset, remaining = found
            response.headers["X-RateLimit-Limit"] = str(item.amount)
            response.headers["X-RateLimit-Remaining"] = str(remaining)
            response.headers["X-RateLimit-Reset"] = str(int(reset))
            if response.status_code == 429:
                response.headers["Retry-After"] = str(max(1, int(reset - time.time()) + 1))
        return response
