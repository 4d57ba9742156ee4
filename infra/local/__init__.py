"""The local stack behind ``make run`` (contract section 4). Dev only: never part of a Lambda artifact.

- :class:`LocalStack` / :class:`StackConfig` (``stack.py``): everything in this process;
  ``LocalStack(StackConfig(port=0, aws_port=0)).start()`` ... ``.stop()``.
- :class:`StackProcess` (``process.py``): ``python -m infra.local`` as a subprocess, for tests.
- :class:`StackClient` (``client.py``): talks to a running stack (HTTP, boto3, physical names).
"""

from .client import HttpResponse, StackClient
from .process import StackProcess
from .stack import LocalStack, StackConfig

__all__ = ["HttpResponse", "LocalStack", "StackClient", "StackConfig", "StackProcess"]
