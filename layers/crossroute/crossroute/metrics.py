"""The metrics crossroute emits (CloudWatch embedded metric format, namespace ``crossroute``) and the
adapter that emits them with Powertools.

Every metric carries the ``service`` dimension; some carry one more, named in ``CATALOGUE``, whose values
are codes from a bounded set. ``EmfMetrics`` writes one EMF document per invocation for the metrics
without a second dimension (Powertools ``Metrics``) and one per (metric, value) for the others
(``single_metric``), summed over the invocation: a batch of 10 records costs a handful of log lines.
The local stack prints them with the other log lines; docs/operations.md lists the alarms on them.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics as PowertoolsMetrics

NAMESPACE = "crossroute"

# Metric -> the name of its second dimension (None: only ``service``).
CATALOGUE: dict[str, str | None] = {
    "WebhookAccepted": None,
    "WebhookRejected": "reason",
    "EventsIngested": "kind",
    "CustomersCreated": None,
    "CustomersMerged": None,
    "IdentityConflicts": None,
    "IdentifiersRejected": None,
    "SendsRequested": None,
    "SendsRouted": "channel",
    "SmsFallbacks": None,
    "SendsUndeliverable": "reason",
    "ProviderErrors": "provider",
    "SendsRetried": None,
    "RegistryInvalid": None,
}


class UnknownMetric(ValueError):
    pass


def checked(name: str, dimension: str | None) -> str | None:
    """The dimension's name for ``name``; raises when the metric is not in the catalogue or the
    dimension is missing or unexpected (a mistake in crossroute, caught by the tests)."""
    if name not in CATALOGUE:
        raise UnknownMetric(name)
    key = CATALOGUE[name]
    if (key is None) != (dimension is None):
        raise UnknownMetric(f"{name}: dimension {key!r}, given {dimension!r}")
    return key


class EmfMetrics:
    """``ports.Metrics`` on Powertools: counts are kept until ``flush`` (the handler calls it once per
    invocation, also when the invocation fails)."""

    def __init__(self, metrics: PowertoolsMetrics, service: str) -> None:
        self._metrics = metrics
        self._service = service
        self._plain: Counter[str] = Counter()
        self._dimensioned: Counter[tuple[str, str, str]] = Counter()

    @classmethod
    def for_function(cls) -> EmfMetrics:
        """Namespace ``crossroute``; ``service`` from ``POWERTOOLS_SERVICE_NAME`` (template Globals)."""
        from aws_lambda_powertools import Metrics

        from crossroute.config import optional_env

        service = optional_env("POWERTOOLS_SERVICE_NAME", "crossroute")
        return cls(Metrics(namespace=NAMESPACE, service=service), service)

    def count(self, name: str, value: int = 1, *, dimension: str | None = None) -> None:
        key = checked(name, dimension)
        if value <= 0:
            return
        if key is None or dimension is None:  # (one implies the other: ``checked``)
            self._plain[name] += value
        else:
            self._dimensioned[(name, key, dimension)] += value

    def flush(self) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        for name, value in self._plain.items():
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        self._plain.clear()
        if self._metrics.metric_set:
            self._metrics.flush_metrics()
        for (name, key, dimension), value in sorted(self._dimensioned.items()):
            with single_metric(
                name=name,
                unit=MetricUnit.Count,
                value=value,
                namespace=NAMESPACE,
                default_dimensions={"service": self._service},
            ) as metric:
                metric.add_dimension(name=key, value=dimension)
        self._dimensioned.clear()
