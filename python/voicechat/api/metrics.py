"""Prometheus metrics of the API process, served at `/metrics`."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# One registry per process (not the global default) so that the numbers are voicechat's own
# and tests may build many apps without colliding registrations.
REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "voicechat_http_requests_total",
    "HTTP requests served, by route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "voicechat_http_request_duration_seconds",
    "Time to serve an HTTP request, by route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
DB_QUERIES = Histogram(
    "voicechat_db_queries_per_request",
    "PostgreSQL queries issued while serving one request, by route template.",
    ["method", "route"],
    buckets=(0, 1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
    registry=REGISTRY,
)
COMPONENT_UP = Gauge(
    "voicechat_component_up",
    "1 when a component answered its last health check, else 0.",
    ["component"],
    registry=REGISTRY,
)
BACKUP_LAST_SUCCESS = Gauge(
    "voicechat_backup_last_success_timestamp_seconds",
    "Unix time of the last scheduled backup that succeeded (0: none yet), as of the last /health.",
    registry=REGISTRY,
)
BACKUP_LAST_FAILURE = Gauge(
    "voicechat_backup_last_failure_timestamp_seconds",
    "Unix time of the last scheduled backup that failed (0: none), as of the last /health.",
    registry=REGISTRY,
)
MAIL_SENT = Counter(
    "voicechat_mail_sent_total", "Account mails delivered to SMTP.", registry=REGISTRY
)
MAIL_SEND_FAILURES = Counter(
    "voicechat_mail_send_failures_total",
    "Account mail deliveries SMTP refused or could not take (each is retried).",
    registry=REGISTRY,
)
MAIL_DROPPED = Counter(
    "voicechat_mail_dropped_total",
    "Account mails dropped unsent because their content (a token) expired first.",
    registry=REGISTRY,
)
MAIL_PENDING = Gauge(
    "voicechat_mail_outbox_pending",
    "Mails waiting in the outbox, as of the last delivery round.",
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "voicechat_build_info",
    "Always 1; labels carry the versions.",
    ["version", "native_version"],
    registry=REGISTRY,
)


def observe_request(method: str, route: str, status: int, seconds: float, queries: int) -> None:
    """Count and time one served request, and how many queries it cost."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)
    DB_QUERIES.labels(method, route).observe(queries)


def render() -> bytes:
    """The exposition text of every metric."""
    return generate_latest(REGISTRY)


__all__ = ["CONTENT_TYPE", "REGISTRY", "observe_request", "render"]
