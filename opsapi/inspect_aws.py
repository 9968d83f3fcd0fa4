"""Read-only AWS inspection for the operator API: queue depths, mappings, function settings, metrics.

Everything here tolerates a missing resource or a denied call: an operator page that shows
"unknown" for one field is better than one that shows nothing. Errors are reported in the
result (``error`` fields), never raised to the route. Nothing here receives from a queue (SQS has
no peek): failures come from the ledger (``opsapi.ledger_view``); turning these answers into the
API's JSON is ``opsapi.status``'s job.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumers.registry import Consumer, stack_prefix
from streamkit.awsclient import ClientCache, describe_aws_error
from streamkit.timefmt import age_words, now_iso, parse_iso

from . import charts, health

DEFAULT_STATE_PATH = ".local-state/esm.json"  # local/esm.py writes it (LOCAL_ESM_STATE)
METRIC_TTL_S = 60.0  # CloudWatch bills per metric requested and has 1-minute periods anyway
MAPPING_TTL_S = 15.0  # a page refreshing every few seconds must not hammer the Lambda control plane
FUNCTION_TTL_S = 30.0  # a consumer's deployed FAILURE_POLICY changes only with a deploy
MAPPING_SETTINGS = ("BatchSize", "MaximumBatchingWindowInSeconds", "StartingPosition", "MaximumRetryAttempts",
                    "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError", "FunctionResponseTypes",
                    "ParallelizationFactor", "DestinationConfig", "FilterCriteria", "TumblingWindowInSeconds")


def api_clients() -> ClientCache:
    """The API's boto3 clients: few retries and a 10 s read timeout (a page waits for them)."""
    return ClientCache(max_attempts=2, connect_timeout=2, read_timeout=10)


def function_name(consumer: Consumer) -> str:
    """The consumer's deployed function (``<KEY>_FUNCTION_NAME`` overrides the convention)."""
    return os.environ.get(f"{consumer.key}_FUNCTION_NAME") or f"{stack_prefix()}-{consumer.name}"


def stale_note(updated_at: str | None) -> dict:
    """``{"ageSeconds", "stale"?}`` of the emulator's state file: a state nobody has written for a
    while is shown with its age, never as if it were current."""
    written = parse_iso(updated_at)
    if written is None:
        return {"ageSeconds": None, "stale": "the emulator's state file has no time: its age is unknown"}
    age = round((datetime.now(UTC) - written).total_seconds(), 1)
    if age > health.STALE_STATE_S:
        return {"ageSeconds": age, "stale": f"mapping state is {age_words(age)} old (lag and alarms are as of then): "
                                            "is `python -m local run` still running?"}
    return {"ageSeconds": age}


class Inspector:
    """Answers "how is this consumer doing?" from SQS, Lambda, CloudWatch and the local ESM state."""

    def __init__(self, clients: ClientCache, *, state_path: str | None = None, use_cloudwatch: bool | None = None,
                 function_ttl_s: float = FUNCTION_TTL_S, metric_ttl_s: float = METRIC_TTL_S,
                 mapping_ttl_s: float = MAPPING_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.clients = clients
        self.state_path = Path(state_path or os.environ.get("LOCAL_ESM_STATE") or DEFAULT_STATE_PATH)
        # CloudWatch metrics exist only in real AWS; REPROCESS_FUNCTION_NAME marks a deployed API.
        self.use_cloudwatch = bool(os.environ.get("REPROCESS_FUNCTION_NAME")) if use_cloudwatch is None else use_cloudwatch
        self.function_ttl_s = function_ttl_s
        self.metric_ttl_s, self.mapping_ttl_s = metric_ttl_s, mapping_ttl_s
        self.clock = clock
        self._ttl_cache: dict[tuple, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._urls: dict[tuple[str, str], str] = {}
        self._functions: dict[str, tuple[float, dict]] = {}

    def _cached(self, key: tuple, ttl_s: float, compute: Callable[[], Any]) -> Any:
        """``compute()``'s result, reused for ``ttl_s`` seconds (computed outside the lock)."""
        now = self.clock()
        with self._lock:
            hit = self._ttl_cache.get(key)
        if hit is not None and now - hit[0] < ttl_s:
            return hit[1]
        value = compute()
        with self._lock:
            self._ttl_cache[key] = (now, value)
        return value

    # ---- queues -------------------------------------------------------------------------
    def queue_url(self, consumer: Consumer, kind: str) -> str | None:
        """``Consumer.resolve_queue_url`` (configured URL, else by name), a lookup remembered
        once found; None when the queue does not exist."""
        if consumer.configured_queue_url(kind):
            return consumer.resolve_queue_url(None, kind)
        with self._lock:
            if (consumer.name, kind) in self._urls:
                return self._urls[(consumer.name, kind)]
        url = consumer.resolve_queue_url(self.clients.get("sqs"), kind)
        if url:
            with self._lock:
                self._urls[(consumer.name, kind)] = url
        return url

    def queue_info(self, consumer: Consumer, kind: str) -> dict:
        """``{name, exists, visible, inFlight, delayed, redrive}``; counts are SQS's approximations."""
        info: dict[str, Any] = {"name": consumer.queue_name(kind), "exists": None, "visible": None,
                                "inFlight": None, "delayed": None}
        try:
            url = self.queue_url(consumer, kind)
            if url is None:
                info["exists"] = False
                return info
            info["name"] = url.rstrip("/").rsplit("/", 1)[-1]
            attrs = self.clients.get("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        except Exception as exc:
            info["error"] = describe_aws_error(exc)
            return info
        info.update(
            exists=True,
            visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
            inFlight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        )
        info["total"] = info["visible"] + info["inFlight"] + info["delayed"]
        redrive = attrs.get("RedrivePolicy")
        if redrive:
            try:
                info["redrive"] = {"maxReceiveCount": int(json.loads(redrive)["maxReceiveCount"])}
            except (ValueError, KeyError, TypeError):
                info["redrive"] = {"maxReceiveCount": None}
        return info

    # ---- the consumer's function ------------------------------------------------------------
    def function_env(self, consumer: Consumer) -> tuple[dict, str | None]:
        """The consumer function's environment (cached ``function_ttl_s``) and an error, if any."""
        name = function_name(consumer)
        now = self.clock()
        with self._lock:
            hit = self._functions.get(name)
            if hit and now - hit[0] < self.function_ttl_s:
                return hit[1], None
        try:
            conf = self.clients.get("lambda").get_function_configuration(FunctionName=name)
        except Exception as exc:
            return {}, describe_aws_error(exc)
        env = (conf.get("Environment") or {}).get("Variables") or {}
        with self._lock:
            self._functions[name] = (now, env)
        return env, None

    def function_envs_seen(self) -> list[dict]:
        """Every consumer-function environment read so far: their secret values must never
        leave in a response (``opsapi.secrets``), even though only ``FAILURE_POLICY`` is shown."""
        with self._lock:
            return [env for _, env in self._functions.values()]

    def policy(self, consumer: Consumer) -> dict:
        """``<KEY>_FAILURE_POLICY`` in this function's environment, else the consumer function's
        ``FAILURE_POLICY`` (GetFunctionConfiguration), else the registry default."""
        own = os.environ.get(f"{consumer.key}_FAILURE_POLICY")
        if own:
            return {"policy": own, "source": f"env {consumer.key}_FAILURE_POLICY"}
        env, err = self.function_env(consumer)
        if env.get("FAILURE_POLICY"):
            return {"policy": env["FAILURE_POLICY"], "source": f"function {function_name(consumer)}"}
        out = {"policy": consumer.default_policy, "source": "registry default"}
        if err:
            out["note"] = f"function configuration not readable ({err})"
        return out

    # ---- event-source mapping -----------------------------------------------------------------
    def mapping(self, consumer: Consumer) -> dict | None:
        """Lambda's mapping when it has one, else the local emulator's state file, else None."""
        fn = function_name(consumer)

        def lookup() -> tuple[list, str | None, str]:
            try:
                return self.clients.get("lambda").list_event_source_mappings(FunctionName=fn).get(
                    "EventSourceMappings") or [], None, now_iso()
            except Exception as exc:
                return [], describe_aws_error(exc), now_iso()

        found, error, read_at = self._cached(("mappings", fn), self.mapping_ttl_s, lookup)
        if found:
            m = found[0]
            out = {
                "source": "lambda",
                "readAt": read_at,
                "uuid": m.get("UUID"),
                "state": m.get("State"),
                "stateReason": m.get("StateTransitionReason"),
                "lastResult": m.get("LastProcessingResult"),
                "eventSourceArn": m.get("EventSourceArn"),
                "settings": {k: m[k] for k in MAPPING_SETTINGS if k in m},
                "iteratorAgeSeconds": None,  # CloudWatch's IteratorAge: see the consumer's metrics
            }
            return json.loads(json.dumps(out, default=str))
        local = self.local_mapping(fn)
        if local is not None:
            return local
        out = {"source": None, "state": "unknown", "readAt": read_at,
               "note": "no mapping in Lambda and no local emulator state"}
        if error:
            out["error"] = error
        return out

    def local_mapping(self, fn: str) -> dict | None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        for m in state.get("mappings") or []:
            if m.get("functionName") == fn:
                return {
                    "source": "local-esm",
                    "stateFile": str(self.state_path),
                    "updatedAt": state.get("updatedAt"),
                    "uuid": m.get("uuid"),
                    "state": m.get("state"),
                    "status": m.get("status"),
                    "eventSourceArn": m.get("eventSourceArn"),
                    "settings": m.get("settings") or {},
                    "iteratorAgeSeconds": m.get("iteratorAgeSeconds"),
                    "lastError": m.get("lastError"),
                    "counters": m.get("counters") or {},
                    "shards": m.get("shards") or {},
                    "function": m.get("function") or {},
                    **stale_note(state.get("updatedAt")),
                }
        return None

    # ---- CloudWatch (real AWS only) --------------------------------------------------------------
    def metrics(self, consumer: Consumer, failures_queue: str) -> dict:
        """The consumer's charts (``opsapi.charts``): one GetMetricData call, reused for
        ``metric_ttl_s``; locally the emulator's state file."""
        if not self.use_cloudwatch:
            local = self.local_mapping(function_name(consumer))
            if local is None:
                return charts.empty("no CloudWatch outside AWS and no local emulator state")
            return charts.from_local(local.get("function"))
        return self._cached(("metrics", consumer.name), self.metric_ttl_s,
                            lambda: self._fetch_metrics(consumer, failures_queue))

    def _fetch_metrics(self, consumer: Consumer, failures_queue: str) -> dict:
        start, end = charts.window()
        namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or stack_prefix().split("-")[0]
        try:
            results = self.clients.get("cloudwatch").get_metric_data(
                MetricDataQueries=charts.queries(function=function_name(consumer), failures_queue=failures_queue,
                                                 consumer=consumer.name, namespace=namespace),
                StartTime=start, EndTime=end, ScanBy="TimestampAscending").get("MetricDataResults") or []
        except Exception as exc:
            out = charts.empty("CloudWatch metrics not readable")
            out["error"] = describe_aws_error(exc)
            return out
        return charts.from_cloudwatch(results, start, end)

    def alarms(self, consumer: Consumer, failures: dict, parking: dict, mapping: dict | None) -> dict:
        """The consumer's alarm states: ``DescribeAlarms`` in AWS (cached ``alarm_ttl_s``), the
        same states derived from the emulator locally (``opsapi.health``)."""
        if not self.use_cloudwatch:
            return health.local_alarms(mapping, failures, parking)

        def fetch() -> tuple[list, str | None]:
            found: list = []
            try:
                for page in self.clients.get("cloudwatch").get_paginator("describe_alarms").paginate(
                        AlarmTypes=["MetricAlarm"]):
                    found += page.get("MetricAlarms") or []
            except Exception as exc:
                return [], describe_aws_error(exc)
            return found, None

        alarms, error = self._cached(("alarms",), self.metric_ttl_s, fetch)
        out = health.aws_alarms(alarms, function=function_name(consumer), failures_queue=failures["name"],
                                parking_queue=parking["name"], consumer=consumer.name)
        if error:
            out["error"] = error
        return out
