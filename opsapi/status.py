"""One consumer's status as the API returns it: the inspection answers put together.

No AWS calls of its own and nothing of HTTP: ``Inspector`` and ``FailureSampler`` read AWS,
``JobRunner`` knows the jobs, and this module decides what the operator sees of them.
"""
from __future__ import annotations

from typing import Any

from consumers.registry import Consumer

from .inspect_aws import function_name
from .sampling import MAX_SAMPLE, age_seconds
from .services import Services


def local_job(svc: Services, consumer: Consumer) -> dict | None:
    """The local job draining ``consumer``'s queue now; ``None`` in AWS, where the API cannot
    see the reprocess Lambda's run."""
    return None if svc.jobs.remote else svc.jobs.running(consumer.name)


def failure_sample(svc: Services, consumer: Consumer, limit: int) -> dict:
    """A sample of the failure queue. While a local job drains this queue it is never peeked
    at (a hidden message could end the job's run early): the cached sample is served."""
    return svc.sampler.sample(consumer, limit, hold=local_job(svc, consumer) is not None)


def consumer_status(svc: Services, consumer: Consumer) -> dict:
    """``GET /consumers/<name>``: policy, queues, oldest failure, top errors, lag, mapping, job."""
    inspector = svc.inspector
    failures = inspector.queue_info(consumer, "failures")
    parking = inspector.queue_info(consumer, "parking")
    running = local_job(svc, consumer)
    sample: dict[str, Any] | None = None
    if failures.get("exists") and failures.get("visible") == 0 and failures.get("inFlight") == 0:
        svc.sampler.invalidate(consumer.name)  # an empty queue is never peeked at
    elif failures.get("exists"):
        sample = svc.sampler.sample(consumer, MAX_SAMPLE, hold=running is not None)  # see failure_sample
    oldest = (sample or {}).get("oldestCapturedAt")
    mapping = inspector.mapping(consumer)
    policy = inspector.policy(consumer)
    lag = (mapping or {}).get("iteratorAgeSeconds")
    if lag is None:
        lag = inspector.iterator_age_s(function_name(consumer))
    return {
        "name": consumer.name,
        "description": consumer.description,
        "function": function_name(consumer),
        "policy": policy["policy"],
        "policySource": policy["source"],
        **({"policyNote": policy["note"]} if policy.get("note") else {}),
        "reprocessMode": consumer.reprocess_mode,
        "failures": failures,
        "parking": parking,
        "oldestFailure": {
            "capturedAt": oldest,
            "ageSeconds": age_seconds(oldest),
            "source": f"sample of up to {MAX_SAMPLE} messages (capturedAt)" if oldest else None,
            "queueAgeSeconds": inspector.oldest_message_age_s(failures["name"]),
        },
        "topErrorTypes": (sample or {}).get("countsByErrorType", {}),
        "lagSeconds": lag,
        "mapping": mapping,
        "job": {"jobId": running["jobId"], "status": running["status"], "dryRun": running["request"]["dryRun"]}
        if running else None,
    }
