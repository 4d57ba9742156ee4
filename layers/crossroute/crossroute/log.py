"""The package's loggers: children of the function's Powertools ``Logger``, without importing Powertools.

A handler's ``Logger()`` is the stdlib logger named after the service (``POWERTOOLS_SERVICE_NAME``,
``crossroute`` in template.yaml) with Powertools' JSON handler; ``Logger(child=True)`` in a module is the
stdlib logger ``<service>.<module>``, which propagates to it. This makes the same logger with the stdlib
alone, so importing a use case (``crossroute.ingest``) loads neither Powertools nor botocore with it.
"""

from __future__ import annotations

import logging

from crossroute.config import optional_env


def child_logger(module: str) -> logging.Logger:
    """What ``aws_lambda_powertools.Logger(child=True)`` gives in ``module``: same name, same handler."""
    return logging.getLogger(f"{optional_env('POWERTOOLS_SERVICE_NAME', 'service_undefined')}.{module}")
