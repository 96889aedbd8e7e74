"""Logging, tracing and metrics of the Lambda handlers: one set-up, shared by every handler.

Each handler takes what it uses at import (`logger = observability.logger()`); nothing is
built until asked for, so a handler that only logs never starts a Tracer. The objects are
made once per process: the Logger writes JSON through `RedactingFormatter`, the Metrics go
to the `NfsePlatform` namespace.
"""

from __future__ import annotations

from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer

from nfse_core.logging_redaction import RedactingFormatter

METRICS_NAMESPACE = "NfsePlatform"


@cache
def logger() -> Logger:
    """The handler's structured logger, with personal data and secrets masked."""
    return Logger(logger_formatter=RedactingFormatter())


@cache
def tracer() -> Tracer:
    """The X-Ray tracer (inactive outside Lambda)."""
    return Tracer()


@cache
def metrics() -> Metrics:
    """CloudWatch metrics in embedded metric format, namespace `NfsePlatform`."""
    return Metrics(namespace=METRICS_NAMESPACE)
