"""Prometheus metrics shared by every process: events handled, failed, retried, parked; outbox backlog."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_HANDLED = Counter(
    "twincity_events_handled_total", "Events a handler finished (acked).", ["service", "type"]
)
EVENTS_FAILED = Counter(
    "twincity_events_failed_total", "Handler attempts that raised.", ["service", "type"]
)
EVENTS_RETRIED = Counter(
    "twincity_events_retried_total", "Events sent to a retry queue.", ["service", "type"]
)
EVENTS_PARKED = Counter(
    "twincity_events_parked_total", "Messages moved to the parking queue.", ["service", "reason"]
)
EVENTS_DUPLICATE = Counter(
    "twincity_events_duplicate_total", "Events skipped because their id was processed already.", ["service"]
)
HANDLER_SECONDS = Histogram(
    "twincity_handler_seconds", "Time to handle one event.", ["service", "type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_PUBLISHED = Counter(
    "twincity_outbox_published_total", "Events the relay published with a broker confirm.", ["service"]
)
OUTBOX_BACKLOG = Gauge(
    "twincity_outbox_backlog", "Pending outbox events seen at the last relay pass.", ["service"]
)
OUTBOX_FAILURES = Counter(
    "twincity_outbox_failures_total", "Relay passes that could not publish (retried later).", ["service"]
)
REQUEST_SECONDS = Histogram(
    "twincity_http_request_seconds", "HTTP request latency.", ["service", "method", "endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
