"""Structured JSON logs (structlog) with the request's ids, never its secrets.

Each request binds `request_id` (the client's `X-Request-Id` when it is a short token, else a
new one) and, once known, `idempotency_key` and `payment_id` into structlog's context
variables; every log line of that request carries them. What is never logged: request bodies
(they could hold card data a client sent by mistake), the Authorization header, webhook
signatures and secrets, API key text.
"""

from __future__ import annotations

import logging
import re
import sys

import structlog

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr, one object per event, with ISO timestamps."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def usable_request_id(header: str | None) -> str | None:
    """The client's request id when it is a short safe token; None otherwise."""
    return header if header is not None and _REQUEST_ID_RE.match(header) else None


def bind(**values: str) -> None:
    structlog.contextvars.bind_contextvars(**values)


def clear() -> None:
    structlog.contextvars.clear_contextvars()
