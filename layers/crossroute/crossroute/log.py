"""The package's loggers: children of the function's Powertools ``Logger``, without importing Powertools.

A handler's ``Logger()`` is the stdlib logger named after the service (``POWERTOOLS_SERVICE_NAME``,
``crossroute`` in template.yaml) with Powertools' JSON handler; ``Logger(child=True)`` in a module is the
stdlib logger ``<service>.<module>``, which propagates to it. This makes the same logger with the stdlib
alone, so importing a use case (``crossroute.ingest``) loads neither Powertools nor botocore with it.

Each line such a logger writes inside a ``correlation.scope`` carries ``correlation_id`` (contract §11):
Powertools' formatter prints a record's extra attributes as keys.
"""

from __future__ import annotations

import logging

from crossroute import correlation
from crossroute.config import optional_env


def child_logger(module: str) -> logging.Logger:
    """What ``aws_lambda_powertools.Logger(child=True)`` gives in ``module``: same name, same handler;
    and the current correlation id on its lines."""
    logger = logging.getLogger(f"{optional_env('POWERTOOLS_SERVICE_NAME', 'service_undefined')}.{module}")
    if not any(isinstance(f, _Correlated) for f in logger.filters):
        logger.addFilter(_Correlated())
    return logger


class _Correlated(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = correlation.current()
        if current is not None and not hasattr(record, "correlation_id"):
            record.correlation_id = current
        return True
