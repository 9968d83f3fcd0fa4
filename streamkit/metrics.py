"""Per-consumer EMF metrics through Powertools, one flush per invocation."""
from __future__ import annotations

from .settings import Setting

COUNTERS = ("processed", "failed", "captured", "retried", "reported_for_retry")
DEFAULT_NAMESPACE = "StreamKit"
METRICS_NAMESPACE = Setting(
    "POWERTOOLS_METRICS_NAMESPACE", "CloudWatch namespace of the per-consumer EMF metrics",
    default=DEFAULT_NAMESPACE,
)
SETTINGS = (METRICS_NAMESPACE,)


class ConsumerMetrics:
    """Counts for one consumer, written as one EMF document at the end of each batch.

    Uses Powertools' EMF provider directly, one instance per consumer: the ``Metrics``
    facade shares its metric set across instances, which would mix consumers that run
    in one process (the local runtime does that).
    """

    def __init__(self, consumer: str, namespace: str | None = None):
        from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
            AmazonCloudWatchEMFProvider,
        )

        self._provider = AmazonCloudWatchEMFProvider(
            namespace=namespace or METRICS_NAMESPACE.read(),
            service=consumer,
            default_dimensions={"consumer": consumer},
        )

    def publish(self, counts: dict[str, int]) -> None:
        """Every counter every time (zeros too), so alarms never see missing data."""
        for name in COUNTERS:
            self._provider.add_metric(name=name, unit="Count", value=counts.get(name, 0))
        self._provider.flush_metrics()


def count_now(consumer: str, name: str, value: int = 1, namespace: str | None = None) -> None:
    """Write one EMF document at once for a rare event the per-batch counters do not cover
    (a doubtful send, a circuit transition), from the stream path and the reprocess worker alike."""
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    provider = AmazonCloudWatchEMFProvider(
        namespace=namespace or METRICS_NAMESPACE.read(),
        service=consumer,
        default_dimensions={"consumer": consumer},
    )
    provider.add_metric(name=name, unit="Count", value=value)
    provider.flush_metrics()
