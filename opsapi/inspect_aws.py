"""Read-only AWS inspection for the operator API: queue depths, failure samples, mappings, metrics.

Everything here tolerates a missing resource or a denied call: an operator page that shows
"unknown" for one field is better than one that shows nothing. Errors are reported in the
result (``error`` fields), never raised to the route.

Sampling (``FailureSampler``) reads messages without consuming them: ReceiveMessage with a
short visibility timeout, then ChangeMessageVisibility back to 0 at once. Each sample still
increments every returned message's ``ApproximateReceiveCount``; see docs/operator-api.md for
how that is kept from tripping a redrive policy.
"""
from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from consumers.registry import Consumer

MAX_SAMPLE = 10  # one ReceiveMessage; more would mean hiding messages for longer
SAMPLE_VISIBILITY_S = 5  # hidden at most this long if the visibility reset fails
REDRIVE_HEADROOM = 2  # stop sampling a queue when a message is this close to maxReceiveCount
DEFAULT_STATE_PATH = ".local-state/esm.json"  # local/esm.py writes it (LOCAL_ESM_STATE)
METRIC_TTL_S = 60.0  # CloudWatch bills per metric requested and has 1-minute periods anyway
MAPPING_TTL_S = 15.0  # a page refreshing every few seconds must not hammer the Lambda control plane


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return (response.get("Error") or {}).get("Code") or type(exc).__name__
    return type(exc).__name__


def short_error(exc: BaseException) -> str:
    return f"{error_code(exc)}: {exc}"[:300]


class Clients:
    """boto3 clients made once per app, under a lock (the default session is not thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def get(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                import boto3
                from botocore.config import Config

                client = self._clients[service] = boto3.client(
                    service,
                    config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=10),
                )
            return client


def service_prefix(env: dict | None = None) -> str:
    env = os.environ if env is None else env
    return f"{env.get('SERVICE_NAME', 'userstream')}-{env.get('STAGE', 'dev')}"


def function_name(consumer: Consumer) -> str:
    """The consumer's deployed function (``<KEY>_FUNCTION_NAME`` overrides the convention)."""
    return os.environ.get(f"{consumer.key}_FUNCTION_NAME") or f"{service_prefix()}-{consumer.name}"


class Inspector:
    """Answers "how is this consumer doing?" from SQS, Lambda, CloudWatch and the local ESM state."""

    def __init__(self, clients: Clients, *, state_path: str | None = None, use_cloudwatch: bool | None = None,
                 function_ttl_s: float = 30.0, metric_ttl_s: float = METRIC_TTL_S,
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
        """Configured URL, else the conventional name via GetQueueUrl; None when it does not exist."""
        url = consumer.configured_queue_url(kind)
        if url:
            return url
        name = consumer.queue_name(kind)
        with self._lock:
            if (consumer.name, kind) in self._urls:
                return self._urls[(consumer.name, kind)]
        try:
            url = self.clients.get("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        except Exception as exc:
            if error_code(exc) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                return None
            raise
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
            info["error"] = short_error(exc)
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
            return {}, short_error(exc)
        env = (conf.get("Environment") or {}).get("Variables") or {}
        with self._lock:
            self._functions[name] = (now, env)
        return env, None

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

        def lookup() -> tuple[list, str | None]:
            try:
                return self.clients.get("lambda").list_event_source_mappings(FunctionName=fn).get(
                    "EventSourceMappings") or [], None
            except Exception as exc:
                return [], short_error(exc)

        found, error = self._cached(("mappings", fn), self.mapping_ttl_s, lookup)
        if found:
            m = found[0]
            keys = ("BatchSize", "MaximumBatchingWindowInSeconds", "StartingPosition", "MaximumRetryAttempts",
                    "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError", "FunctionResponseTypes",
                    "ParallelizationFactor", "DestinationConfig", "FilterCriteria", "TumblingWindowInSeconds")
            out = {
                "source": "lambda",
                "uuid": m.get("UUID"),
                "state": m.get("State"),
                "stateReason": m.get("StateTransitionReason"),
                "lastResult": m.get("LastProcessingResult"),
                "eventSourceArn": m.get("EventSourceArn"),
                "settings": {k: m[k] for k in keys if k in m},
                "iteratorAgeSeconds": self.iterator_age_s(fn),
            }
            return json.loads(json.dumps(out, default=str))
        local = self.local_mapping(fn)
        if local is not None:
            return local
        return {"source": None, "state": "unknown", "note": error or "no mapping in Lambda and no local ESM state"}

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
                }
        return None

    # ---- CloudWatch (real AWS only) --------------------------------------------------------------
    def _metric_max(self, namespace: str, metric: str, dimension: tuple[str, str]) -> float | None:
        """Latest 1-minute Maximum of a metric over the last 10 minutes (GetMetricData, which the
        api function's role is granted); None locally, when there is no data, or on any error."""
        if not self.use_cloudwatch:
            return None
        return self._cached(("metric", namespace, metric, dimension), self.metric_ttl_s,
                            lambda: self._fetch_metric_max(namespace, metric, dimension))

    def _fetch_metric_max(self, namespace: str, metric: str, dimension: tuple[str, str]) -> float | None:
        try:
            end = _now()
            results = self.clients.get("cloudwatch").get_metric_data(
                MetricDataQueries=[{"Id": "m", "ReturnData": True, "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": metric,
                               "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}]},
                    "Period": 60, "Stat": "Maximum"}}],
                StartTime=end - timedelta(minutes=10), EndTime=end, ScanBy="TimestampDescending",
            ).get("MetricDataResults") or []
        except Exception:
            return None
        values = results[0].get("Values") if results else None
        return float(values[0]) if values else None

    def iterator_age_s(self, fn: str) -> float | None:
        ms = self._metric_max("AWS/Lambda", "IteratorAge", ("FunctionName", fn))
        return None if ms is None else round(ms / 1000, 3)

    def oldest_message_age_s(self, queue_name: str) -> float | None:
        return self._metric_max("AWS/SQS", "ApproximateAgeOfOldestMessage", ("QueueName", queue_name))


def summarize_message(message: dict) -> dict:
    """What an operator needs from one failure-queue message (envelope or Lambda on-failure record)."""
    from streamkit.envelope import EnvelopeError, parse_envelope  # light, but only when sampling

    attrs = message.get("Attributes") or {}
    out: dict[str, Any] = {
        "messageId": message.get("MessageId"),
        "receiveCount": int(attrs.get("ApproximateReceiveCount", 0) or 0),
        "sentAt": _iso(datetime.fromtimestamp(int(attrs["SentTimestamp"]) / 1000, tz=timezone.utc))
        if attrs.get("SentTimestamp") else None,
    }
    body = message.get("Body") or ""
    try:
        env = parse_envelope(body)
    except EnvelopeError as exc:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        info = data.get("DDBStreamBatchInfo") if isinstance(data, dict) else None
        if isinstance(info, dict):  # the hard-fail backstop: Lambda's metadata-only record
            ctx = data.get("requestContext") or {}
            out.update(kind="on-failure", errorType=ctx.get("condition") or "OnFailure",
                       errorMessage=f"{info.get('batchSize')} records of {info.get('shardId')} "
                                    f"{info.get('startSequenceNumber')}..{info.get('endSequenceNumber')}",
                       keys=None, sequenceNumber=info.get("startSequenceNumber"),
                       capturedAt=data.get("timestamp"), attempts=ctx.get("approximateInvokeCount"))
        else:
            out.update(kind="malformed", errorType="MalformedEnvelope", errorMessage=exc.reason, keys=None,
                       sequenceNumber=None, capturedAt=None, attempts=None)
        return out
    ddb = env.record.get("dynamodb") if isinstance(env.record.get("dynamodb"), dict) else {}
    error = env.error
    out.update(
        kind="envelope",
        consumer=env.consumer,
        errorType=error.get("type") or "Unknown",
        errorMessage=(error.get("message") or "")[:500],
        eventName=env.record.get("eventName"),
        eventID=env.record.get("eventID"),
        keys=ddb.get("Keys"),
        sequenceNumber=ddb.get("SequenceNumber"),
        capturedAt=env.captured_at,
        attempts=env.attempts,
        claimCheck=bool(env.payload_ref),
    )
    return out


class FailureSampler:
    """Samples a failure queue without consuming it, cached so a refreshing page peeks rarely.

    Why the cache: every peek increments the receive count of what it sees; a page refreshing
    every few seconds must not turn into one receive per message every few seconds.
    """

    def __init__(self, inspector: Inspector, *, ttl_s: float = 15.0, pause_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self.inspector = inspector
        self.ttl_s, self.pause_s, self.clock = ttl_s, pause_s, clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict]] = {}
        self._paused_until: dict[str, float] = {}

    def invalidate(self, consumer_name: str) -> None:
        with self._lock:
            self._cache.pop(consumer_name, None)

    def cached(self, consumer_name: str) -> dict | None:
        with self._lock:
            hit = self._cache.get(consumer_name)
        return hit[1] if hit else None

    def sample(self, consumer: Consumer, limit: int, *, hold: bool = False) -> dict:
        """Up to ``limit`` (<= 10) messages; ``hold=True`` serves the cache without peeking."""
        limit = max(1, min(MAX_SAMPLE, limit))
        now = self.clock()
        with self._lock:
            hit = self._cache.get(consumer.name)
            paused = self._paused_until.get(consumer.name, 0) > now
        if hit and (hold or paused or now - hit[0] < self.ttl_s) and hit[1].get("limit", 0) >= limit:
            result = dict(hit[1], messages=hit[1]["messages"][:limit], cached=True)
            if paused:
                result["paused"] = "sampling paused: a message is near the queue's maxReceiveCount"
            return result
        if hold or paused:
            return {"messages": [], "countsByErrorType": {}, "limit": limit, "cached": True, "sampledAt": None,
                    "note": "not sampled now (a reprocess job is running or sampling is paused)"}
        result = self._peek(consumer, limit)
        with self._lock:
            self._cache[consumer.name] = (now, result)
            if result.get("nearRedrive"):
                self._paused_until[consumer.name] = now + self.pause_s
        return dict(result, cached=False)

    def _peek(self, consumer: Consumer, limit: int) -> dict:
        result: dict[str, Any] = {"messages": [], "countsByErrorType": {}, "limit": limit,
                                  "sampledAt": _iso(_now()), "skippedNearRedrive": 0}
        try:
            url = self.inspector.queue_url(consumer, "failures")
        except Exception as exc:
            result["error"] = short_error(exc)
            return result
        if url is None:
            result["note"] = f"failure queue {consumer.queue_name('failures')} does not exist"
            return result
        sqs = self.inspector.clients.get("sqs")
        try:
            redrive = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
                                 .get("Attributes", {}).get("RedrivePolicy") or "null")
            max_receive = int(redrive["maxReceiveCount"]) if redrive else None
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=limit, VisibilityTimeout=SAMPLE_VISIBILITY_S, WaitTimeSeconds=0,
                AttributeNames=["All"], MessageAttributeNames=["All"],
            ).get("Messages") or []
        except Exception as exc:
            result["error"] = short_error(exc)
            return result
        if messages:
            # Make them visible again at once: the sample must not delay a worker or the stream path.
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                       for i, m in enumerate(messages)]
            try:
                sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except Exception as exc:
                result["note"] = f"sampled messages stay hidden up to {SAMPLE_VISIBILITY_S}s ({short_error(exc)})"
        counts: dict[str, int] = {}
        for m in messages:
            item = summarize_message(m)
            if max_receive is not None and item["receiveCount"] >= max_receive - REDRIVE_HEADROOM:
                result["skippedNearRedrive"] += 1
                result["nearRedrive"] = True
                continue
            counts[item["errorType"]] = counts.get(item["errorType"], 0) + 1
            result["messages"].append(item)
        result["countsByErrorType"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        if max_receive is not None:
            result["maxReceiveCount"] = max_receive
        stamps = [d for d in (_parse_iso(m.get("capturedAt")) for m in result["messages"]) if d]
        if stamps:
            oldest = min(stamps)
            result["oldestCapturedAt"] = _iso(oldest)
        return result


def age_seconds(iso: str | None) -> float | None:
    dt = _parse_iso(iso)
    return None if dt is None else round((_now() - dt).total_seconds(), 1)
