"""One consumer's status as the API returns it: the readers' answers put together, and the
badge (``opsapi.health.derive``) with its reasons.

No AWS calls of its own and nothing of HTTP: ``Inspector`` reads queues, mappings, alarms and
metrics, ``LedgerView`` the failure ledger, ``JobRunner`` knows the jobs; this module decides
what the operator sees of them. Every part says where it came from and how old it is.
"""
from __future__ import annotations

from typing import Any

from consumers.registry import Consumer

from . import health
from .circuits import breaker_configured
from .inspect_aws import function_name
from .ledger_view import read_age_s
from .services import Services


def local_job(svc: Services, consumer: Consumer) -> dict | None:
    """The local job working on ``consumer`` now; ``None`` in AWS (the reprocess Lambda runs them)."""
    return None if svc.jobs.remote else svc.jobs.running(consumer.name)


def consumer_status(svc: Services, consumer: Consumer) -> dict:
    """``GET /consumers/<name>``."""
    inspector = svc.inspector
    failures = inspector.queue_info(consumer, "failures")
    parking = inspector.queue_info(consumer, "parking")
    mapping = inspector.mapping(consumer) or {}
    policy = inspector.policy(consumer)
    ledger = dict(svc.ledger.summary(consumer.name))
    ledger["ageSeconds"] = read_age_s(ledger)
    ledger.pop("readEpoch", None)
    metrics = inspector.metrics(consumer, failures["name"])
    alarms = inspector.alarms(consumer, failures, parking, mapping)
    function = mapping.get("function") if mapping.get("source") == "local-esm" else None
    drops = drops_of(metrics, function)
    blocking = health.blocking_detail(ledger.pop("blocking", None), mapping)
    circuit = svc.circuits.status(consumer.name, policy["policy"],
                                  configured=lambda: breaker_configured(inspector.function_env(consumer)[0]))
    verdict = health.derive(policy["policy"], alarms=alarms, mapping=mapping, ledger=ledger, drops=drops,
                            failures=failures, blocking=blocking, circuit=circuit)
    lag = mapping.get("iteratorAgeSeconds")
    if lag is None:
        lag = (metrics.get("latest") or {}).get("iteratorAgeSeconds")
    running = local_job(svc, consumer)
    oldest = ledger.get("oldestOpen")
    return {
        "name": consumer.name,
        "description": consumer.description,
        "function": function_name(consumer),
        "policy": policy["policy"],
        "policySource": policy["source"],
        **({"policyNote": policy["note"]} if policy.get("note") else {}),
        "reprocessMode": consumer.reprocess_mode,
        "status": verdict,
        "failures": failures,
        "parking": parking,
        "ledger": ledger,
        "topErrorTypes": ledger.get("openByErrorType") or {},
        "oldestFailure": {
            "capturedAt": oldest,
            "ageSeconds": health.age_s(oldest),
            "source": "failure ledger (oldest captured or retrying)" if oldest else None,
            "queueAgeSeconds": (metrics.get("latest") or {}).get("oldestFailureAgeSeconds"),
        },
        "blocking": blocking,
        "circuit": circuit,
        "drops": drops if policy["policy"] == "soft-fail" or (drops or {}).get("last3h") else None,
        "alarms": alarms,
        "lagSeconds": lag,
        "mapping": {k: v for k, v in mapping.items() if k not in ("function", "shards")},
        "metricsSource": metrics.get("source"),
        **({"metricsError": metrics["error"]} if metrics.get("error") else {}),
        "job": {"jobId": running["jobId"], "kind": running["kind"], "status": running["status"],
                "dryRun": bool((running.get("request") or {}).get("dryRun"))} if running else None,
    }


def drops_of(metrics: dict, function: dict | None) -> dict[str, Any] | None:
    """Records a soft-fail consumer dropped: the emulator's last batch and buckets locally, the
    consumer's ``dropped`` metric (per minute) in AWS."""
    if function is not None:
        return health.drops_from_series(function.get("series") or [], function.get("lastBatch"))
    series = metrics.get("series") or {}
    if not series.get("dropped") and not series.get("handled"):
        return None
    buckets: dict[str, dict] = {}
    for name, metric in (("dropped", "dropped"), ("processed", "handled"), ("failed", "failed")):
        for t, v in series.get(metric) or []:
            buckets.setdefault(t, {"t": t})[name] = v
    return health.drops_from_series([buckets[t] for t in sorted(buckets)])
