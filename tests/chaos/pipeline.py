"""One chaos scenario, end to end, on the real parts.

The deployment is the packaged template's: the tables, queues and bucket it declares are
created on moto (after a reset, so every scenario starts clean), each function gets the
environment the template gives it (plus the local stand-ins: the SQLite index, the fake CRM
and Slack), and the three event-source mappings are the template's, run by the local
emulator (``local.esm``) with the scenario's overrides (batch size, retries, bisect,
batching window). Then:

1. stream phase: writes go into the table round by round, the emulator delivers them to the
   real handlers (``handlers/*.py`` -> ``stream_handler`` -> ``consumers.*``), faults fire;
   after every invocation the batch is checked (see ``invariants.check_invocation``);
2. drain phase: each consumer's failure queue is drained with the real reprocess worker
   (``reprocess.worker.drain``), a few runs with the drain faults armed, then fault-free runs;
   each run's exit status is checked against what is left in the queues;
3. the end state is checked (``invariants.check_end``).

Time is simulated (``faults.SimClock``): batching windows, retry backoffs, record ages,
deadlines and lock timeouts pass without waiting.
"""
from __future__ import annotations

import io
import json
import urllib.request
from contextlib import redirect_stdout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from local.esm import Emulator, MappingConfig
from local.functions import FunctionConfig, FunctionRuntime, applied_env
from tests.awsfaults import AwsFaults, SimClock, SimulatedCrash

from .scenario import CONSUMERS, HttpFault, InvocationFault, Scenario

ACCOUNT = "123456789012"
REGION = "us-east-1"
CHAOS_ENV = {  # test timings: no real waiting, short client timeouts against the local fakes
    "RETRY_BASE_DELAY_MS": "0",
    "SLACK_TIMEOUT_S": "0.25",
    "CRM_TIMEOUT_S": "0.25",
    "LOG_LEVEL": "INFO",
    "POWERTOOLS_METRICS_NAMESPACE": "Chaos",
}
PER_CHECK_S = 0.005  # simulated time one record takes
MAX_STREAM_ROUNDS = 600
FAULTY_DRAIN_RUNS = 2
CLEAN_DRAIN_RUNS = 4
BEFORE_DRAIN_S = 300  # time passes between the stream phase and the drain (lock timeouts run out)
BETWEEN_DRAINS_S = 120  # and between two worker runs (the schedule runs it hourly; an operator, sooner)
MAX_DRAIN_RUN_S = 60  # wall-clock bound of one worker run (it must always terminate)


@dataclass
class Deployment:
    """What the packaged template declares, read once per session."""

    functions: dict[str, dict]  # consumer (or "reprocess") -> {name, handler, timeout, env (raw)}
    mappings: dict[str, dict]  # consumer -> EventSourceMapping properties
    queues: dict[str, dict]  # logical id -> properties
    tables: dict[str, dict]
    buckets: dict[str, dict]  # logical id -> properties
    kinesis_streams: dict[str, dict]  # logical id -> properties (the kinesis source)
    stream_consumers: dict[str, dict]  # logical id -> properties (enhanced fan-out)

    @classmethod
    def from_template(cls) -> Deployment:
        from deploy.template import load_packaged_template, mapping_function, prepare_for_moto

        template = load_packaged_template()
        _, esm = prepare_for_moto(template)
        res = template["Resources"]
        by_logical = {}
        functions = {}
        for logical, r in res.items():
            if r["Type"] != "AWS::Lambda::Function":
                continue
            p = r["Properties"]
            short = p["FunctionName"].split("-dev-", 1)[-1]
            if short in (*CONSUMERS, "reprocess"):
                functions[short] = {"name": p["FunctionName"], "handler": p["Handler"], "timeout": float(p.get("Timeout", 6)),
                                    "env": (p.get("Environment") or {}).get("Variables", {})}
                by_logical[logical] = short
        mappings = {by_logical[mapping_function(props)]: props for props in esm.values()}
        return cls(
            functions=functions,
            mappings=mappings,
            queues={k: r["Properties"] for k, r in res.items() if r["Type"] == "AWS::SQS::Queue"},
            tables={k: r["Properties"] for k, r in res.items() if r["Type"] == "AWS::DynamoDB::Table"},
            buckets={k: r["Properties"] for k, r in res.items()
                     if r["Type"] == "AWS::S3::Bucket" and k != "ServerlessDeploymentBucket"},
            kinesis_streams={k: r["Properties"] for k, r in res.items() if r["Type"] == "AWS::Kinesis::Stream"},
            stream_consumers={k: r["Properties"] for k, r in res.items() if r["Type"] == "AWS::Kinesis::StreamConsumer"},
        )


class SimContext:
    """Lambda's context in simulated time, with the scenario's fault for this invocation."""

    def __init__(self, run: Run, function: str, timeout_s: float, fault: InvocationFault | None):
        import uuid

        self.run, self.fault = run, fault
        self.function_name = function
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
        self.log_group_name, self.log_stream_name = f"/aws/lambda/{function}", "chaos"
        self._end = run.clock.now() + timeout_s
        self.checks = 0

    def get_remaining_time_in_millis(self) -> int:
        clock = self.run.clock
        self.checks += 1
        clock.advance(PER_CHECK_S)
        f = self.fault
        if f is not None and self.checks == f.at_check:
            left = self._end - clock.now()
            if f.kind == "crash":
                raise SimulatedCrash(f"{self.function_name} killed before record {f.at_check}")
            if f.kind == "deadline":
                clock.advance(max(0.0, left - 1.0))  # 1 s left: under the 2 s margin
            elif f.kind == "overrun":
                clock.advance(left + 1.0)  # past the function timeout: Lambda kills it
        return max(0, int((self._end - clock.now()) * 1000))


class ChaosFunction(FunctionRuntime):
    """A function as Lambda runs it, in simulated time; a crash means a fresh cold start."""

    def __init__(self, config: FunctionConfig, run: Run, consumer: str):
        super().__init__(config)
        self.run, self.consumer = run, consumer
        self.invocations = 0

    def invoke(self, event: dict) -> Any:
        self.invocations += 1
        fault = self.run.invocation_fault(self.consumer, self.invocations)
        if self._handler is None:
            self._handler = self._cold_start()
            loop = self._handler.loop  # the loop's retry and probe waits, its deadline, the breaker: simulated
            loop.sleep, loop.clock = self.run.clock.sleep, self.run.clock.now
            if loop.breaker is not None:
                loop.breaker.clock = self.run.clock.now
        context = SimContext(self.run, self.config.name, self.config.timeout_s,
                             fault if fault is not None and fault.kind != "lost-response" else None)
        try:
            with applied_env(self.config.environment):
                response = self._handler(event, context)
        except SimulatedCrash as crash:
            self._handler = None  # the execution environment is gone
            raise RuntimeError(f"Runtime exited without providing a reason ({crash})") from None
        except Exception as exc:  # no scenario gives a handler a reason to fail a whole batch
            self.run.violation(f"{self.consumer} invocation {self.invocations}: the handler raised "
                               f"{type(exc).__name__}: {exc}")
            raise
        overrun = self.run.clock.now() - context._end
        if overrun > 0 and (fault is None or fault.kind != "overrun"):  # Lambda would have killed it
            self.run.violation(f"{self.consumer} invocation {self.invocations}: returned {overrun:.1f} s after "
                               f"its {self.config.timeout_s:.0f} s timeout (no overrun was injected)")
        self.run.check_invocation(self, event, response, context)
        if fault is not None and fault.kind == "lost-response":
            raise RuntimeError("the invocation's response was lost (Lambda retries the batch)")
        return response


@dataclass
class Run:
    """The state of one scenario run; ``violations`` is what it found."""

    scenario: Scenario
    world: World
    clock: SimClock = field(default_factory=SimClock)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    logs: io.StringIO = field(default_factory=io.StringIO)
    urls: dict[str, str] = field(default_factory=dict)  # logical id -> queue URL / table / bucket name
    functions: dict[str, ChaosFunction] = field(default_factory=dict)
    emulator: Emulator | None = None
    drains: list[dict] = field(default_factory=list)

    def violation(self, text: str) -> None:
        if text not in self.violations:
            self.violations.append(text)

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def invocation_fault(self, consumer: str, n: int) -> InvocationFault | None:
        for f in self.scenario.invocation_faults:
            if f.consumer == consumer and f.invocation == n:
                return f
        return None

    def check_invocation(self, fn: ChaosFunction, event: dict, response: Any, context: SimContext) -> None:
        from .invariants import check_invocation

        self.count("invocations")
        self.count("records_delivered", len(event["Records"]))
        for problem in check_invocation(fn.consumer, fn._handler, event, response, context, self.logs.getvalue()):
            self.violation(f"{fn.consumer} invocation {fn.invocations}: {problem}")

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.logs.getvalue().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


class World:
    """Session-wide: the moto server, the deployment read from the template, fault hooks."""

    def __init__(self, moto_url: str, tmp: Path):
        self.moto_url = moto_url
        self.tmp = tmp
        self.deployment = Deployment.from_template()
        self.clock = SimClock()
        self.faults = AwsFaults(self.clock)

    def __enter__(self) -> World:
        import boto3

        from local.fakes import FakeCRM, FakeSlack

        self.faults.__enter__()
        with self.faults.exempt():  # AWS's own (the emulator's) and the harness's clients
            self.aws = {s: boto3.client(s) for s in ("dynamodb", "sqs", "s3", "dynamodbstreams", "kinesis")}
        # Made once: client creation (models, SSL contexts) would cost more than a scenario.
        # Our code's clients are made under the fault hooks and reused like a warm Lambda's.
        _reset_process_caches(all_clients=True)
        self.slack = FakeSlack().start()
        self.crm = FakeCRM(token="chaos-token").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.slack.stop()
        self.crm.stop()
        _reset_process_caches(all_clients=True)
        self.faults.__exit__(*exc)

    def run(self, scenario: Scenario) -> Run:
        from streamkit import log

        from .invariants import check_end

        run = Run(scenario, self)
        self.clock._now = run.clock.now()  # the hooks and the run share one clock
        run.clock = self.clock
        self.faults.reset(scenario.aws_faults)
        _reset_process_caches()
        self._reset_moto()
        run.slack, run.crm, run.aws = self.slack, self.crm, self.aws  # type: ignore[attr-defined]
        for fake in (self.slack, self.crm):
            with fake.lock:
                fake.requests.clear()
                fake.faults.clear()
        self.slack.messages.clear()
        self.crm.contacts.clear()
        import structlog

        saved = (log._configured, structlog.get_config())
        try:
            with redirect_stdout(run.logs):
                log.configure()  # structlog now writes to run.logs (JSON lines)
                _set_guard_clock(self.clock)
                self._deploy(run)
                _stream_phase(run)
                _drain_phase(run)
                for problem in check_end(run):
                    run.violation(problem)
        finally:
            structlog.configure(**saved[1])  # as the other tests had it
            log._configured = saved[0]
            _set_guard_clock(None)
            self.faults.phase = "off"
        return run

    # --- deployment ------------------------------------------------------------------------
    def _reset_moto(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST")).read()

    def _deploy(self, run: Run) -> None:
        dep = self.deployment
        ddb, sqs, s3 = self.aws["dynamodb"], self.aws["sqs"], self.aws["s3"]
        for logical, props in dep.tables.items():
            args = {k: props[k] for k in ("TableName", "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes")
                    if k in props}
            spec = props.get("StreamSpecification")
            if spec:
                args["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec["StreamViewType"]}
            ddb.create_table(BillingMode="PAY_PER_REQUEST", **args)
            run.urls[logical] = props["TableName"]
        arns: dict[str, str] = {}
        for logical, props in sorted(dep.queues.items(), key=lambda kv: "RedrivePolicy" in kv[1]):  # DLQs first
            attrs = {k: str(props[k]) for k in ("VisibilityTimeout", "MessageRetentionPeriod") if k in props}
            redrive = props.get("RedrivePolicy")
            if redrive:
                target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
                attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arns[target],
                                                     "maxReceiveCount": redrive["maxReceiveCount"]})
            url = sqs.create_queue(QueueName=props["QueueName"], Attributes=attrs)["QueueUrl"]
            run.urls[logical] = url
            arns[logical] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{props['QueueName']}"
        for logical, props in dep.buckets.items():
            name = f"userstream-dev-{logical.lower()}-chaos"
            s3.create_bucket(Bucket=name)
            run.urls[logical] = name
            arns[logical] = f"arn:aws:s3:::{name}"
            notify = (props.get("NotificationConfiguration") or {}).get("QueueConfigurations") or []
            if notify:  # a hard-fail consumer's on-failure bucket tells its failure queue (moto's CFN would not)
                s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={"QueueConfigurations": [
                    {"QueueArn": arns[n["Queue"]["Fn::GetAtt"][0]], "Events": [n["Event"]]} for n in notify]})
        users = next(v for k, v in run.urls.items() if k == "UsersTable")
        stream_arn = ddb.describe_table(TableName=users)["Table"]["LatestStreamArn"]
        run.stream_arn = stream_arn  # type: ignore[attr-defined]  # the table's DynamoDB stream
        attrs: dict[tuple[str, str], str] = {("UsersTable", "StreamArn"): stream_arn}
        kinesis = self.aws["kinesis"]
        for logical, props in dep.kinesis_streams.items():  # the kinesis source: the changes stream
            # ON_DEMAND on AWS; here the scenario's shard count (moto's on-demand gives 4 shards,
            # and every shard costs a poll per mapping per round)
            kinesis.create_stream(StreamName=props["Name"], ShardCount=run.scenario.shards,
                                  StreamModeDetails={"StreamMode": "PROVISIONED"})
            arn = kinesis.describe_stream_summary(StreamName=props["Name"])["StreamDescriptionSummary"]["StreamARN"]
            attrs[(logical, "Arn")] = run.urls[logical] = arn
        for logical, props in dep.stream_consumers.items():  # moto's CloudFormation makes none either
            stream = attrs[(props["StreamARN"]["Fn::GetAtt"][0], "Arn")]
            run.urls[logical] = kinesis.register_stream_consumer(StreamARN=stream, ConsumerName=props["ConsumerName"])[
                "Consumer"]["ConsumerARN"]
        bridges = []
        for props in dep.tables.values():  # the table publishing to Kinesis: the local bridge
            spec = props.get("KinesisStreamSpecification")
            if spec:
                from local.bridge import KinesisBridge

                bridges.append(KinesisBridge(props["TableName"], stream_arn, attrs[(spec["StreamArn"]["Fn::GetAtt"][0], "Arn")],
                                             streams=self.aws["dynamodbstreams"], kinesis=kinesis,
                                             duplicate_every=run.scenario.kinesis_duplicate_every,
                                             late_every=run.scenario.kinesis_late_every))

        overrides = {"SEARCH_URL": f"sqlite:///{self.tmp}/index-{run.scenario.seed}.sqlite3",
                     "SLACK_WEBHOOK_URL": run.slack.webhook_url,  # type: ignore[attr-defined]
                     "CRM_BASE_URL": run.crm.url, "CRM_TOKEN": "chaos-token"}  # type: ignore[attr-defined]
        legacy = run.scenario.fix_round is not None
        for consumer, spec in dep.functions.items():
            env = _resolve_env(spec["env"], run.urls, attrs)
            env = _local(env, overrides)
            if legacy and consumer != "reprocess":
                env["USER_SCHEMA_MODE"] = "legacy"
            config = FunctionConfig(spec["name"], spec["handler"], env, timeout_s=spec["timeout"],
                                    arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{spec['name']}")
            if consumer == "reprocess":
                run.reprocess_env = env  # type: ignore[attr-defined]
            else:
                run.functions[consumer] = ChaosFunction(config, run, consumer)

        configs = []
        for consumer, props in dep.mappings.items():
            dest = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            on_failure = _destination_arn(dest, arns, dep.buckets) if dest else None
            source = props["EventSourceArn"]
            if "Ref" in source:  # an enhanced fan-out consumer of the changes stream
                consumer_arn = run.urls[source["Ref"]]
                from local.shards import stream_of_consumer

                where = dict(stream_arn=stream_of_consumer(consumer_arn), source="kinesis", consumer_arn=consumer_arn)
            else:
                arn = attrs[tuple(source["Fn::GetAtt"])]  # type: ignore[index]
                where = dict(stream_arn=arn, source="kinesis" if ":kinesis:" in arn else "dynamodb")
            config = MappingConfig.from_properties(f"{consumer}-mapping", props, function=dep.functions[consumer]["name"],
                                                   on_failure_arn=on_failure, **where)
            configs.append(replace(config, **run.scenario.mappings.get(consumer, {})))
        run.emulator = Emulator(configs, {f.config.name: f for f in run.functions.values()},
                                streams_client=run.aws["dynamodbstreams"], kinesis_client=kinesis, bridges=bridges,
                                sqs_client=sqs, s3_client=s3,  # type: ignore[attr-defined]
                                clock=self.clock.now, sleep=self.clock.sleep, retry_backoff_s=1.0, max_backoff_s=30.0,
                                state_path=self.tmp / f"esm-{run.scenario.seed}.json")


def _destination_arn(dest: dict, arns: dict[str, str], buckets: dict[str, dict]) -> str:
    """A mapping's on-failure destination: a queue (``Fn::GetAtt``), or a hard-fail consumer's
    bucket (``Fn::Sub`` of its ARN, set by the plugin), as created here."""
    if "Fn::GetAtt" in dest:
        return arns[dest["Fn::GetAtt"][0]]
    sub = dest["Fn::Sub"]
    (logical,) = [k for k, p in buckets.items() if sub.endswith(":::" + str((p.get("BucketName") or {}).get("Fn::Sub")))]
    return arns[logical]


def _resolve_env(env: dict, urls: dict[str, str], attrs: dict[tuple[str, str], str]) -> dict[str, str]:
    out = {}
    for key, value in env.items():
        if isinstance(value, dict) and "Ref" in value:
            value = urls[value["Ref"]]
        elif isinstance(value, dict) and "Fn::GetAtt" in value:
            value = attrs[tuple(value["Fn::GetAtt"])]
        elif not isinstance(value, str):
            raise ValueError(f"the chaos deployment cannot resolve {key}={value!r}")
        out[key] = value
    return out


def _local(env: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    from local.aws import apply_local_overrides

    keep = {k: v for k, v in overrides.items() if k in env or f"{k}_PARAM" in env or k == "SEARCH_URL" and "SEARCH_URL" in env}
    return {**apply_local_overrides(env, keep), **CHAOS_ENV}


def _reset_process_caches(all_clients: bool = False) -> None:
    """Each scenario has its own index file; ``all_clients``: forget every cached client too."""
    import consumers.crm_sync as crm
    import consumers.search_indexer as si
    import consumers.slack_notifier as sn
    import streamkit.circuit as circuit
    import streamkit.idempotency as idem

    for sink in si._sinks.values():
        close = getattr(sink, "close", None)
        if close:
            close()
    si._sinks.clear()
    if all_clients:
        sn._clients.clear()
        if crm._client is not None:
            crm._client.close()
        crm._client, crm._client_key = None, None
        idem.reset_client()
        circuit._clients.clear()


def _set_guard_clock(clock: SimClock | None) -> None:
    """The Slack guard's lock timeouts run in scenario time (crashes leave claims behind)."""
    import time

    import consumers.slack_notifier as sn

    sn._guard.clock = clock.now if clock is not None else time.time


# --- the stream phase -------------------------------------------------------------------------
def _write(run: Run, op: Any) -> None:
    from boto3.dynamodb.types import TypeSerializer

    ddb = run.aws["dynamodb"]  # type: ignore[attr-defined]
    table = run.urls["UsersTable"]
    if op.kind == "remove":
        ddb.delete_item(TableName=table, Key={"user_id": {"S": op.user}})
    else:
        ser = TypeSerializer()
        ddb.put_item(TableName=table, Item={k: ser.serialize(v) for k, v in op.item.items()})


def arm_http(run: Run, fault: HttpFault) -> None:
    fake = run.slack if fault.sink == "slack" else run.crm  # type: ignore[attr-defined]
    kind, times = fault.kind, fault.times
    if kind in ("hang", "hang-after"):
        fake.hang(2.0, times=times, process=kind == "hang-after")
    elif kind in ("reset", "reset-after"):
        fake.reset(times=times, process=kind == "reset-after")
    elif kind == "429":
        fake.fail(429, "rate_limited", headers={"Retry-After": "0"}, times=times)
    elif kind == "outage":  # down for a while: the consumer's circuit breaker opens, probes, closes
        fake.fail(503 if fault.sink == "crm" else 500, {"message": "outage", "category": "CHAOS"} if fault.sink == "crm"
                  else "outage", times=times)
    elif kind == "500-after":
        fake.fail(500, "internal_error", times=times, process=True)
    else:
        fake.fail(int(kind), {"message": f"injected {kind}", "category": "CHAOS"} if fault.sink == "crm" else "injected",
                  times=times)
    run.count(f"http_faults_armed_{fault.sink}")


def _stream_phase(run: Run) -> None:
    sc, em = run.scenario, run.emulator
    assert em is not None
    ops = sorted(sc.ops, key=lambda o: (o.round, o.index))
    last = sc.last_round
    rnd = 0
    while True:
        for op in (o for o in ops if o.round == rnd):
            _write(run, op)
        for f in sc.http_faults:
            if f.phase == "stream" and f.round == rnd:
                arm_http(run, f)
        if rnd in sc.clock_jumps:
            run.clock.advance(sc.clock_jumps[rnd])
        if sc.fix_round is not None and rnd == sc.fix_round:
            for fn in run.functions.values():
                em.redeploy(fn.config.name, {"USER_SCHEMA_MODE": "compat"})
        progressed = em.step()
        if rnd >= last and not em.pending and all(m.idle for m in em.mappings):
            break
        if not progressed:
            run.clock.sleep(_next_due(run))
        rnd += 1
        if rnd > MAX_STREAM_ROUNDS:
            stuck = [m.config.function for m in em.mappings if not m.idle]
            run.violation(f"stream phase did not settle in {MAX_STREAM_ROUNDS} rounds: {stuck} "
                          f"({[m.last_error for m in em.mappings if not m.idle]})")
            break
    run.stats["stream_rounds"] = rnd
    opened = [e for e in run.log_lines() if e.get("event") == "circuit_transition" and e.get("to_state") == "OPEN"]
    if opened:
        run.count("circuit_opened", len(opened))
    for m in em.mappings:
        run.count("esm_discarded", m.counters.discarded)
        run.count("esm_failed_invocations", m.counters.failed_invocations)


def _next_due(run: Run) -> float:
    """Simulated seconds until a mapping has something to do (a retry backoff or a batching
    window ends): nothing is polled in between (each poll is a GetRecords on moto)."""
    em = run.emulator
    assert em is not None
    now, waits = run.clock.now(), []
    for m in em.mappings:
        for shard in m.shards.values():
            if not shard.buffer:
                continue
            waits.append(shard.next_attempt_at - now)
            if shard.first_buffered_at is not None and m.config.max_batching_window_s:
                waits.append(shard.first_buffered_at + m.config.max_batching_window_s - now)
    due = [w for w in waits if w > 0]
    return min(due) + 0.001 if due else 0.5


# --- the drain phase --------------------------------------------------------------------------
def queue_counts(run: Run, url: str) -> tuple[int, int]:
    attrs = run.aws["sqs"].get_queue_attributes(  # type: ignore[attr-defined]
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def time_passes(run: Run, url: str) -> None:
    """Every in-flight message's visibility timeout runs out (moto keeps real time)."""
    from moto.sqs.models import sqs_backends

    name = url.rsplit("/", 1)[-1]
    queue = sqs_backends[ACCOUNT][REGION].queues[name]
    for message in queue._messages:
        message.visible_at = 0


def _queue_of(run: Run, consumer: str, kind: str) -> str:
    from consumers.registry import get_consumer

    key = "".join(p.capitalize() for p in consumer.split("-")) + ("FailureQueue" if kind == "failures" else "ParkingQueue")
    url = run.urls[key]
    assert url.endswith(get_consumer(consumer).queue_name(kind))
    return url


def _drain_once(run: Run, consumer: str, attempt: int) -> None:
    import threading

    from reprocess.worker import drain

    failures, parking = _queue_of(run, consumer, "failures"), _queue_of(run, consumer, "parking")
    parked_before = sum(queue_counts(run, parking))
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            with applied_env(run.reprocess_env):  # type: ignore[attr-defined]
                outcome["summary"] = drain(consumer, wait_time_s=0, concurrency=1, retry_base_delay_s=0,
                                           time_budget_s=MAX_DRAIN_RUN_S)
        except SimulatedCrash as crash:
            outcome["crash"] = crash
        except BaseException as exc:  # noqa: BLE001 - anything else escaping the worker is a finding
            outcome["error"] = exc

    thread = threading.Thread(target=work, name=f"drain-{consumer}", daemon=True)
    thread.start()
    thread.join(MAX_DRAIN_RUN_S + 30)
    run.count("drain_runs")
    label = f"{consumer} drain run {attempt + 1} ({run.world.faults.phase} faults)"
    if thread.is_alive():
        run.violation(f"{label}: did not terminate")
        return
    if "crash" in outcome:
        run.count("worker_crashes")
        time_passes(run, failures)  # the dead run's messages reappear after their visibility timeout
        return
    if "error" in outcome:
        exc = outcome["error"]
        run.violation(f"{label}: the worker raised {type(exc).__name__}: {exc} (no summary, no exit status)")
        time_passes(run, failures)
        return
    summary = outcome["summary"]
    visible, hidden = queue_counts(run, failures)
    parked_now = sum(queue_counts(run, parking)) - parked_before
    remains = visible + hidden + parked_now
    run.drains.append({"consumer": consumer, **summary.to_dict(), "remains": remains})
    if not summary.conserved:
        run.violation(f"{label}: summary not conserved: {summary.to_dict()}")
    if summary.exit_code not in (0, 1):
        run.violation(f"{label}: exit status {summary.exit_code}")
    if hidden > summary.unreleased:
        run.violation(f"{label}: {hidden} message(s) left hidden after the run (not released; the summary "
                      f"admits {summary.unreleased})")
    if hidden:
        time_passes(run, failures)
    if summary.exit_code == 0 and remains:
        run.violation(f"{label}: exit 0 while {remains} message(s) remain "
                      f"(queue {visible}+{hidden} hidden, parked {parked_now}); summary {summary.to_dict()}")
    if summary.exit_code == 1 and not remains and not summary.aborted:
        run.violation(f"{label}: exit 1 (still failing {summary.still_failing}, parked {summary.parked}) but nothing "
                      f"remains in the failure or parking queue: records were lost; summary {summary.to_dict()}")


def _drain_phase(run: Run) -> None:
    sc = run.scenario
    run.clock.advance(BEFORE_DRAIN_S)
    faults = run.world.faults
    for consumer in sc.drain_order:
        for attempt in range(FAULTY_DRAIN_RUNS + CLEAN_DRAIN_RUNS):
            faulty = attempt < FAULTY_DRAIN_RUNS
            faults.phase = "drain" if faulty else "clean"
            if faulty:
                for f in sc.http_faults:
                    if f.phase == "drain" and f.round == attempt:
                        arm_http(run, f)
            else:
                run.slack.faults.clear()  # type: ignore[attr-defined]
                run.crm.faults.clear()  # type: ignore[attr-defined]
            url = _queue_of(run, consumer, "failures")
            if sum(queue_counts(run, url)) == 0:
                break
            _drain_once(run, consumer, attempt)
            run.clock.advance(BETWEEN_DRAINS_S)
    faults.phase = "off"
